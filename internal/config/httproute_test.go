package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// gateway is a minimal Gateway API run: an HTTPRoute and the two Services.
var gateway = []string{"MESHROLL_HTTP_ROUTE=reviews", "MESHROLL_STABLE_SERVICE=reviews-v1", "MESHROLL_CANARY_SERVICE=reviews-v2"}

func TestHTTPRoute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		vars []string
		want []string // problems; none: valid
	}{
		{name: "an HTTPRoute and its Services", vars: gateway},
		{name: "a canary Service in another namespace", vars: append(gateway, "MESHROLL_CANARY_SERVICE=canaries/reviews-v2")},
		{name: "a rule by index", vars: append(gateway, "MESHROLL_ROUTE=rules[1]")},
		{name: "status without the Services", vars: []string{"MESHROLL_HTTP_ROUTE=reviews", "MESHROLL_MODE=status"}},
		{name: "both routing objects", vars: append(gateway, "MESHROLL_VIRTUAL_SERVICE=reviews"),
			want: []string{"MESHROLL_VIRTUAL_SERVICE and MESHROLL_HTTP_ROUTE are both set: a run steers one routing object; unset one of them"}},
		{name: "neither", vars: []string{"MESHROLL_STABLE_SERVICE=a", "MESHROLL_CANARY_SERVICE=b"},
			want: []string{"MESHROLL_VIRTUAL_SERVICE is required: set it to the name of the VirtualService to steer, e.g. reviews, or set MESHROLL_HTTP_ROUTE to steer a Gateway API HTTPRoute instead"}},
		{name: "subsets are Istio's", vars: append(gateway, "MESHROLL_STABLE_SUBSET=v1"),
			want: []string{"MESHROLL_STABLE_SUBSET=v1: subsets are an Istio DestinationRule's; an HTTPRoute names each version by its Service: unset it and set MESHROLL_STABLE_SERVICE and MESHROLL_CANARY_SERVICE"}},
		{name: "the Services are required", vars: []string{"MESHROLL_HTTP_ROUTE=reviews"},
			want: []string{
				"MESHROLL_STABLE_SERVICE is required: an HTTPRoute names each version by its Service; set it to the stable version's Service, e.g. reviews-v1 (or namespace/reviews-v1 in another namespace)",
				"MESHROLL_CANARY_SERVICE is required: an HTTPRoute names each version by its Service; set it to the canary version's Service, e.g. reviews-v2 (or namespace/reviews-v2 in another namespace)",
			}},
		{name: "a host name is no backendRef", vars: append(gateway, "MESHROLL_CANARY_SERVICE=reviews-v2.shop.svc.cluster.local"),
			want: []string{"MESHROLL_CANARY_SERVICE=reviews-v2.shop.svc.cluster.local: not a Service name"}},
		{name: "the same Service twice", vars: append(gateway, "MESHROLL_CANARY_SERVICE=reviews-v1"),
			want: []string{"MESHROLL_CANARY_SERVICE=reviews-v1: same Service as MESHROLL_STABLE_SERVICE; the canary must be a Service of its own"}},
		{name: "ambient or sidecars: the reporter's default", vars: append(gateway, "MESHROLL_PROMETHEUS_URL=http://prometheus:9090", "MESHROLL_CANARY_WORKLOAD=reviews-v2", "MESHROLL_STABLE_WORKLOAD=reviews-v1")},
		{name: "A/B and mirror", vars: append(gateway, "MESHROLL_MATCH={headers: {x-beta: {exact: \"1\"}}}", "MESHROLL_MIRROR_PERCENT=10")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(tt.vars)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if kind, name := cfg.RouteObject(); kind != KindHTTPRoute || name != "reviews" {
					t.Errorf("RouteObject() = %s %s, want HTTPRoute reviews", kind, name)
				}
				if cfg.Analysis.Enabled() && cfg.Analysis.Reporter != "destination|waypoint" {
					t.Errorf("reporter %q, want destination|waypoint: an HTTPRoute's requests are reported by sidecars or by an ambient waypoint", cfg.Analysis.Reporter)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
			got := strings.Split(err.Error(), "\n")
			for i := range got {
				for _, w := range tt.want {
					if strings.HasPrefix(got[i], w) {
						got[i] = w // a prefix is enough where the validation library words the rest
					}
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
