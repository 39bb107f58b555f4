package istio

import (
	"encoding/json"
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	networking "istio.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/traffic"
)

// Plan computes the change that makes the steered route do d: its weights, meshroll's mirror
// on it, and meshroll's A/B route right before it. It is pure: the State is not touched, and
// the returned Change's Next is the state the patch produces, computed by applying the patch
// to the spec that was read (with the JSON patch library the API server uses), so that the
// plan and the write can never disagree. The patch pins what it relies on with test
// operations (route names, the host and subset of every destination whose weight it sets,
// the mirror it removes), so that it never lands on something that moved in between.
func (s *State) Plan(d traffic.Desired) (traffic.Change, error) {
	if err := d.CheckDrift(s.routing); err != nil {
		return traffic.Change{}, err
	}
	var ops []traffic.PatchOp
	weightOps, err := s.planWeights(d)
	if err != nil {
		return traffic.Change{}, err
	}
	ops = append(ops, weightOps...)
	mirrorOps, err := s.planMirror(d.MirrorPercent)
	if err != nil {
		return traffic.Change{}, err
	}
	ops = append(ops, mirrorOps...)
	// The A/B route is inserted or removed last: it moves the steered route's index.
	abOps, err := s.planAB(d.AB)
	if err != nil {
		return traffic.Change{}, err
	}
	ops = append(ops, abOps...)
	if len(ops) > 0 && s.spec.Http[s.routeIndex].Name != "" {
		ops = append([]traffic.PatchOp{{Op: "test", Path: s.routePath() + "/name", Value: s.spec.Http[s.routeIndex].Name}}, ops...)
	}

	next, err := s.apply(ops)
	if err != nil {
		// Unreachable by construction; kept as the last guard before anything is written.
		return traffic.Change{}, fmt.Errorf("internal error: the planned change of %s does not apply: %v", s.where(), err) // %v: never a preflight error
	}
	if err := traffic.CheckWeights(next.routing.Destinations); err != nil {
		return traffic.Change{}, fmt.Errorf("internal error: planned %s is invalid: %v", s.where(), err)
	}
	return traffic.Change{
		Before:  s.Routing(),
		After:   next.Routing(),
		Changed: len(ops) > 0,
		Patch:   ops,
		Next:    next,
	}, nil
}

// apply is the state after ops, applied to the object as read (its annotations and spec).
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
	before, err := s.document()
	if err != nil {
		return nil, err
	}
	doc, err := patch.Apply(before)
	if err != nil {
		return nil, err
	}
	after, err := decodeObject(doc)
	if err != nil {
		return nil, err
	}
	r := s.routing
	after.Metadata.Namespace, after.Metadata.Name, after.Metadata.ResourceVersion = r.Namespace, r.Name, r.ResourceVersion
	return newState(after.Metadata, after.Spec, s.target)
}

// document is the part of the object as read that a change may patch: its annotations and
// its spec.
func (s *State) document() ([]byte, error) {
	return json.Marshal(map[string]any{"metadata": metav1.ObjectMeta{Annotations: s.annotations}, "spec": json.RawMessage(s.raw)})
}

func (s *State) routePath() string { return fmt.Sprintf("/spec/http/%d", s.routeIndex) }

// canaryDestination is where the canary is reached: its Service when given, else the stable
// destination's host; its subset when given; the stable destination's port.
func (s *State) canaryDestination() traffic.Destination {
	stable := s.routing.Destinations[s.index(traffic.RoleStable)]
	host := stable.Host
	if s.target.CanaryService != "" {
		host = s.target.CanaryService
	}
	return traffic.Destination{Host: host, Subset: s.target.CanarySubset, Port: stable.Port, Role: traffic.RoleCanary}
}

// markPruned marks the route as pruned when the stable destination goes (prune), and drops
// the mark when it comes back (back).
func (s *State) markPruned(prune, back bool) []traffic.PatchOp {
	switch {
	case prune:
		return traffic.AnnotationOps(s.annotations, traffic.PrunedAnnotation, s.routing.Route, false)
	case back && s.annotations[traffic.PrunedAnnotation] == s.routing.Route:
		return traffic.AnnotationOps(s.annotations, traffic.PrunedAnnotation, s.routing.Route, true)
	}
	return nil
}

