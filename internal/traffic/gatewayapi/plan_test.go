package gatewayapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/traffic"
)

var target = Target{Namespace: "prod", HTTPRoute: "reviews", StableService: "reviews-v1", CanaryService: "reviews-v2"}

// rule is an HTTPRoute spec with one catch-all rule (the API server's default match), the
// given backendRefs and fields meshroll must never touch.
func rule(refs string) string {
	return `{"parentRefs":[{"name":"mesh","kind":"Service","group":""}],"hostnames":["reviews.example.com"],"rules":[
	  {"name":"tester","matches":[{"headers":[{"name":"x-tester","value":"yes"}]}],"backendRefs":[{"name":"reviews-v2","port":9080}]},
	  {"name":"default","matches":[{"path":{"type":"PathPrefix","value":"/"}}],
	   "filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":{"add":[{"name":"x-via","value":"gw"}]}}],
	   "timeouts":{"request":"10s"},"futureField":{"kept":true},
	   "backendRefs":[` + refs + `]}]}`
}

func TestPlanWeights(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		refs    string
		canary  int
		want    string // the rule's weights after, as DescribeWeights says them
		ops     int    // patch operations, 0: nothing to write
		wantErr error
	}{
		{name: "a lone stable backend: the canary is appended on its port", canary: 10,
			refs: `{"name":"reviews-v1","port":9080}`,
			want: "reviews-v1 90, reviews-v2 10", ops: 4},
		{name: "1/1 to a canary of 25 is written in percentages", canary: 25,
			refs: `{"name":"reviews-v1","port":9080},{"name":"reviews-v2","port":9080}`,
			want: "reviews-v1 75, reviews-v2 25", ops: 5},
		{name: "3/1 is already 25%: nothing to write", canary: 25,
			refs: `{"name":"reviews-v1","port":9080,"weight":3},{"name":"reviews-v2","port":9080,"weight":1}`,
			want: "reviews-v1 3 (75%), reviews-v2 1 (25%)", ops: 0},
		{name: "another backend keeps its share", canary: 25,
			refs: `{"name":"reviews-v1","port":9080,"weight":2},{"name":"legacy","port":9080,"weight":1},{"name":"reviews-v2","port":9080,"weight":0}`,
			want: "reviews-v1 5 (42%), legacy 4 (33%), reviews-v2 3 (25%)", ops: 7},
		{name: "weights that sum to 0 are refused", canary: 10,
			refs:    `{"name":"reviews-v1","port":9080,"weight":0},{"name":"reviews-v2","port":9080,"weight":0}`,
			wantErr: traffic.ErrInvalidWeights},
		{name: "promotion with another backend is refused", canary: 100,
			refs:    `{"name":"reviews-v1","port":9080},{"name":"legacy","port":9080}`,
			wantErr: traffic.ErrWeightTooLarge},
		{name: "back to stable", canary: 0,
			refs: `{"name":"reviews-v1","port":9080,"weight":50},{"name":"reviews-v2","port":9080,"weight":50}`,
			want: "reviews-v1 100, reviews-v2 0", ops: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := rule(tt.refs)
			s, err := NewState("prod", "reviews", "7", []byte(spec), target)
			if err != nil {
				t.Fatal(err)
			}
			if s.Routing().Route != "default" {
				t.Fatalf("steered rule %s, want default (the catch-all)", s.Routing().Route)
			}
			c, err := s.Plan(traffic.Desired{CanaryWeight: tt.canary})
			if tt.wantErr != nil || err != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, traffic.ErrPreflight) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if got := traffic.DescribeWeights(c.After.Destinations); got != tt.want {
				t.Errorf("weights after: %s, want %s", got, tt.want)
			}
			if len(c.Patch) != tt.ops || c.Changed != (tt.ops > 0) {
				t.Errorf("%d patch operations (changed %v), want %d:\n%+v", len(c.Patch), c.Changed, tt.ops, c.Patch)
			}
			if c.After.CanaryWeight() != tt.canary {
				t.Errorf("canary share after: %d, want %d", c.After.CanaryWeight(), tt.canary)
			}
			// Everything but the steered rule's weights and appended backendRef is untouched.
			after := c.Next.(*State).raw
			if diff := cmp.Diff(withoutWeights(t, []byte(spec)), withoutWeights(t, after)); diff != "" {
				t.Errorf("the patch touched more than weights (-before +after):\n%s", diff)
			}
			// A second plan to the same share writes nothing.
			again, err := c.Next.Plan(traffic.Desired{CanaryWeight: tt.canary})
			if err != nil || again.Changed {
				t.Errorf("planning the same share again: changed %v, %v", again.Changed, err)
			}
		})
	}
}

