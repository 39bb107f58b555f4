package app

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshroll/meshroll/internal/testenv"
)

// MESHROLL_SCALE_DOWN=true on the real API server: after a promotion the old stable
// Deployment goes to 0 through its scale subresource; after a rollback the canary's, but only
// once no route sends it traffic (the stack's tester route pins a header to v2).
func TestScaleDown(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	vars := []string{"MESHROLL_SCALE_DOWN=true", "MESHROLL_SCALE_DOWN_DELAY=0s",
		"MESHROLL_STABLE_DEPLOYMENT=reviews-v1", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2"}
	replicas := func(t *testing.T, ns, name string) int32 {
		t.Helper()
		scale, err := env.Kube.AppsV1().Deployments(ns).GetScale(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return scale.Spec.Replicas
	}
	setup := func(t *testing.T) string {
		t.Helper()
		ns := newStack(t, env)
		if _, err := env.Kube.AppsV1().Deployments(ns).Patch(t.Context(), "reviews-v1", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := env.SetDeploymentStatus(t.Context(), ns, "reviews-v1", true); err != nil {
			t.Fatal(err)
		}
		return ns
	}
	dropTester := func(t *testing.T, ns string) {
		t.Helper()
		patch := `[{"op":"test","path":"/spec/http/0/name","value":"tester"},{"op":"remove","path":"/spec/http/0"}]`
		if _, err := env.Istio.NetworkingV1().VirtualServices(ns).Patch(t.Context(), "reviews", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("after a promotion", func(t *testing.T) {
		t.Parallel()
		ns := setup(t)
		got := runMain(t.Context(), t, env, ns, append(vars, "MESHROLL_STEPS=50,100")...)
		want := "scale-down: Deployment " + ns + "/reviews-v1 scaled from 3 to 0"
		if got.code != 0 || !strings.Contains(got.stdout, "result: promoted") || !strings.Contains(got.stdout, want) {
			t.Fatalf("exit %d, want 0 with %q\nstdout:\n%s\nstderr:\n%s", got.code, want, got.stdout, got.stderr)
		}
		if r := replicas(t, ns, "reviews-v1"); r != 0 {
			t.Errorf("reviews-v1 has %d replicas, want 0", r)
		}
		if r := replicas(t, ns, "reviews-v2"); r != 2 {
			t.Errorf("reviews-v2 has %d replicas, want 2 (the canary keeps its pods)", r)
		}
	})

	t.Run("after a rollback", func(t *testing.T) {
		t.Parallel()
		ns := setup(t)
		dropTester(t, ns)
		got := runMain(t.Context(), t, env, ns, append(vars, "MESHROLL_MODE=rollback")...)
		want := "scale-down: Deployment " + ns + "/reviews-v2 scaled from 2 to 0"
		if got.code != 0 || !strings.Contains(got.stdout, "result: rolled-back") || !strings.Contains(got.stdout, want) {
			t.Fatalf("exit %d, want 0 with %q\nstdout:\n%s\nstderr:\n%s", got.code, want, got.stdout, got.stderr)
		}
		if r := replicas(t, ns, "reviews-v2"); r != 0 {
			t.Errorf("reviews-v2 has %d replicas, want 0", r)
		}
		if r := replicas(t, ns, "reviews-v1"); r != 3 {
			t.Errorf("reviews-v1 has %d replicas, want 3", r)
		}
	})

	t.Run("not while another route sends the canary traffic", func(t *testing.T) {
		t.Parallel()
		ns := setup(t)
		got := runMain(t.Context(), t, env, ns, append(vars, "MESHROLL_MODE=rollback")...)
		want := "scale-down: Deployment " + ns + "/reviews-v2 not scaled down: it still has traffic (route tester of VirtualService " + ns + "/reviews still sends it traffic)"
		if got.code != 0 || !strings.Contains(got.stdout, "result: rolled-back") || !strings.Contains(got.stdout, want) {
			t.Fatalf("exit %d, want 0 with %q\nstdout:\n%s\nstderr:\n%s", got.code, want, got.stdout, got.stderr)
		}
		if r := replicas(t, ns, "reviews-v2"); r != 2 {
			t.Errorf("reviews-v2 has %d replicas, want 2: it still has traffic", r)
		}
	})
}
