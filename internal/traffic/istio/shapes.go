package istio

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1"

	"github.com/meshroll/meshroll/internal/traffic"
)

// mirrorPercent is the share of a route's requests its mirror receives: mirrorPercentage,
// else the deprecated mirrorPercent, else all of them (Istio's default).
func mirrorPercent(r *networking.HTTPRoute) float64 {
	switch {
	case r.MirrorPercentage != nil:
		return r.MirrorPercentage.Value
	case r.MirrorPercent != nil:
		return float64(r.MirrorPercent.Value)
	}
	return 100
}

// mirrorAnnotation marks meshroll's mirror (see traffic.MirrorAnnotation).
const mirrorAnnotation = traffic.MirrorAnnotation

// ownsMirror says whether the steered route's mirror is meshroll's: marked by the annotation,
// and still pointing at the canary.
func (s *State) ownsMirror() bool {
	m := s.spec.Http[s.routeIndex].Mirror
	return m != nil && s.annotations[mirrorAnnotation] == s.routing.Route &&
		s.target.side(traffic.RoleCanary).matches(m, s.target.Namespace)
}

// markMirror sets (or, with clear, removes) the annotation that marks meshroll's mirror.
func (s *State) markMirror(clear bool) []traffic.PatchOp {
	return traffic.AnnotationOps(s.annotations, mirrorAnnotation, s.routing.Route, clear)
}

// planMirror sets meshroll's mirror (the canary destination) on the steered route at percent,
// or removes it when percent is 0. A mirror the user set elsewhere is never touched: setting
// one then is refused.
func (s *State) planMirror(percent float64) ([]traffic.PatchOp, error) {
	route := s.spec.Http[s.routeIndex]
	ours := s.routing.MirrorPercent > 0
	base := s.routePath()
	if percent <= 0 {
		if !ours {
			return nil, nil
		}
		ops := []traffic.PatchOp{{Op: "test", Path: base + "/mirror/host", Value: route.Mirror.Host}, {Op: "remove", Path: base + "/mirror"}}
		if route.MirrorPercentage != nil {
			ops = append(ops, traffic.PatchOp{Op: "remove", Path: base + "/mirrorPercentage"})
		}
		if route.MirrorPercent != nil {
			ops = append(ops, traffic.PatchOp{Op: "remove", Path: base + "/mirrorPercent"})
		}
		return append(ops, s.markMirror(true)...), nil
	}
	switch {
	case len(route.Mirrors) > 0:
		return nil, traffic.Preflightf(traffic.ErrForeignMirror, "%s already mirrors traffic (mirrors: %d destinations), which meshroll leaves alone: remove those mirrors or unset MESHROLL_MIRROR_PERCENT", s.where(), len(route.Mirrors))
	case route.Mirror != nil && !ours:
		return nil, traffic.Preflightf(traffic.ErrForeignMirror, "%s already mirrors traffic to %s, which meshroll leaves alone: remove that mirror or unset MESHROLL_MIRROR_PERCENT", s.where(), destinationLabel(route.Mirror))
	case ours && s.routing.MirrorPercent == percent && route.MirrorPercent == nil:
		return nil, nil
	}
	var ops []traffic.PatchOp
	if route.Mirror != nil {
		ops = append(ops, traffic.PatchOp{Op: "test", Path: base + "/mirror/host", Value: route.Mirror.Host})
	}
	if route.MirrorPercent != nil {
		ops = append(ops, traffic.PatchOp{Op: "remove", Path: base + "/mirrorPercent"}) // mirrorPercentage takes over
	}
	ops = append(ops,
		traffic.PatchOp{Op: "add", Path: base + "/mirror", Value: destinationJSON(s.canaryDestination())},
		traffic.PatchOp{Op: "add", Path: base + "/mirrorPercentage", Value: map[string]any{"value": percent}},
	)
	if !ours {
		ops = append(ops, s.markMirror(false)...)
	}
	return ops, nil
}

func destinationLabel(d *networking.Destination) string {
	if d.Subset != "" {
		return d.Host + " subset " + d.Subset
	}
	return d.Host
}

