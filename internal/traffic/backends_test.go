package traffic_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/gatewayapi"
	"github.com/meshroll/meshroll/internal/traffic/istio"
)

// backend is one encoding of a route: the same destinations as a VirtualService route or as
// an HTTPRoute rule, read by that backend.
type backend struct {
	name string
	read func(t *testing.T, ds []dest) traffic.State
}

// dest is a destination of the shared table: the stable version, the canary, or another
// one, with a weight (percentages, so that both backends mean the same).
type dest struct {
	role   traffic.Role
	weight int
}

var match = []map[string]any{{"headers": map[string]any{"x-beta": map[string]any{"exact": "1"}}}}

// name is the version a destination is in both encodings: subset v1/v2 or Service
// reviews-v1/reviews-v2; others are "legacy".
func name(r traffic.Role) string {
	return map[traffic.Role]string{traffic.RoleStable: "v1", traffic.RoleCanary: "v2", traffic.RoleOther: "legacy"}[r]
}

var backends = []backend{
	{name: "VirtualService", read: func(t *testing.T, ds []dest) traffic.State {
		var routes []string
		for _, d := range ds {
			routes = append(routes, fmt.Sprintf(`{"destination":{"host":"reviews","subset":%q},"weight":%d}`, name(d.role), d.weight))
		}
		spec := `{"hosts":["reviews"],"http":[{"name":"default","route":[` + strings.Join(routes, ",") + `]}]}`
		s, err := istio.NewState("prod", "reviews", "1", []byte(spec), istio.Target{Namespace: "prod", VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2", Match: match})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{name: "HTTPRoute", read: func(t *testing.T, ds []dest) traffic.State {
		var refs []string
		for _, d := range ds {
			refs = append(refs, fmt.Sprintf(`{"name":"reviews-%s","port":9080,"weight":%d}`, name(d.role), d.weight))
		}
		spec := `{"rules":[{"name":"default","backendRefs":[` + strings.Join(refs, ",") + `]}]}`
		s, err := gatewayapi.NewState("prod", "reviews", "1", []byte(spec), gatewayapi.Target{Namespace: "prod", HTTPRoute: "reviews", StableService: "reviews-v1", CanaryService: "reviews-v2", Match: match})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// The planner's decisions are the backends' in common: the same table, two encodings.
func TestBackendsPlanAlike(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		route   []dest
		stages  []traffic.Desired
		want    []string // per stage: the shares stable, canary, other; "+ab", "+mirror N"
		wantErr error
	}{
		{name: "a lone stable destination gets the canary beside it",
			route:  []dest{{traffic.RoleStable, 100}},
			stages: []traffic.Desired{{CanaryWeight: 10}, {CanaryWeight: 50}, {CanaryWeight: 100}},
			want:   []string{"stable 90, canary 10", "stable 50, canary 50", "stable 0, canary 100"}},
		{name: "another destination keeps its share",
			route:  []dest{{traffic.RoleStable, 80}, {traffic.RoleOther, 20}},
			stages: []traffic.Desired{{CanaryWeight: 30}, {CanaryWeight: 0}},
			want:   []string{"stable 50, other 20, canary 30", "stable 80, other 20, canary 0"}},
		{name: "weights in place write nothing",
			route:  []dest{{traffic.RoleStable, 75}, {traffic.RoleCanary, 25}},
			stages: []traffic.Desired{{CanaryWeight: 25}},
			want:   []string{"unchanged"}},
		{name: "more than the others leave is refused",
			route:   []dest{{traffic.RoleStable, 50}, {traffic.RoleOther, 50}},
			stages:  []traffic.Desired{{CanaryWeight: 60}},
			wantErr: traffic.ErrWeightTooLarge},
		{name: "a promotion that prunes the versions left at 0",
			route:  []dest{{traffic.RoleOther, 0}, {traffic.RoleStable, 50}, {traffic.RoleCanary, 50}},
			stages: []traffic.Desired{{CanaryWeight: 100, Prune: true}, {CanaryWeight: 100}, {CanaryWeight: 0}},
			// Promoted and pruned, the route is left alone at 100 and rolled back with the stable
			// destination appended again.
			want: []string{"canary 100", "unchanged", "canary 0, stable 100"}},
		{name: "pruning only ever follows a promotion",
			route:  []dest{{traffic.RoleOther, 0}, {traffic.RoleStable, 50}, {traffic.RoleCanary, 50}},
			stages: []traffic.Desired{{CanaryWeight: 60, Prune: true}},
			want:   []string{"other 0, stable 40, canary 60"}},
		{name: "mirror, A/B, weights, promotion",
			route:  []dest{{traffic.RoleStable, 100}},
			stages: []traffic.Desired{{KeepWeights: true, MirrorPercent: 50}, {KeepWeights: true, AB: true}, {CanaryWeight: 20, AB: true}, {CanaryWeight: 100}},
			want:   []string{"stable 100, mirror 50", "stable 100, ab", "stable 80, canary 20, ab", "stable 0, canary 100"}},
	}
	for _, tt := range tests {
		for _, b := range backends {
			t.Run(tt.name+"/"+b.name, func(t *testing.T) {
				t.Parallel()
				s := b.read(t, tt.route)
				var got []string
				for _, d := range tt.stages {
					c, err := s.Plan(d)
					if tt.wantErr != nil || err != nil {
						if !errors.Is(err, tt.wantErr) {
							t.Fatalf("%+v: error %v, want %v", d, err, tt.wantErr)
						}
						return
					}
					got = append(got, shares(c))
					s = c.Next
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	}
}

// shares says what a change leaves, by role, the same way for both backends.
func shares(c traffic.Change) string {
	if !c.Changed {
		return "unchanged"
	}
	var parts []string
	for _, d := range c.After.Destinations {
		parts = append(parts, fmt.Sprintf("%s %d", d.Role, d.Weight))
	}
	if c.After.ABRoute != "" {
		parts = append(parts, "ab")
	}
	if c.After.MirrorPercent > 0 {
		parts = append(parts, fmt.Sprintf("mirror %g", c.After.MirrorPercent))
	}
	return strings.Join(parts, ", ")
}
