package app

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshroll/meshroll/internal/testenv"
)

// Promise: two writers changing other fields flat out (one with plain merge patches, one
// with patches guarded by the resourceVersion it read) do not keep meshroll from returning
// traffic to stable. The run completes or rolls back; its step's write may give up, but only
// when its budget (30s) ends, and then traffic goes back to stable. When the run ends early
// (a cancel, with 5s to roll back; MESHROLL_TIMEOUT, with 30s) the rollback lands (v1 100,
// v2 0) instead of giving up while its budget lasts. Neither writer loses a write. (The
// istio client's own tests cover a writer between every read and every write, which no
// budget survives: TestConflictRetryIsBounded; and one conflicting write:
// TestConcurrentWriter.)
//
// Every meshroll patch is guarded by the resourceVersion it read, so each of the ~100 writes
// a second to unrelated fields can make it conflict; a conflict is tried again after a few
// milliseconds (the API server answered: nothing to back off from), so meshroll gets its
// turn.
func TestFaultRollbackUnderWriteLoad(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name     string
		vars     []string
		cancel   bool
		wantCode int
	}{
		{name: "cancelled", vars: []string{"MESHROLL_STEPS=30,60", "MESHROLL_STEP_DURATION=1h"}, cancel: true, wantCode: 130},
		{name: "timed out", vars: []string{"MESHROLL_STEPS=30,60", "MESHROLL_STEP_DURATION=1h", "MESHROLL_TIMEOUT=15s"}, wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := newStack(t, env)
			log := recordVersions(t, env, ns)
			annotations, guarded := annotationWriter(env, ns), guardedTimeoutWriter(env, ns)
			stop := startWriters(t, annotations, guarded)
			waitUntil(t, faultWait, "both writers' first writes", func() bool {
				a, _ := annotations.written()
				g, _ := guarded.written()
				return len(a) > 0 && len(g) > 0
			})

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan run, 1)
			go func() { done <- runMain(ctx, t, env, ns, tt.vars...) }()
			var got run
			ended := false
			waitUntil(t, 5*time.Minute, "the first step to land under the writers' load, or the run to end", func() bool {
				select {
				case got = <-done:
					ended = true
				default:
				}
				return ended || currentWeights(env, ns) == "v1 70, v2 30"
			})
			rolledBackFrom := "v1 90 → 100, v2 10 → 0" // the step's write gave up: back from where it began
			if !ended {
				rolledBackFrom = "v1 70 → 100, v2 30 → 0"
				if tt.cancel {
					// Cancel once the writers have written a hundred more times under the step.
					a, _ := annotations.written()
					waitUntil(t, faultWait, "a hundred more writes", func() bool { now, _ := annotations.written(); return len(now) >= len(a)+100 })
					cancel()
				}
				got = awaitRun(t, done, 5*time.Minute, "under write load")
			}
			stop()

			t.Logf("exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
			if want := tt.wantCode; got.code != want && !(ended && got.code == 1) {
				t.Errorf("exit %d, want %d", got.code, want)
			}
			if !strings.Contains(got.stdout, "rollback: reviews "+rolledBackFrom) || strings.Contains(got.stderr, "may still receive traffic") {
				t.Errorf("the rollback did not land under the writers' load")
			}
			if w := currentWeights(env, ns); w != "v1 100, v2 0" {
				t.Errorf("weights = %s, want v1 100, v2 0", w)
			}
			// A write that did not land gives up only when its budget ends, and says which.
			if gaveUp, budget := strings.Count(got.stderr, "another writer kept changing"), budgetEnded.FindAllString(got.stderr, -1); gaveUp != len(budget) {
				t.Errorf("meshroll gave up on a write %d times, %d of them when a budget ended", gaveUp, len(budget))
			}
			if _, errs := annotations.written(); len(errs) > 0 {
				t.Errorf("the annotation writer's merge patches failed: %v", errs[:min(len(errs), 5)])
			}
			if _, errs := guarded.written(); len(errs) > 0 {
				t.Errorf("the guarded writer failed other than by conflicts: %v", errs[:min(len(errs), 5)])
			}
			vs := log.settled(t, env, ns)
			checkNoLostUpdate(t, annotations, vs, func(v version) string { return v.annotation }, strconv.Itoa)
			checkNoLostUpdate(t, guarded, vs, timeoutField, timeoutText)
			a, _ := annotations.written()
			g, _ := guarded.written()
			t.Logf("%d versions; the writers had %d and %d writes accepted", len(vs), len(a), len(g))
		})
	}
}

// budgetEnded matches a write's give-up that names the budget that ended.
var budgetEnded = regexp.MustCompile(`(no write to the route landed within 30s|the rollback did not finish within (5|30)s|MESHROLL_TIMEOUT=15s reached): another writer kept changing`)

// annotationWriter sets otherAnnotation to n with plain merge patches, flat out.
func annotationWriter(env *testenv.Env, ns string) *otherWriter {
	return &otherWriter{name: "annotation", write: func(ctx context.Context, n int) error {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, otherAnnotation, strconv.Itoa(n))
		_, err := env.Istio.NetworkingV1().VirtualServices(ns).Patch(ctx, "reviews", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "annotator"})
		return err
	}}
}

// guardedTimeoutWriter sets the steered route's timeout flat out, each write guarded by the
// resourceVersion it read, as a careful controller does: a conflict is not an error, the
// value is tried again.
func guardedTimeoutWriter(env *testenv.Env, ns string) *otherWriter {
	client := env.Istio.NetworkingV1().VirtualServices(ns)
	return &otherWriter{name: "guarded timeout", write: func(ctx context.Context, n int) error {
		for {
			vs, err := client.Get(ctx, "reviews", metav1.GetOptions{})
			if err != nil {
				return err
			}
			patch := fmt.Sprintf(`[{"op":"replace","path":"/metadata/resourceVersion","value":%q},{"op":"add","path":"/spec/http/1/timeout","value":%q}]`, vs.ResourceVersion, timeoutOf(n))
			_, err = client.Patch(ctx, "reviews", types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: "timeout-tuner"})
			if !apierrors.IsConflict(err) {
				return err
			}
		}
	}}
}