// planAB inserts meshroll's A/B route right before the steered route, or removes it.
func (s *State) planAB(want bool) ([]traffic.PatchOp, error) {
	have := s.abIndex >= 0
	switch {
	case want == have:
		return nil, nil
	case !want:
		path := fmt.Sprintf("/spec/http/%d", s.abIndex)
		return []traffic.PatchOp{{Op: "test", Path: path + "/name", Value: s.target.abRouteName()}, {Op: "remove", Path: path}}, nil
	case len(s.target.Match) == 0:
		return nil, fmt.Errorf("internal error: an A/B stage without MESHROLL_MATCH")
	}
	route, err := s.abRoute()
	if err != nil {
		return nil, err
	}
	return []traffic.PatchOp{{Op: "add", Path: s.routePath(), Value: route}}, nil
}

// abRoute is meshroll's A/B route: a copy of the steered route (its timeouts, retries,
// headers, fault injection, CORS policy... and fields this build does not know) without its
// name, destinations and mirrors; matching what the steered route matches AND the user's
// conditions, so that it only ever catches traffic the steered route would have caught; and
// sending all of it to the canary.
func (s *State) abRoute() (map[string]any, error) {
	var spec struct {
		HTTP []map[string]any `json:"http"`
	}
	if err := json.Unmarshal(s.raw, &spec); err != nil {
		return nil, fmt.Errorf("failed to decode the routes of %s: %w", s.routing.Object(), err)
	}
	route := maps.Clone(spec.HTTP[s.routeIndex])
	for _, k := range []string{"name", "route", "mirror", "mirrorPercentage", "mirrorPercent", "mirror_percent", "mirrors", "match", "delegate"} {
		delete(route, k)
	}
	var theirs []map[string]any
	if m, ok := spec.HTTP[s.routeIndex]["match"].([]any); ok {
		for _, e := range m {
			if e, ok := e.(map[string]any); ok {
				theirs = append(theirs, e)
			}
		}
	}
	match, err := combineMatches(s.target.Match, theirs, s.where())
	if err != nil {
		return nil, err
	}
	route["name"] = s.target.abRouteName()
	route["match"] = match
	route["route"] = []any{map[string]any{"destination": destinationJSON(s.canaryDestination())}}
	return route, nil
}

// combineMatches is the conditions of the A/B route: a request matches when it matches one of
// the user's conditions and one of the route's (every pair ANDed; a route without match
// conditions matches everything).
func combineMatches(user, route []map[string]any, where string) ([]any, error) {
	if len(route) == 0 {
		route = []map[string]any{{}}
	}
	var out []any
	for _, r := range route {
		for _, u := range user {
			m, err := andMatch(r, u, where)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// mapConditions are the HTTPMatchRequest fields that are maps of independent conditions:
// ANDing two of them is their union.
var mapConditions = map[string]bool{"headers": true, "queryParams": true, "withoutHeaders": true, "sourceLabels": true}

// andMatch is one HTTPMatchRequest that holds when both a (the route's) and b (the user's) do.
// Two different conditions on the same field (uri prefix /a and uri prefix /b) cannot both be
// written: that is refused, naming the field.
func andMatch(a, b map[string]any, where string) (map[string]any, error) {
	out := maps.Clone(a)
	keys := make([]string, 0, len(b))
	for k := range b {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := b[k]
		old, exists := out[k]
		switch {
		case !exists:
			out[k] = v
		case k == "name":
			// A name only labels a match in logs; keep the route's.
		case mapConditions[k]:
			merged, err := andMap(k, old, v, where)
			if err != nil {
				return nil, err
			}
			out[k] = merged
		case !reflect.DeepEqual(old, v):
			return nil, traffic.Preflightf(traffic.ErrMatchConflict, "MESHROLL_MATCH sets %s %s, but %s matches %s %s; a request cannot meet both, so the A/B route could never match: change MESHROLL_MATCH, or steer another route (MESHROLL_ROUTE)",
				k, compact(v), where, k, compact(old))
		}
	}
	return out, nil
}

func andMap(field string, a, b any, where string) (map[string]any, error) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		return nil, traffic.Preflightf(traffic.ErrMatchConflict, "MESHROLL_MATCH's %s is not a map of conditions", field)
	}
	out := maps.Clone(am)
	for k, v := range bm {
		if old, ok := out[k]; ok && !reflect.DeepEqual(old, v) {
			return nil, traffic.Preflightf(traffic.ErrMatchConflict, "MESHROLL_MATCH sets %s %q to %s, but %s matches it as %s; a request cannot meet both: change MESHROLL_MATCH, or steer another route (MESHROLL_ROUTE)",
				field, k, compact(v), where, compact(old))
		}
		out[k] = v
	}
	return out, nil
}

func compact(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.ReplaceAll(string(data), `"`, "")
}
