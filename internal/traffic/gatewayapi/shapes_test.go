package gatewayapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/traffic"
)

// jsonOf is v as compact JSON, for comparing what a plan wrote.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rules is the spec's rules after a plan, as generic values.
func rulesOf(t *testing.T, s traffic.State) []map[string]any {
	t.Helper()
	var spec struct {
		Rules []map[string]any `json:"rules"`
	}
	if err := json.Unmarshal(s.(*State).raw, &spec); err != nil {
		t.Fatal(err)
	}
	return spec.Rules
}

func TestPlanAB(t *testing.T) {
	t.Parallel()
	tg := target
	tg.Match = []map[string]any{{"headers": map[string]any{"x-beta": map[string]any{"exact": "1"}}}}
	s, err := NewState("prod", "reviews", "1", []byte(rule(`{"name":"reviews-v1","port":9080}`)), tg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Plan(traffic.Desired{KeepWeights: true, AB: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.After.ABRoute != "meshroll-ab-reviews-v2" || c.After.Route != "default" || traffic.DescribeWeights(c.After.Destinations) != "reviews-v1 1 (100%)" {
		t.Errorf("after: A/B %q, steered %s, weights %s", c.After.ABRoute, c.After.Route, traffic.DescribeWeights(c.After.Destinations))
	}
	rules := rulesOf(t, c.Next)
	if len(rules) != 3 || rules[1]["name"] != "meshroll-ab-reviews-v2" || rules[2]["name"] != "default" {
		t.Fatalf("rules after: %s", jsonOf(t, rules))
	}
	want := `{"backendRefs":[{"name":"reviews-v2","port":9080}],` +
		`"filters":[{"requestHeaderModifier":{"add":[{"name":"x-via","value":"gw"}]},"type":"RequestHeaderModifier"}],` +
		`"futureField":{"kept":true},` +
		`"matches":[{"headers":[{"name":"x-beta","type":"Exact","value":"1"}],"path":{"type":"PathPrefix","value":"/"}}],` +
		`"name":"meshroll-ab-reviews-v2","timeouts":{"request":"10s"}}`
	if got := jsonOf(t, rules[1]); got != want {
		t.Errorf("A/B rule:\n got %s\nwant %s", got, want)
	}
	// rules[N] still counts the user's rules only, and the A/B rule goes again at the end.
	tg.Rule = "rules[1]"
	again, err := newState(c.Next.(*State).metaForTest(), c.Next.(*State).raw, tg)
	if err != nil || again.Routing().Route != "default" {
		t.Fatalf("rules[1] with the A/B rule in place: %v, %v", again, err)
	}
	off, err := again.Plan(traffic.Desired{CanaryWeight: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rules := rulesOf(t, off.Next); len(rules) != 2 || off.After.ABRoute != "" {
		t.Errorf("after the promotion: %s", jsonOf(t, rules))
	}
}

func (s *State) metaForTest() (m metav1.ObjectMeta) {
	m.Namespace, m.Name, m.ResourceVersion, m.Annotations = s.routing.Namespace, s.routing.Name, s.routing.ResourceVersion, s.annotations
	return m
}

func TestPlanABRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		spec    string
		match   map[string]any
		want    error
		message string
	}{
		{name: "a header prefix", spec: rule(`{"name":"reviews-v1","port":9080}`),
			match: map[string]any{"headers": map[string]any{"cookie": map[string]any{"prefix": "user=jason"}}},
			want:  ErrUnsupported, message: `headers "cookie" matches by prefix, which the Gateway API cannot (it matches exactly or by regular expression: write regex: ^user=jason.*)`},
		{name: "sourceLabels", spec: rule(`{"name":"reviews-v1","port":9080}`),
			match: map[string]any{"sourceLabels": map[string]any{"app": "tester"}},
			want:  ErrUnsupported, message: "sourceLabels has no Gateway API equivalent"},
		{name: "another path than the rule's", spec: `{"rules":[{"name":"api","matches":[{"path":{"type":"PathPrefix","value":"/api"}}],"backendRefs":[{"name":"reviews-v1","port":9080}]}]}`,
			match: map[string]any{"uri": map[string]any{"prefix": "/web"}},
			want:  traffic.ErrMatchConflict, message: `MESHROLL_MATCH sets path "/web" (PathPrefix), but rule api of HTTPRoute prod/reviews matches "/api" (PathPrefix)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := target
			tg.Match = []map[string]any{tt.match}
			s, err := NewState("prod", "reviews", "1", []byte(tt.spec), tg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Plan(traffic.Desired{KeepWeights: true, AB: true})
			if !errors.Is(err, tt.want) || !errors.Is(err, traffic.ErrPreflight) || !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %v, want %v saying %q", err, tt.want, tt.message)
			}
		})
	}
}

// A path under the rule's prefix narrows it; the method and a header join it.
func TestCombineMatches(t *testing.T) {
	t.Parallel()
	tg := target
	tg.Match = []map[string]any{
		{"uri": map[string]any{"prefix": "/api/v2"}, "method": map[string]any{"exact": "get"}},
		{"queryParams": map[string]any{"beta": map[string]any{"regex": "1|yes"}}},
	}
	spec := `{"rules":[{"name":"api","matches":[{"path":{"type":"PathPrefix","value":"/api"},"headers":[{"name":"x-team","value":"a"}]}],"backendRefs":[{"name":"reviews-v1","port":9080}]}]}`
	s, err := NewState("prod", "reviews", "1", []byte(spec), tg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Plan(traffic.Desired{KeepWeights: true, AB: true})
	if err != nil {
		t.Fatal(err)
	}
	got := jsonOf(t, rulesOf(t, c.Next)[0]["matches"])
	want := `[{"headers":[{"name":"x-team","value":"a"}],"method":"GET","path":{"type":"PathPrefix","value":"/api/v2"}},` +
		`{"headers":[{"name":"x-team","value":"a"}],"path":{"type":"PathPrefix","value":"/api"},"queryParams":[{"name":"beta","type":"RegularExpression","value":"1|yes"}]}]`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}
}

func TestPlanMirror(t *testing.T) {
	t.Parallel()
	s, err := NewState("prod", "reviews", "1", []byte(rule(`{"name":"reviews-v1","port":9080}`)), target)
	if err != nil {
		t.Fatal(err)
	}
	on, err := s.Plan(traffic.Desired{KeepWeights: true, MirrorPercent: 12.5})
	if err != nil {
		t.Fatal(err)
	}
	if on.After.MirrorPercent != 12.5 {
		t.Errorf("mirroring %g%%, want 12.5", on.After.MirrorPercent)
	}
	filters := jsonOf(t, rulesOf(t, on.Next)[1]["filters"])
	if want := `{"requestMirror":{"backendRef":{"name":"reviews-v2","port":9080},"fraction":{"denominator":10000,"numerator":1250}},"type":"RequestMirror"}`; !strings.Contains(filters, want) {
		t.Errorf("filters %s lack %s", filters, want)
	}
	more, err := on.Next.Plan(traffic.Desired{KeepWeights: true, MirrorPercent: 50})
	if err != nil || more.After.MirrorPercent != 50 || len(rulesOf(t, more.Next)[1]["filters"].([]any)) != 2 {
		t.Fatalf("mirror to 50: %v, %+v", err, more.After)
	}
	off, err := more.Next.Plan(traffic.Desired{CanaryWeight: 10})
	if err != nil {
		t.Fatal(err)
	}
	if off.After.MirrorPercent != 0 || len(rulesOf(t, off.Next)[1]["filters"].([]any)) != 1 || off.Next.(*State).annotations[mirrorAnnotation] != "" {
		t.Errorf("after the mirror stage: %+v, filters %s", off.After, jsonOf(t, rulesOf(t, off.Next)[1]["filters"]))
	}
	// The user's own mirror is never replaced.
	theirs := `{"rules":[{"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"shadow","port":9080}}}],"backendRefs":[{"name":"reviews-v1","port":9080}]}]}`
	st, err := NewState("prod", "reviews", "1", []byte(theirs), target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Plan(traffic.Desired{KeepWeights: true, MirrorPercent: 10}); !errors.Is(err, traffic.ErrForeignMirror) {
		t.Errorf("mirroring beside the user's mirror: %v, want ErrForeignMirror", err)
	}
}
