package app

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/istio"
)

// hostSplit is Argo Rollouts' and Flagger's shape: one route split between two Services, no
// subsets (and so no DestinationRule), the canary not in the route yet.
const hostSplit = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - name: primary
    route:
    - destination: {host: reviews-stable, port: {number: 9080}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-stable}
spec:
  selector: {app: reviews, version: v1}
  ports: [{port: 9080, name: http}]
`

const canaryService = `
apiVersion: v1
kind: Service
metadata: {name: reviews-canary}
spec:
  selector: {app: reviews, version: v2}
  ports: [{port: 9080, name: http}]
`

func hostWeights(t *testing.T, env *testenv.Env, ns string) (string, string) {
	t.Helper()
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state, err := istio.NewState(ns, "reviews", vs.ResourceVersion, specJSON(t, vs), istio.Target{Namespace: ns, VirtualService: "reviews", StableService: "reviews-stable", CanaryService: "reviews-canary"})
	if err != nil {
		t.Fatal(err)
	}
	return traffic.DescribeWeights(state.Routing().Destinations), vs.ResourceVersion
}

// A host-level split is steered by Service names alone: the canary Service is appended with
// the stable destination's port, moved step by step, and rolled back; preflight checks that
// the Services exist and select the Deployments' pods.
func TestHostLevelSplit(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	services := []string{"MESHROLL_STABLE_SUBSET=", "MESHROLL_CANARY_SUBSET=",
		"MESHROLL_STABLE_SERVICE=reviews-stable", "MESHROLL_CANARY_SERVICE=reviews-canary.NS.svc.cluster.local",
		"MESHROLL_CANARY_DEPLOYMENT=reviews-v2", "MESHROLL_STABLE_DEPLOYMENT=reviews-v1"}
	setup := func(t *testing.T, manifests ...string) (string, []string) {
		ns := env.Namespace(t)
		env.Apply(t, ns, strings.Join(append([]string{hostSplit, testenv.DeploymentManifest("reviews-v1", "v1"), testenv.DeploymentManifest("reviews-v2", "v2")}, manifests...), "\n---\n"))
		for _, d := range []string{"reviews-v1", "reviews-v2"} {
			if err := env.SetDeploymentStatus(t.Context(), ns, d, true); err != nil {
				t.Fatal(err)
			}
		}
		vars := make([]string, len(services))
		for i, v := range services {
			vars[i] = strings.ReplaceAll(v, "NS", ns)
		}
		return ns, vars
	}

	t.Run("progress then rollback", func(t *testing.T) {
		t.Parallel()
		ns, vars := setup(t, canaryService)
		got := runMain(t.Context(), t, env, ns, append(vars, "MESHROLL_STEPS=10,40")...)
		if got.code != 0 || !strings.Contains(got.stdout, "result: weight-set") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		if w, _ := hostWeights(t, env, ns); w != "reviews-stable 60, reviews-canary."+ns+".svc.cluster.local 40" {
			t.Errorf("weights after the progression = %s", w)
		}
		got = runMain(t.Context(), t, env, ns, append(vars, "MESHROLL_MODE=rollback")...)
		if got.code != 0 || !strings.Contains(got.stdout, "result: rolled-back") {
			t.Fatalf("rollback: exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		if w, _ := hostWeights(t, env, ns); w != "reviews-stable 100, reviews-canary."+ns+".svc.cluster.local 0" {
			t.Errorf("weights after the rollback = %s", w)
		}
	})
	t.Run("canary Service missing", func(t *testing.T) {
		t.Parallel()
		ns, vars := setup(t)
		_, rv := hostWeights(t, env, ns)
		got := runMain(t.Context(), t, env, ns, append(vars, "MESHROLL_STEPS=10")...)
		if got.code != 2 || !strings.Contains(got.stderr, "MESHROLL_CANARY_SERVICE=reviews-canary."+ns+".svc.cluster.local: Service "+ns+"/reviews-canary not found") {
			t.Fatalf("exit %d, want 2 naming the Service\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		if _, after := hostWeights(t, env, ns); after != rv {
			t.Errorf("the VirtualService was written: resourceVersion %s → %s", rv, after)
		}
	})
}
