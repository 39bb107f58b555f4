package app

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshroll/meshroll/internal/testenv"
)

// Re-running a pipeline is safe: after a promotion whose stable Deployment was then scaled
// to 0 (it still reports Available), a progression moves nothing (unchanged, exit 0), and a
// run that would send the scaled-down version traffic is refused before any write.
func TestRerunAfterPromotion(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := newStack(t, env)
	stable := []string{"MESHROLL_STABLE_DEPLOYMENT=reviews-v1"}
	if got := runMain(t.Context(), t, env, ns, append(stable, "MESHROLL_MODE=promote")...); got.code != 0 {
		t.Fatalf("promote: exit %d\n%s\n%s", got.code, got.stdout, got.stderr)
	}
	// "Common mistake: forgetting to scale down the old version": here it was scaled down.
	if _, err := env.Kube.AppsV1().Deployments(ns).Patch(t.Context(), "reviews-v1", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.SetDeploymentStatus(t.Context(), ns, "reviews-v1", true); err != nil {
		t.Fatal(err)
	}
	_, rv := weights(t, env, ns, "reviews")

	got := runMain(t.Context(), t, env, ns, append(stable, "MESHROLL_STEPS=10,50,100")...)
	if got.code != 0 || !strings.Contains(got.stdout, "result: unchanged") || !strings.Contains(got.stdout, "nothing to do: the canary already has 100%") {
		t.Errorf("progress after a promotion: exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
	}
	got = runMain(t.Context(), t, env, ns, append(stable, "MESHROLL_MODE=rollback")...)
	if want := "MESHROLL_STABLE_DEPLOYMENT=reviews-v1: Deployment " + ns + "/reviews-v1 has no ready pods (0 replicas wanted) but this run sends the stable version traffic: scale it up first"; got.code != 2 || !strings.Contains(got.stderr, want) {
		t.Errorf("rollback to a scaled-down stable: exit %d, want 2 with %q\nstdout:\n%s\nstderr:\n%s", got.code, want, got.stdout, got.stderr)
	}
	if w, after := weights(t, env, ns, "reviews"); after != rv || w != "v1 0, v2 100" {
		t.Errorf("the VirtualService was written: %s, resourceVersion %s → %s", w, rv, after)
	}
}

// A GitOps tool re-applies the manifest's weights while a step is held: the run notices at
// its next check, stops without writing (interrupted, exit 1, both versions in the reason)
// and leaves the re-applied weights in place.
func TestAnotherWriterInterruptsTheRun(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := newStack(t, env)
	done := make(chan run, 1)
	go func() {
		done <- runMain(t.Context(), t, env, ns, "MESHROLL_STEPS=20,50", "MESHROLL_STEP_DURATION=10m")
	}()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		w, _ := weights(t, env, ns, "reviews")
		return w == "v1 80, v2 20", nil
	})
	if err != nil {
		t.Fatalf("the first step never landed: %v", err)
	}
	// The manifest says v1 90, v2 10 (route "default" is the second route).
	revert := `[{"op":"replace","path":"/spec/http/1/route/0/weight","value":90},{"op":"replace","path":"/spec/http/1/route/1/weight","value":10}]`
	if _, err := env.Istio.NetworkingV1().VirtualServices(ns).Patch(t.Context(), "reviews", types.JSONPatchType, []byte(revert), metav1.PatchOptions{FieldManager: "argocd-controller"}); err != nil {
		t.Fatal(err)
	}
	_, rv := weights(t, env, ns, "reviews")
	var got run
	select {
	case got = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the run did not stop after another writer moved the route")
	}
	if got.code != 1 || !strings.Contains(got.stdout, "result: interrupted") ||
		!strings.Contains(got.stderr, "now has v1 90, v2 10, but this run left v1 80, v2 20") {
		t.Errorf("exit %d, want 1 (interrupted) naming both versions\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
	}
	if w, after := weights(t, env, ns, "reviews"); after != rv || w != "v1 90, v2 10" {
		t.Errorf("meshroll wrote after the other writer: %s, resourceVersion %s → %s", w, rv, after)
	}
}