// withoutWeights is spec as a generic value with every backendRef's weight dropped, and the
// backendRefs of the steered rule beyond the ones it had cut, to compare what a plan may not
// change.
func withoutWeights(t *testing.T, spec []byte) any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(spec, &v); err != nil {
		t.Fatal(err)
	}
	for _, r := range v["rules"].([]any) {
		rule := r.(map[string]any)
		refs := rule["backendRefs"].([]any)
		kept := refs[:0]
		for _, b := range refs {
			ref := b.(map[string]any)
			delete(ref, "weight")
			if rule["name"] == "default" && ref["name"] == "reviews-v2" {
				continue // appended, or kept: its weight is all that may differ
			}
			kept = append(kept, ref)
		}
		rule["backendRefs"] = kept
	}
	return v
}

func TestSelectRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec, rule string
		want             string
		wantErr          error
	}{
		{name: "the catch-all, not the tester's rule", spec: rule(`{"name":"reviews-v1"}`), want: "default"},
		{name: "a named rule", spec: rule(`{"name":"reviews-v1"}`), rule: "default", want: "default"},
		{name: "a named rule without the stable Service", spec: rule(`{"name":"reviews-v1"}`), rule: "tester", wantErr: traffic.ErrSubsetNotInRoute},
		{name: "rules[N]", spec: rule(`{"name":"reviews-v1"}`), rule: "rules[1]", want: "default"},
		{name: "an unknown name", spec: rule(`{"name":"reviews-v1"}`), rule: "nope", wantErr: traffic.ErrRouteNotFound},
		{name: "no rule reaches the Services", spec: `{"rules":[{"backendRefs":[{"name":"other"}]}]}`, wantErr: traffic.ErrRouteNotFound},
		{name: "two catch-alls", spec: `{"rules":[{"backendRefs":[{"name":"reviews-v1"}]},{"backendRefs":[{"name":"reviews-v1"}]}]}`, wantErr: traffic.ErrAmbiguousRoute},
		{name: "the only rule, with conditions", spec: `{"rules":[{"matches":[{"method":"GET"}],"backendRefs":[{"name":"reviews-v1"}]}]}`, want: "rules[0]"},
		{name: "a Service of another namespace is another Service", spec: `{"rules":[{"backendRefs":[{"name":"reviews-v1","namespace":"staging"}]}]}`, wantErr: traffic.ErrRouteNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := target
			tg.Rule = tt.rule
			s, err := NewState("prod", "reviews", "1", []byte(tt.spec), tg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Routing().Route; got != tt.want {
				t.Errorf("rule %s, want %s", got, tt.want)
			}
		})
	}
}

// A cross-namespace canary Service is appended with its namespace.
func TestPlanCrossNamespaceCanary(t *testing.T) {
	t.Parallel()
	tg := target
	tg.CanaryService = "canaries/reviews-v2"
	s, err := NewState("prod", "reviews", "1", []byte(`{"rules":[{"backendRefs":[{"name":"reviews-v1","port":9080}]}]}`), tg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Plan(traffic.Desired{CanaryWeight: 20})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := json.Marshal(c.Patch[len(c.Patch)-1])
	if want := `{"op":"add","path":"/spec/rules/0/backendRefs/-","value":{"name":"reviews-v2","namespace":"canaries","port":9080,"weight":20}}`; string(last) != want {
		t.Errorf("last operation %s, want %s", last, want)
	}
	if got := traffic.DescribeWeights(c.After.Destinations); !strings.Contains(got, "canaries/reviews-v2 20") {
		t.Errorf("weights after: %s", got)
	}
}
