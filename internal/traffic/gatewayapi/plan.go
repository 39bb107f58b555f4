package gatewayapi

import (
	"encoding/json"
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/traffic"
)

// Plan computes the change that makes the steered rule do d: its backends' weights, meshroll's
// mirror on it, and meshroll's A/B rule right before it. It is
// pure: the State is not touched, and the returned Change's Next is the state the patch
// produces, computed by applying the patch to the spec that was read (with the JSON patch
// library the API server uses), so that the plan and the write can never disagree. The patch
// pins what it relies on with test operations (the rule's name, the Service of every
// backendRef whose weight it sets), so that it never lands on something that moved in between.
func (s *State) Plan(d traffic.Desired) (traffic.Change, error) {
	if err := d.CheckDrift(s.routing); err != nil {
		return traffic.Change{}, err
	}
	var ops []traffic.PatchOp
	if !d.KeepWeights {
		var err error
		if ops, err = s.planWeights(d); err != nil {
			return traffic.Change{}, err
		}
	}
	mirrorOps, err := s.planMirror(d.MirrorPercent)
	if err != nil {
		return traffic.Change{}, err
	}
	ops = append(ops, mirrorOps...)
	// The A/B rule is inserted or removed last: it moves the steered rule's index.
	abOps, err := s.planAB(d.AB)
	if err != nil {
		return traffic.Change{}, err
	}
	ops = append(ops, abOps...)
	if rule := s.spec.Rules[s.ruleIndex]; len(ops) > 0 && rule.Name != nil {
		ops = append([]traffic.PatchOp{{Op: "test", Path: s.rulePath() + "/name", Value: string(*rule.Name)}}, ops...)
	}
	next, err := s.apply(ops)
	if err != nil {
		// Unreachable by construction; kept as the last guard before anything is written.
		return traffic.Change{}, fmt.Errorf("internal error: the planned change of %s does not apply: %v", s.where(), err) // %v: never a preflight error
	}
	return traffic.Change{Before: s.Routing(), After: next.Routing(), Changed: len(ops) > 0, Patch: ops, Next: next}, nil
}

func (s *State) rulePath() string { return fmt.Sprintf("/spec/rules/%d", s.ruleIndex) }

// planWeights sets the weights of the steered rule's backends (traffic.SplitShares),
// appending a backendRef to the canary Service, on the stable backend's port, when the rule
// has none and the canary is to get traffic.
func (s *State) planWeights(d traffic.Desired) ([]traffic.PatchOp, error) {
	canary := d.CanaryWeight
	current := s.routing.Destinations
	appendCanary := s.index(traffic.RoleCanary) < 0 && canary > 0
	if appendCanary {
		stable := current[s.index(traffic.RoleStable)]
		c := traffic.Destination{Host: s.target.label(s.target.service(traffic.RoleCanary)), Port: stable.Port, Role: traffic.RoleCanary}
		current = append(append([]traffic.Destination(nil), current...), c)
	}
	// After a pruned promotion the stable backend is back for anything but 100.
	appendStable := s.index(traffic.RoleStable) < 0 && canary < 100
	if appendStable {
		c := current[s.index(traffic.RoleCanary)]
		st := traffic.Destination{Host: s.target.label(s.target.service(traffic.RoleStable)), Port: c.Port, Role: traffic.RoleStable}
		current = append(append([]traffic.Destination(nil), current...), st)
	}
	want, err := traffic.SplitShares(current, canary, s.where())
	if err != nil {
		return nil, err
	}
	rule := s.spec.Rules[s.ruleIndex]
	pruned := d.Pruned(want, len(rule.BackendRefs))
	var ops []traffic.PatchOp
	for j, b := range rule.BackendRefs {
		// An unset weight is 1: it is written when it must change, never merely spelt out.
		if weightOf(b) == want[j].Raw || pruned[j] {
			continue
		}
		path := fmt.Sprintf("%s/backendRefs/%d", s.rulePath(), j)
		ops = append(ops, traffic.PatchOp{Op: "test", Path: path + "/name", Value: string(b.Name)})
		if b.Namespace != nil {
			ops = append(ops, traffic.PatchOp{Op: "test", Path: path + "/namespace", Value: string(*b.Namespace)})
		}
		// "add" sets a member whether or not it exists: an absent weight is added.
		ops = append(ops, traffic.PatchOp{Op: "add", Path: path + "/weight", Value: want[j].Raw})
	}
	for _, appended := range []struct {
		yes  bool
		role traffic.Role
	}{{appendCanary, traffic.RoleCanary}, {appendStable, traffic.RoleStable}} {
		if !appended.yes {
			continue
		}
		d := want[len(want)-1]
		svc := s.target.service(appended.role)
		ref := map[string]any{"name": svc.name, "weight": d.Raw}
		if svc.namespace != s.target.Namespace {
			ref["namespace"] = svc.namespace
		}
		if d.Port != 0 {
			ref["port"] = d.Port
		}
		ops = append(ops, traffic.PatchOp{Op: "add", Path: s.rulePath() + "/backendRefs/-", Value: ref})
	}
	// Last, and from the end, so that each removal leaves the indices before it in place.
	for j := len(rule.BackendRefs) - 1; j >= 0; j-- {
		if pruned[j] {
			path := fmt.Sprintf("%s/backendRefs/%d", s.rulePath(), j)
			ops = append(ops, traffic.PatchOp{Op: "test", Path: path + "/name", Value: string(rule.BackendRefs[j].Name)},
				traffic.PatchOp{Op: "remove", Path: path})
		}
	}
	switch {
	case pruned[s.index(traffic.RoleStable)]:
		ops = append(ops, traffic.AnnotationOps(s.annotations, traffic.PrunedAnnotation, s.routing.Route, false)...)
	case appendStable && s.annotations[traffic.PrunedAnnotation] == s.routing.Route:
		ops = append(ops, traffic.AnnotationOps(s.annotations, traffic.PrunedAnnotation, s.routing.Route, true)...)
	}
	return ops, nil
}

// apply is the state after ops, applied to the spec as read.
func (s *State) apply(ops []traffic.PatchOp) (*State, error) {
	if len(ops) == 0 {
		return s, nil
	}
	data, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	patch, err := jsonpatch.DecodePatch(data)
	if err != nil {
		return nil, err
	}
	doc, err := json.Marshal(map[string]any{"metadata": metav1.ObjectMeta{Annotations: s.annotations}, "spec": json.RawMessage(s.raw)})
	if err != nil {
		return nil, err
	}
	after, err := patch.Apply(doc)
	if err != nil {
		return nil, err
	}
	var obj struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     json.RawMessage   `json:"spec"`
	}
	if err := json.Unmarshal(after, &obj); err != nil {
		return nil, err
	}
	r := s.routing
	obj.Metadata.Namespace, obj.Metadata.Name, obj.Metadata.ResourceVersion = r.Namespace, r.Name, r.ResourceVersion
	return newState(obj.Metadata, obj.Spec, s.target)
}