// stableDestination is where the stable version is reached when a pruned promotion removed
// it: its Service when given, else the canary destination's host; its subset when given; the
// canary destination's port.
func (s *State) stableDestination() traffic.Destination {
	canary := s.routing.Destinations[s.index(traffic.RoleCanary)]
	host := canary.Host
	if s.target.StableService != "" {
		host = s.target.StableService
	}
	return traffic.Destination{Host: host, Subset: s.target.StableSubset, Port: canary.Port, Role: traffic.RoleStable}
}

// destinationJSON is d as a VirtualService destination.
func destinationJSON(d traffic.Destination) map[string]any {
	v := map[string]any{"host": d.Host}
	if d.Subset != "" {
		v["subset"] = d.Subset
	}
	if d.Port != 0 {
		v["port"] = map[string]any{"number": d.Port}
	}
	return v
}

// planWeights sets the weights of the steered route, appending the canary destination when
// the route has none and the canary is to get traffic.
func (s *State) planWeights(d traffic.Desired) ([]traffic.PatchOp, error) {
	if d.KeepWeights {
		if err := traffic.CheckWeights(s.routing.Destinations); err != nil {
			return nil, traffic.Preflightf(traffic.ErrInvalidWeights, "%s: %v, which Istio rejects: fix its weights before meshroll adds a mirror or an A/B route to it", s.where(), err)
		}
		return nil, nil
	}
	current := s.routing.Destinations
	appendCanary := s.index(traffic.RoleCanary) < 0 && d.CanaryWeight > 0
	if appendCanary {
		current = append(append([]traffic.Destination(nil), current...), s.canaryDestination())
	}
	// After a pruned promotion the stable destination is back for anything but 100.
	appendStable := s.index(traffic.RoleStable) < 0 && d.CanaryWeight < 100
	if appendStable {
		current = append(append([]traffic.Destination(nil), current...), s.stableDestination())
	}
	want, err := traffic.SplitWeights(current, d.CanaryWeight, s.where())
	if err != nil {
		return nil, err
	}
	route := s.spec.Http[s.routeIndex]
	pruned := d.Pruned(want, len(route.Route))
	var ops []traffic.PatchOp
	for j, rd := range route.Route {
		// Compare with the weight that takes effect: a lone destination without a weight gets
		// all traffic, until the appended canary makes it one of two.
		have := current[j].Weight
		if appendCanary || appendStable {
			have = int(rd.Weight)
		}
		if have == want[j].Weight || pruned[j] {
			continue
		}
		ops = append(ops, pinDestination(s.routePath(), j, rd.Destination)...)
		// "add" sets a member whether or not it exists: an absent weight is added.
		ops = append(ops, traffic.PatchOp{Op: "add", Path: fmt.Sprintf("%s/route/%d/weight", s.routePath(), j), Value: want[j].Weight})
	}
	if appendCanary {
		c := want[len(want)-1]
		ops = append(ops, traffic.PatchOp{Op: "add", Path: s.routePath() + "/route/-", Value: map[string]any{"destination": destinationJSON(c), "weight": c.Weight}})
	}
	if appendStable {
		st := want[len(want)-1]
		ops = append(ops, traffic.PatchOp{Op: "add", Path: s.routePath() + "/route/-", Value: map[string]any{"destination": destinationJSON(st), "weight": st.Weight}})
	}
	// Last, and from the end, so that each removal leaves the indices before it in place.
	for j := len(route.Route) - 1; j >= 0; j-- {
		if pruned[j] {
			ops = append(ops, pinDestination(s.routePath(), j, route.Route[j].Destination)...)
			ops = append(ops, traffic.PatchOp{Op: "remove", Path: fmt.Sprintf("%s/route/%d", s.routePath(), j)})
		}
	}
	return append(ops, s.markPruned(pruned[s.index(traffic.RoleStable)], appendStable)...), nil
}

// pinDestination tests the host and subset of destination j of the route at base, so that a
// weight is only ever written to the destination it was planned for.
func pinDestination(base string, j int, d *networking.Destination) []traffic.PatchOp {
	if d == nil {
		return nil
	}
	path := fmt.Sprintf("%s/route/%d/destination", base, j)
	ops := []traffic.PatchOp{{Op: "test", Path: path + "/host", Value: d.Host}}
	if d.Subset != "" {
		ops = append(ops, traffic.PatchOp{Op: "test", Path: path + "/subset", Value: d.Subset})
	}
	return ops
}
