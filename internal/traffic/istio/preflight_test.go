package istio

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

// service is a Service manifest selecting the pods of one version of reviews.
func service(name, version string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {name: %s}
spec:
  selector: {app: reviews, version: %s}
  ports: [{port: 9080, name: http}]
`, name, version)
}

func TestPreflight(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	fqdnRule := strings.Replace(destinationRule, "host: reviews\n", "host: reviews.NS.svc.cluster.local\n", 1)
	tests := []struct {
		name      string
		vs        string // the VirtualService fixture, weighted-with-policies.yaml when empty
		services  bool   // name stable and canary by Service (reviews-stable, reviews-canary)
		manifests string
		checks    traffic.Checks
		available bool // set the Deployment Available before the check
		late      bool // set it Available while the check waits
		wantErr   error
	}{
		{name: "subsets defined", manifests: destinationRule, checks: traffic.Checks{Canary: true}},
		{name: "fqdn rule for a short host", manifests: fqdnRule, checks: traffic.Checks{Canary: true}},
		{name: "short rule for an fqdn host", vs: "fqdn-port.yaml", manifests: strings.NewReplacer("name: v1", "name: stable", "name: v2", "name: canary").Replace(destinationRule), checks: traffic.Checks{Canary: true}},
		{name: "rule in another namespace does not count", vs: "fqdn-port.yaml", manifests: strings.NewReplacer("name: v1", "name: stable", "name: v2", "name: canary", "host: reviews\n", "host: reviews.elsewhere.svc.cluster.local\n").Replace(destinationRule), checks: traffic.Checks{Canary: true}, wantErr: traffic.ErrSubsetNotDefined},
		{name: "no rule", checks: traffic.Checks{Canary: true}, wantErr: traffic.ErrSubsetNotDefined},
		{name: "rule for another host", manifests: strings.Replace(destinationRule, "host: reviews\n", "host: ratings\n", 1), checks: traffic.Checks{Canary: true}, wantErr: traffic.ErrSubsetNotDefined},
		{name: "canary subset missing", manifests: strings.Replace(destinationRule, "name: v2", "name: v2-old", 1), checks: traffic.Checks{Canary: true}, wantErr: traffic.ErrSubsetNotDefined},
		{name: "rollback needs only stable", manifests: strings.Replace(destinationRule, "name: v2", "name: v2-old", 1)},
		{name: "deployment available", manifests: destinationRule + "---" + testenv.DeploymentManifest("reviews-v2", "v2"), available: true, checks: traffic.Checks{Canary: true, CanaryDeployment: "reviews-v2", ReadyTimeout: 10 * time.Second}},
		{name: "deployment becomes available", manifests: destinationRule + "---" + testenv.DeploymentManifest("reviews-v2", "v2"), late: true, checks: traffic.Checks{Canary: true, CanaryDeployment: "reviews-v2", ReadyTimeout: 30 * time.Second, PollInterval: 100 * time.Millisecond}},
		{name: "deployment never available", manifests: destinationRule + "---" + testenv.DeploymentManifest("reviews-v2", "v2"), checks: traffic.Checks{Canary: true, CanaryDeployment: "reviews-v2", ReadyTimeout: time.Second, PollInterval: 100 * time.Millisecond}, wantErr: traffic.ErrDeploymentNotReady},
		{name: "deployment missing", manifests: destinationRule, checks: traffic.Checks{Canary: true, CanaryDeployment: "reviews-v2", ReadyTimeout: 10 * time.Second}, wantErr: traffic.ErrDeploymentNotReady},
		{name: "services exist", vs: "host-split.yaml", services: true, manifests: service("reviews-stable", "v1") + "---" + service("reviews-canary", "v2"), checks: traffic.Checks{Canary: true}},
		{name: "canary service missing", vs: "host-split.yaml", services: true, manifests: service("reviews-stable", "v1"), checks: traffic.Checks{Canary: true}, wantErr: traffic.ErrServiceNotFound},
		{name: "rollback needs only the stable service", vs: "host-split.yaml", services: true, manifests: service("reviews-stable", "v1")},
		{name: "service selects the deployment's pods", vs: "host-split.yaml", services: true, manifests: service("reviews-stable", "v1") + "---" + service("reviews-canary", "v2") + "---" + testenv.DeploymentManifest("reviews-v2", "v2"), available: true, checks: traffic.Checks{Canary: true, CanaryDeployment: "reviews-v2", ReadyTimeout: 10 * time.Second}},
		{name: "service selects other pods", vs: "host-split.yaml", services: true, manifests: service("reviews-stable", "v1") + "---" + service("reviews-canary", "v3") + "---" + testenv.DeploymentManifest("reviews-v2", "v2"), available: true, checks: traffic.Checks{Canary: true, CanaryDeployment: "reviews-v2", ReadyTimeout: 10 * time.Second}, wantErr: traffic.ErrDeploymentNotReady},
		{name: "deployment pods not in canary subset", manifests: destinationRule + "---" + testenv.DeploymentManifest("reviews-v2", "v3"), available: true, checks: traffic.Checks{Canary: true, CanaryDeployment: "reviews-v2", ReadyTimeout: 10 * time.Second}, wantErr: traffic.ErrDeploymentNotReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			target := Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"}
			if tt.vs == "" {
				env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml"))
			} else {
				// The fixtures' FQDNs name namespaces prod and bookinfo; point them at this test's.
				env.Apply(t, ns, strings.NewReplacer(".prod.", "."+ns+".", ".bookinfo.", "."+ns+".", "namespace: bookinfo", "namespace: "+ns).Replace(fixtureText(t, tt.vs)))
				target.StableSubset, target.CanarySubset = "stable", "canary"
			}
			if tt.services {
				target = Target{Namespace: ns, VirtualService: "reviews", StableService: "reviews-stable", CanaryService: "reviews-canary"}
			}
			if tt.manifests != "" {
				env.Apply(t, ns, strings.ReplaceAll(tt.manifests, "NS", ns))
			}
			if tt.available {
				if err := env.SetDeploymentStatus(t.Context(), ns, "reviews-v2", true); err != nil {
					t.Fatal(err)
				}
			}
			if tt.late {
				go func() {
					time.Sleep(500 * time.Millisecond)
					if err := env.SetDeploymentStatus(context.Background(), ns, "reviews-v2", true); err != nil {
						t.Error(err)
					}
				}()
			}
			rv := getRaw(t, env, "v1", ns).GetResourceVersion()
			c := NewClient(env.Istio, env.Kube, target)
			state, err := c.Preflight(t.Context(), tt.checks)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, traffic.ErrPreflight) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if state.Routing().Route != "default" && state.Routing().Route != "primary" {
				t.Errorf("route = %s", state.Routing().Route)
			}
			if got := getRaw(t, env, "v1", ns).GetResourceVersion(); got != rv {
				t.Errorf("preflight wrote: resourceVersion %s → %s", rv, got)
			}
		})
	}
}

// A VirtualService that a controller owns (Flagger generates and rewrites its canary's) is
// refused before anything is written, naming the owner.
func TestPreflightRefusesAControllersObject(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	owned := strings.Replace(fixtureText(t, "weighted-with-policies.yaml"), "metadata:\n", `metadata:
  ownerReferences:
  - {apiVersion: flagger.app/v1beta1, kind: Canary, name: reviews, uid: 7e4c3c5e-0b1a-4a4e-9d51-000000000001, controller: true, blockOwnerDeletion: true}
`, 1)
	env.Apply(t, ns, owned+"---\n"+destinationRule)
	rv := getRaw(t, env, "v1", ns).GetResourceVersion()
	c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
	_, err := c.Preflight(t.Context(), traffic.Checks{Canary: true, Write: true})
	if !errors.Is(err, traffic.ErrOwnedByController) || !errors.Is(err, traffic.ErrPreflight) {
		t.Fatalf("err = %v, want ErrOwnedByController", err)
	}
	if !strings.Contains(err.Error(), "Canary reviews (flagger.app/v1beta1)") {
		t.Errorf("the error does not name the owner: %v", err)
	}
	if got := getRaw(t, env, "v1", ns).GetResourceVersion(); got != rv {
		t.Errorf("preflight wrote: resourceVersion %s → %s", rv, got)
	}
}
