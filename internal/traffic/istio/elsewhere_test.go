package istio

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/meshroll/meshroll/internal/traffic"
)

// Scale-down must know whether a route other than the steered one still sends a version
// traffic.
func TestElsewhere(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		want map[traffic.Role][]string
	}{
		{"only the steered route", `
http:
- name: default
  route:
  - destination: {host: reviews, subset: v1}
    weight: 100
  - destination: {host: reviews, subset: v2}
    weight: 0`, nil},
		{"a tester route to the canary", `
http:
- name: tester
  match: [{headers: {end-user: {exact: tester}}}]
  route:
  - destination: {host: reviews, subset: v2}
- name: default
  route:
  - destination: {host: reviews, subset: v1}`, map[traffic.Role][]string{traffic.RoleCanary: {"tester"}}},
		{"a route with weight 0 for stable", `
http:
- name: api
  match: [{uri: {prefix: /api}}]
  route:
  - destination: {host: reviews, subset: v1}
    weight: 0
  - destination: {host: reviews, subset: v3}
    weight: 100
- name: default
  route:
  - destination: {host: reviews, subset: v1}
    weight: 0
  - destination: {host: reviews, subset: v2}
    weight: 100`, nil},
		{"meshroll's A/B route does not count", `
http:
- name: meshroll-ab-v2
  match: [{headers: {end-user: {exact: jason}}}]
  route:
  - destination: {host: reviews, subset: v2}
- name: default
  route:
  - destination: {host: reviews, subset: v1}`, nil},
		{"the user's mirrors", `
http:
- name: shadow
  match: [{uri: {prefix: /shadow}}]
  route:
  - destination: {host: reviews, subset: v3}
  mirrors:
  - destination: {host: reviews, subset: v1}
- name: default
  route:
  - destination: {host: reviews, subset: v1}
  mirror: {host: reviews, subset: v2}`, map[traffic.Role][]string{traffic.RoleStable: {"shadow"}, traffic.RoleCanary: {"default"}}},
	}
	target := Target{Namespace: "shop", VirtualService: "reviews", Route: "default", StableSubset: "v1", CanarySubset: "v2"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec, err := yaml.YAMLToJSON([]byte(tt.spec))
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewState("shop", "reviews", "1", spec, target)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, s.Routing().Elsewhere); diff != "" {
				t.Errorf("Elsewhere (-want +got):\n%s", diff)
			}
		})
	}
}
