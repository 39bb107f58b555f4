package app

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/testenv"
)

// The API server goes away while a run holds a step. One private control plane serves both
// cases, one after the other, so that only one extra kube-apiserver ever starts.
func TestFaultAPIServer(t *testing.T) {
	t.Parallel()
	p := testenv.StartPrivate(t)
	t.Run("back within the budgets", func(t *testing.T) { faultAPIServerBackSoon(t, p) })
	t.Run("gone longer than the budgets", func(t *testing.T) { faultAPIServerGoneLong(t, p) })
}

// heldStep is a progression whose first step (v1 80, v2 20) is held long enough to cover an
// outage of the API server.
var heldStep = []string{"MESHROLL_STEPS=20,100", "MESHROLL_STEP_DURATION=20s"}

// startHeld starts heldStep in ns and returns once its first step landed and the run records
// that it holds it; the run's result arrives on the channel.
func startHeld(t *testing.T, p *testenv.Private, ns string) <-chan run {
	t.Helper()
	done := make(chan run, 1)
	go func() { done <- runMain(t.Context(), t, p.Env, ns, heldStep...) }()
	waitUntil(t, faultWait, "the first step to land and be held", func() bool {
		rec, _, ok := lockOf(p.Env, ns)
		return currentWeights(p.Env, ns) == "v1 80, v2 20" && ok && strings.HasPrefix(rec.Doing, "holding step 1/2")
	})
	return done
}

// restartOnCleanup starts a stopped API server again before the namespace's cleanup needs
// it (cleanups run last in, first out), should the test end early.
func restartOnCleanup(t *testing.T, p *testenv.Private) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := p.StartAPIServer(ctx); err != nil {
			t.Error(err)
		}
	})
}

func awaitRun(t *testing.T, done <-chan run, within time.Duration, what string) run {
	t.Helper()
	select {
	case got := <-done:
		return got
	case <-time.After(within):
		t.Fatalf("%s: meshroll still running after %v", what, within)
		return run{}
	}
}

// Promise: an API server that stops answering during a hold and is back within the budgets
// (a read during a hold is retried for 30s) does not end the rollout: it is promoted as if
// nothing happened, and the lock is released with the outcome.
func faultAPIServerBackSoon(t *testing.T, p *testenv.Private) {
	ns := newStack(t, p.Env)
	restartOnCleanup(t, p)
	done := startHeld(t, p, ns)

	if err := p.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// Longer than the hold's check interval (5s): at least one read of the hold meets the
	// stopped API server.
	time.Sleep(6 * time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if err := p.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}

	got := awaitRun(t, done, 5*time.Minute, "after the API server came back")
	if got.code != 0 || !strings.Contains(got.stdout, "result: promoted") {
		t.Fatalf("exit %d, want 0 (promoted)\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
	}
	if w, _ := weights(t, p.Env, ns, "reviews"); w != "v1 0, v2 100" {
		t.Errorf("weights = %s, want v1 0, v2 100", w)
	}
	rec, holder := mustLock(t, p.Env, ns)
	if rec.Outcome != rollout.Promoted || holder != "" {
		t.Errorf("the Lease shows outcome %q, holder %q; want promoted and no holder (record %+v)", rec.Outcome, holder, rec)
	}
}

// Promise: an API server gone for longer than the budgets ends the run (exit 1) once its
// hold's read (30s) and its return to stable (30s) gave up, with a reason that says the
// canary may still receive traffic because the API server did not answer, in words, not Go
// internals. The run could not release its lock, so the cluster shows the rollout
// unfinished; once the API server is back, status says so and resume (or rollback) finishes
// it. Two namespaces share the outage: one is resumed, the other rolled back.
func faultAPIServerGoneLong(t *testing.T, p *testenv.Private) {
	finishes := []struct {
		vars []string
		want string
	}{
		{vars: append([]string{"MESHROLL_MODE=resume"}, heldStep...), want: "v1 0, v2 100"}, // the same inputs
		{vars: []string{"MESHROLL_MODE=rollback"}, want: "v1 100, v2 0"},
	}
	nss := make([]string, len(finishes))
	dones := make([]<-chan run, len(finishes))
	for i := range finishes {
		nss[i] = newStack(t, p.Env)
	}
	restartOnCleanup(t, p)
	for i := range finishes {
		dones[i] = startHeld(t, p, nss[i])
	}

	if err := p.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	for i, ns := range nss {
		// About 75s: the hold's read gives up after 30s, the rollback after 30s, the lock's
		// release after 10s. The bound is generous: the point is that it ends by itself.
		got := awaitRun(t, dones[i], 5*time.Minute, "with the API server stopped")
		t.Logf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", ns, got.code, got.stdout, got.stderr)
		if got.code != 1 || !strings.Contains(got.stdout, "result: failed") {
			t.Errorf("%s: exit %d, want 1 (failed)", ns, got.code)
		}
		for _, want := range []string{"so the canary may still receive traffic", "the API server had not answered", "connection refused"} {
			if !strings.Contains(got.stderr, want) {
				t.Errorf("%s: stderr lacks %q", ns, want)
			}
		}
		for _, internal := range []string{"context canceled", "context deadline exceeded", "MESHROLL_TIMEOUT"} {
			if strings.Contains(got.stdout+got.stderr, internal) {
				t.Errorf("%s: the output says %q", ns, internal)
			}
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if err := p.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss {
		if w, _ := weights(t, p.Env, ns, "reviews"); w != "v1 80, v2 20" {
			t.Errorf("%s: weights after the outage = %s, want the first step's v1 80, v2 20", ns, w)
		}
		if rec, holder := mustLock(t, p.Env, ns); rec.Outcome != "" || holder == "" || !strings.Contains(rec.Doing, "step 1/2") {
			t.Errorf("%s: the Lease shows outcome %q, holder %q, doing %q; want the run unfinished at step 1/2 and still held", ns, rec.Outcome, holder, rec.Doing)
		}
		got := runMain(t.Context(), t, p.Env, ns, "MESHROLL_MODE=status")
		t.Logf("%s: status after the outage:\n%s", ns, got.stdout)
		if got.code != 0 || !strings.Contains(got.stdout, "step 1/2") ||
			!(strings.Contains(got.stdout, "unfinished rollout") || strings.Contains(got.stdout, "rollout in flight")) {
			t.Errorf("%s: status: exit %d, want 0 naming the unfinished rollout and its step\nstdout:\n%s\nstderr:\n%s", ns, got.code, got.stdout, got.stderr)
		}
	}

	var wg sync.WaitGroup
	for i, f := range finishes {
		wg.Go(func() {
			got := runMain(t.Context(), t, p.Env, nss[i], f.vars...)
			if got.code != 0 {
				t.Errorf("%s %s: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", f.vars[0], nss[i], got.code, got.stdout, got.stderr)
			}
			if w := currentWeights(p.Env, nss[i]); w != f.want {
				t.Errorf("%s %s: weights = %s, want %s", f.vars[0], nss[i], w, f.want)
			}
		})
	}
	wg.Wait()
}
