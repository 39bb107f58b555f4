package gatewayapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshroll/meshroll/internal/traffic"
)

// mirrorAnnotation marks meshroll's mirror (see traffic.MirrorAnnotation).
const mirrorAnnotation = traffic.MirrorAnnotation

// ownMirror is the index, among the steered rule's filters, of meshroll's RequestMirror
// filter (marked by the annotation, and still mirroring to the canary Service), else -1.
func (s *State) ownMirror() int {
	if s.annotations[mirrorAnnotation] != s.routing.Route {
		return -1
	}
	for j, f := range s.spec.Rules[s.ruleIndex].Filters {
		if f.RequestMirror == nil {
			continue
		}
		b := gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: f.RequestMirror.BackendRef}}
		if roleOf(b, s.target) == traffic.RoleCanary {
			return j
		}
	}
	return -1
}

// mirrorPercent is the share of requests a RequestMirror filter mirrors: its percent, else its
// fraction, else all of them (the Gateway API's default).
func mirrorPercent(m *gatewayv1.HTTPRequestMirrorFilter) float64 {
	switch {
	case m.Percent != nil:
		return float64(*m.Percent)
	case m.Fraction != nil:
		den := int32(100)
		if m.Fraction.Denominator != nil {
			den = *m.Fraction.Denominator
		}
		if den > 0 {
			return 100 * float64(m.Fraction.Numerator) / float64(den)
		}
	}
	return 100
}

// markMirror sets (or, with clear, removes) the annotation that marks meshroll's mirror.
func (s *State) markMirror(clear bool) []traffic.PatchOp {
	return traffic.AnnotationOps(s.annotations, mirrorAnnotation, s.routing.Route, clear)
}

// mirrorFilter is meshroll's RequestMirror filter: percent of the requests to the canary
// Service, on the stable backend's port. A whole percent is written as percent, another as
// a fraction of 10000 (the Gateway API's percent is an integer).
func (s *State) mirrorFilter(percent float64) map[string]any {
	svc := s.target.service(traffic.RoleCanary)
	ref := map[string]any{"name": svc.name}
	if svc.namespace != s.target.Namespace {
		ref["namespace"] = svc.namespace
	}
	if stable := s.index(traffic.RoleStable); stable >= 0 && s.routing.Destinations[stable].Port != 0 {
		ref["port"] = s.routing.Destinations[stable].Port
	}
	m := map[string]any{"backendRef": ref}
	if percent == math.Trunc(percent) {
		m["percent"] = int(percent)
	} else {
		m["fraction"] = map[string]any{"numerator": int(math.Round(percent * 100)), "denominator": 10000}
	}
	return map[string]any{"type": "RequestMirror", "requestMirror": m}
}

// planMirror sets meshroll's mirror on the steered rule at percent, or removes it when percent
// is 0. A mirror the user set on the rule is never touched: setting one then is refused.
func (s *State) planMirror(percent float64) ([]traffic.PatchOp, error) {
	rule := s.spec.Rules[s.ruleIndex]
	own := s.ownMirror()
	filters := s.rulePath() + "/filters"
	if percent <= 0 {
		if own < 0 {
			return nil, nil
		}
		path := fmt.Sprintf("%s/%d", filters, own)
		ops := []traffic.PatchOp{
			{Op: "test", Path: path + "/type", Value: "RequestMirror"},
			{Op: "test", Path: path + "/requestMirror/backendRef/name", Value: string(rule.Filters[own].RequestMirror.BackendRef.Name)},
			{Op: "remove", Path: path},
		}
		return append(ops, s.markMirror(true)...), nil
	}
	for j, f := range rule.Filters {
		if f.RequestMirror != nil && j != own {
			return nil, traffic.Preflightf(traffic.ErrForeignMirror, "%s already mirrors traffic to %s, which meshroll leaves alone: remove that RequestMirror filter or unset MESHROLL_MIRROR_PERCENT",
				s.where(), f.RequestMirror.BackendRef.Name)
		}
	}
	if own >= 0 && s.routing.MirrorPercent == percent {
		return nil, nil
	}
	if own >= 0 {
		path := fmt.Sprintf("%s/%d", filters, own)
		return []traffic.PatchOp{
			{Op: "test", Path: path + "/type", Value: "RequestMirror"},
			{Op: "replace", Path: path, Value: s.mirrorFilter(percent)},
		}, nil
	}
	var ops []traffic.PatchOp
	if len(rule.Filters) == 0 {
		ops = append(ops, traffic.PatchOp{Op: "add", Path: filters, Value: []any{s.mirrorFilter(percent)}})
	} else {
		ops = append(ops, traffic.PatchOp{Op: "add", Path: filters + "/-", Value: s.mirrorFilter(percent)})
	}
	return append(ops, s.markMirror(false)...), nil
}

