package cluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

func TestServiceKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ host, ns, want, wantNamespace string }{
		{"reviews", "prod", "reviews.prod", "prod"},
		{"reviews.prod", "other", "reviews.prod", "prod"},
		{"reviews.prod.svc", "other", "reviews.prod", "prod"},
		{"reviews.prod.svc.cluster.local", "other", "reviews.prod", "prod"},
		{"reviews.prod.svc.corp.example", "other", "reviews.prod", "prod"},
		{"api.example.com", "prod", "api.example.com", ""},
	}
	for _, tt := range tests {
		got := ServiceKey(tt.host, tt.ns)
		if got != tt.want {
			t.Errorf("ServiceKey(%q, %q) = %q, want %q", tt.host, tt.ns, got, tt.want)
		}
		if ns := KeyNamespace(got); ns != tt.wantNamespace {
			t.Errorf("KeyNamespace(%q) = %q, want %q", got, ns, tt.wantNamespace)
		}
	}
}

// ServiceSelector finds the Service however its name is written, and says which input named
// one that is not there or is no Service name.
func TestServiceSelector(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, `
apiVersion: v1
kind: Service
metadata: {name: reviews-canary}
spec:
  selector: {app: reviews, version: v2}
  ports: [{port: 9080, name: http}]
`)
	tests := []struct {
		name, service string
		want          map[string]string
		wantErr       string // the whole message, NS for the namespace
	}{
		{name: "short name", service: "reviews-canary", want: map[string]string{"app": "reviews", "version": "v2"}},
		{name: "fully qualified", service: "reviews-canary.NS.svc.cluster.local", want: map[string]string{"app": "reviews", "version": "v2"}},
		{name: "not found", service: "reviews-v3",
			wantErr: "MESHROLL_CANARY_SERVICE=reviews-v3: Service NS/reviews-v3 not found: check the name and namespace"},
		{name: "another namespace", service: "reviews-canary.elsewhere",
			wantErr: "MESHROLL_CANARY_SERVICE=reviews-canary.elsewhere: Service elsewhere/reviews-canary not found: check the name and namespace"},
		{name: "not a Service name", service: "reviews.example.com",
			wantErr: "MESHROLL_CANARY_SERVICE=reviews.example.com is not a Kubernetes Service name (name, name.namespace or name.namespace.svc.cluster.local)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ServiceSelector(t.Context(), env.Kube, ns, "MESHROLL_CANARY_SERVICE", strings.ReplaceAll(tt.service, "NS", ns))
			if tt.wantErr != "" {
				if !errors.Is(err, traffic.ErrServiceNotFound) || !errors.Is(err, traffic.ErrPreflight) {
					t.Fatalf("err = %v, want ErrServiceNotFound", err)
				}
				if want := strings.ReplaceAll(tt.wantErr, "NS", ns); err.Error() != want {
					t.Errorf("err = %q, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("selector (-want +got):\n%s", diff)
			}
		})
	}
}
