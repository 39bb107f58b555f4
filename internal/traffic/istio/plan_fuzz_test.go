package istio

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1"

	"github.com/meshroll/meshroll/internal/traffic"
)

// FuzzPlan: for any route and any canary weight, planning either fails with a preflight error
// or yields a route whose weights are integers 0–100 summing to exactly 100, with the canary
// at the asked weight, every other destination untouched, and a patch that produces exactly
// that route.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{2, 0, 90, 1, 10}, 25, false)
	f.Add([]byte{1, 0, 0}, 100, false)
	f.Add([]byte{3, 0, 60, 2, 30, 1, 10}, 71, false)
	f.Add([]byte{2, 0, 50, 0, 50}, 10, true)
	f.Add([]byte{4, 3, 0, 2, 120, 1, 0, 0, 0}, 0, false)
	f.Fuzz(func(t *testing.T, shape []byte, weight int, withMatch bool) {
		spec := fuzzSpec(shape, withMatch)
		tgt := Target{Namespace: "ns", VirtualService: "vs", StableSubset: "v1", CanarySubset: "v2"}
		state, err := stateOf("ns", "vs", "1", spec, tgt)
		if err != nil {
			if !errors.Is(err, traffic.ErrPreflight) {
				t.Fatalf("NewState: non-preflight error %v", err)
			}
			return
		}
		change, err := state.Plan(traffic.Desired{CanaryWeight: weight})
		if err != nil {
			if !errors.Is(err, traffic.ErrPreflight) {
				t.Fatalf("Plan: non-preflight error %v", err)
			}
			return
		}
		sum := 0
		for i, d := range change.After.Destinations {
			if d.Weight < 0 || d.Weight > 100 {
				t.Fatalf("destination %d has weight %d", i, d.Weight)
			}
			sum += d.Weight
			switch d.Role {
			case traffic.RoleOther:
				if i >= len(change.Before.Destinations) || change.Before.Destinations[i] != d {
					t.Fatalf("other destination %d changed: %+v", i, d)
				}
			case traffic.RoleCanary:
				if d.Weight != weight {
					t.Fatalf("canary weight %d, asked %d", d.Weight, weight)
				}
			}
		}
		if sum != 100 {
			t.Fatalf("weights sum to %d: %s", sum, traffic.DescribeWeights(change.After.Destinations))
		}
		checkPatch(t, specJSON(t, spec), change)
	})
}

// fuzzSpec builds a VirtualService from bytes: the first byte is the number of destinations of
// the steered route, then one (subset, weight) pair per destination. Subsets cycle through
// v1 (stable), v2 (canary), v3 and none.
func fuzzSpec(shape []byte, withMatch bool) *networking.VirtualService {
	subsets := []string{"v1", "v2", "v3", ""}
	route := &networking.HTTPRoute{}
	if len(shape) > 0 {
		n := int(shape[0]%6) + 1
		shape = shape[1:]
		for i := 0; i < n && len(shape) >= 2; i++ {
			route.Route = append(route.Route, &networking.HTTPRouteDestination{
				Destination: &networking.Destination{Host: "reviews", Subset: subsets[int(shape[0])%len(subsets)]},
				Weight:      int32(shape[1]),
			})
			shape = shape[2:]
		}
	}
	spec := &networking.VirtualService{Hosts: []string{"reviews"}}
	if withMatch {
		spec.Http = append(spec.Http, &networking.HTTPRoute{
			Name:  "pinned",
			Match: []*networking.HTTPMatchRequest{{Name: "tester"}},
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews", Subset: "v2"}}},
		})
	}
	spec.Http = append(spec.Http, route)
	return spec
}

// FuzzStages: any sequence of stages (weights, A/B route in or out, mirror set or cleared)
// from any valid route either stops at a preflight error or leaves, after every stage, a
// valid route (weights 0–100 summing to 100, other destinations untouched), meshroll's A/B
// route and mirror exactly as asked, the other routes byte for byte as they were, and a patch
// that produces exactly the planned object.
func FuzzStages(f *testing.F) {
	f.Add([]byte{2, 0, 90, 1, 10}, []byte{0x81, 0x42, 25, 0x03, 100}, true)
	f.Add([]byte{1, 0, 0}, []byte{0x40, 0x80, 0xc0, 0}, false)
	f.Add([]byte{3, 0, 60, 2, 30, 1, 10}, []byte{0x82, 0xff, 0x10}, true)
	f.Fuzz(func(t *testing.T, shape, stages []byte, withMatch bool) {
		spec := fuzzSpec(shape, withMatch)
		spec.Http[len(spec.Http)-1].Timeout = durationpb.New(3e9) // a policy the A/B route copies
		tgt := Target{Namespace: "ns", VirtualService: "vs", StableSubset: "v1", CanarySubset: "v2",
			Match: []map[string]any{{"headers": map[string]any{"region": map[string]any{"exact": "india"}}}}}
		state, err := stateOf("ns", "vs", "1", spec, tgt)
		if err != nil {
			return
		}
		others := otherRoutes(t, state)
		for _, b := range stages {
			// bit 7: A/B route; bit 6: mirror (percent from the low bits); else the low 7 bits
			// are the canary weight (above 100: keep the weights).
			d := traffic.Desired{AB: b&0x80 != 0}
			if b&0x40 != 0 {
				d.MirrorPercent = float64(b&0x3f%100 + 1)
				d.KeepWeights = true
			} else if w := int(b & 0x7f); w > 100 {
				d.KeepWeights = true
			} else {
				d.CanaryWeight = w
			}
			change, err := state.Plan(d)
			if err != nil {
				if !errors.Is(err, traffic.ErrPreflight) {
					t.Fatalf("Plan(%+v): non-preflight error %v", d, err)
				}
				return
			}
			doc, err := state.document()
			if err != nil {
				t.Fatal(err)
			}
			checkPatchDocument(t, doc, change)
			next := change.Next.(*State)
			if err := traffic.CheckWeights(next.routing.Destinations); err != nil {
				t.Fatalf("after %+v: %v", d, err)
			}
			for i, dst := range change.After.Destinations {
				if dst.Role == traffic.RoleOther && (i >= len(change.Before.Destinations) || change.Before.Destinations[i] != dst) {
					t.Fatalf("after %+v: other destination %d changed: %+v", d, i, dst)
				}
				if dst.Role == traffic.RoleCanary && !d.KeepWeights && dst.Weight != d.CanaryWeight {
					t.Fatalf("after %+v: canary weight %d", d, dst.Weight)
				}
			}
			if (next.abIndex >= 0) != d.AB || next.routing.MirrorPercent != d.MirrorPercent {
				t.Fatalf("after %+v: A/B route at %d, mirror %v%%", d, next.abIndex, next.routing.MirrorPercent)
			}
			if got := otherRoutes(t, next); !slices.Equal(got, others) {
				t.Fatalf("after %+v: other routes changed:\n%q\nwant\n%q", d, got, others)
			}
			state = next
		}
	})
}

// otherRoutes are the routes that are neither steered nor meshroll's, as JSON.
func otherRoutes(t *testing.T, s *State) []string {
	t.Helper()
	var spec struct {
		HTTP []json.RawMessage `json:"http"`
	}
	if err := json.Unmarshal(s.raw, &spec); err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, r := range spec.HTTP {
		if i != s.routeIndex && i != s.abIndex {
			out = append(out, string(r))
		}
	}
	return out
}