// planAB inserts meshroll's A/B rule right before the steered rule, or removes it.
func (s *State) planAB(want bool) ([]traffic.PatchOp, error) {
	have := s.abIndex >= 0
	switch {
	case want == have:
		return nil, nil
	case !want:
		path := fmt.Sprintf("/spec/rules/%d", s.abIndex)
		return []traffic.PatchOp{{Op: "test", Path: path + "/name", Value: s.target.abRuleName()}, {Op: "remove", Path: path}}, nil
	case len(s.target.Match) == 0:
		return nil, fmt.Errorf("internal error: an A/B stage without MESHROLL_MATCH")
	case len(s.spec.Rules) >= maxRules:
		return nil, traffic.Preflightf(ErrUnsupported, "%s has %d rules, the most an HTTPRoute may have, so meshroll cannot add its A/B rule: free a rule, or unset MESHROLL_MATCH", s.routing.Object(), len(s.spec.Rules))
	}
	rule, err := s.abRule()
	if err != nil {
		return nil, err
	}
	return []traffic.PatchOp{{Op: "add", Path: s.rulePath(), Value: rule}}, nil
}

// The HTTPRoute CRD's limits on what meshroll adds.
const (
	maxRules   = 16 // rules of an HTTPRoute
	maxMatches = 64 // matches of a rule
)

// abRule is meshroll's A/B rule: a copy of the steered rule (its filters, timeouts, retry,
// session persistence... and fields this build does not know) without its name, matches,
// backends and mirrors; matching what the steered rule matches AND the user's conditions, so
// that it only ever catches traffic the steered rule would have caught (being more specific,
// and first of equals, it wins that traffic); and sending all of it to the canary.
func (s *State) abRule() (map[string]any, error) {
	var spec struct {
		Rules []map[string]any `json:"rules"`
	}
	if err := json.Unmarshal(s.raw, &spec); err != nil {
		return nil, fmt.Errorf("failed to decode the rules of %s: %w", s.routing.Object(), err)
	}
	rule := maps.Clone(spec.Rules[s.ruleIndex])
	for _, k := range []string{"name", "matches", "backendRefs"} {
		delete(rule, k)
	}
	if filters, ok := rule["filters"].([]any); ok {
		var kept []any
		for _, f := range filters {
			if f, ok := f.(map[string]any); ok && f["type"] == "RequestMirror" {
				continue
			}
			kept = append(kept, f)
		}
		delete(rule, "filters")
		if len(kept) > 0 {
			rule["filters"] = kept
		}
	}
	user, err := translateMatches(s.target.Match)
	if err != nil {
		return nil, err
	}
	matches, err := combineMatches(user, s.spec.Rules[s.ruleIndex].Matches, s.where())
	if err != nil {
		return nil, err
	}
	if len(matches) > maxMatches {
		return nil, traffic.Preflightf(ErrUnsupported, "MESHROLL_MATCH's %d conditions with the %d of %s make %d matches, more than the %d an HTTPRoute rule may have: give fewer conditions", len(user), len(s.spec.Rules[s.ruleIndex].Matches), s.where(), len(matches), maxMatches)
	}
	svc := s.target.service(traffic.RoleCanary)
	ref := map[string]any{"name": svc.name}
	if svc.namespace != s.target.Namespace {
		ref["namespace"] = svc.namespace
	}
	if stable := s.index(traffic.RoleStable); stable >= 0 && s.routing.Destinations[stable].Port != 0 {
		ref["port"] = s.routing.Destinations[stable].Port
	}
	rule["name"] = s.target.abRuleName()
	rule["matches"] = matches
	rule["backendRefs"] = []any{ref}
	return rule, nil
}
