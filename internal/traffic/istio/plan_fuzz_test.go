package istio

import (
	"github.com/meshroll/meshroll/internal/traffic"

	"errors"
	"testing"

	networking "istio.io/api/networking/v1"
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
		state, err := newState("ns", "vs", "1", spec, tgt)
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
