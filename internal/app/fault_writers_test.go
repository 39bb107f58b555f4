package app

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshroll/meshroll/internal/testenv"
)

// Other writers of the VirtualService while meshroll steers it: a GitOps tool that puts the
// weights of Git back, and writers of other fields.

// manifestWeights puts back the weights of the stack's manifest (route "default" is the
// second route), as Argo CD syncing it would.
const manifestWeights = `[{"op":"replace","path":"/spec/http/1/route/0/weight","value":90},{"op":"replace","path":"/spec/http/1/route/1/weight","value":10}]`

// Promise: a GitOps tool that keeps re-applying the weights of Git is never fought. The run
// stops at its next check (interrupted, exit 1) naming both versions, and meshroll writes
// nothing once the tool reverted it: the tool's weights stay. The revert lands during a long
// hold (found by the hold's periodic check) or during short holds (found at a hold's end or
// by the next write's guard).
func TestFaultGitOpsKeepsRevertingTheWeights(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name  string
		steps []int
		hold  string
	}{
		{name: "long hold", steps: []int{20, 50}, hold: "10m"},
		{name: "short holds", steps: []int{20, 40, 60, 80, 100}, hold: "2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := newStack(t, env)
			log := recordVersions(t, env, ns)
			done := make(chan run, 1)
			steps := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(tt.steps)), ","), "[]")
			go func() {
				done <- runMain(t.Context(), t, env, ns, "MESHROLL_STEPS="+steps, "MESHROLL_STEP_DURATION="+tt.hold)
			}()
			waitUntil(t, faultWait, "the first step to land", func() bool { return currentWeights(env, ns) == "v1 80, v2 20" })

			// The tool syncs every 2s from then on, until the run has ended.
			stop := make(chan struct{})
			var syncErrs []error
			var wg sync.WaitGroup
			wg.Go(func() {
				tick := time.NewTicker(2 * time.Second)
				defer tick.Stop()
				for {
					_, err := env.Istio.NetworkingV1().VirtualServices(ns).Patch(context.Background(), "reviews", types.JSONPatchType, []byte(manifestWeights), metav1.PatchOptions{FieldManager: "argocd-controller"})
					if err != nil {
						syncErrs = append(syncErrs, err)
					}
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			})
			got := awaitRun(t, done, 5*time.Minute, "with a GitOps tool reverting the weights")
			close(stop)
			wg.Wait()

			if got.code != 1 || !strings.Contains(got.stdout, "result: interrupted") ||
				!strings.Contains(got.stderr, "now has v1 90, v2 10, but this run left v1 ") {
				t.Errorf("exit %d, want 1 (interrupted) naming both versions\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
			}
			if len(syncErrs) > 0 {
				t.Errorf("the GitOps tool's syncs failed: %v", syncErrs)
			}
			vs := log.settled(t, env, ns)
			changes := weightChanges(vs)
			// The manifest's weights, meshroll's steps going up, then the manifest's for good.
			last := len(changes) - 1
			ok := len(changes) >= 3 && changes[0] == "v1 90, v2 10" && changes[last] == "v1 90, v2 10"
			for i := 1; ok && i < last; i++ {
				canary := canaryOf(changes[i])
				ok = canary > canaryOf(changes[i-1]) && slices.Contains(tt.steps, canary) && canary < 100
			}
			if !ok {
				t.Errorf("weights went %q; want meshroll's steps, then the manifest's and no write after it\n%s", changes, describeVersions(vs))
			}
		})
	}
}

// canaryOf is v2's weight in weights ("v1 80, v2 20"), -1 when there is none.
func canaryOf(weights string) int {
	_, w, ok := strings.Cut(weights, "v2 ")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.Split(w, ",")[0]))
	if err != nil {
		return -1
	}
	return n
}

// otherWriter changes a field meshroll does not steer, each write a larger value than the
// one before, until stopped; it keeps every value the API server accepted.
type otherWriter struct {
	name string
	// write sends value n once the API server takes it (a guarded writer tries again after a
	// conflict), or fails; ctx is never cancelled by stop, so that a write the API server
	// took is always known as accepted.
	write func(ctx context.Context, n int) error
	pause time.Duration // between writes; 0: flat out

	mu       sync.Mutex
	accepted []int
	errs     []error
}

// run writes until stop is done.
func (w *otherWriter) run(stop <-chan struct{}) {
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), faultWait)
		err := w.write(ctx, n)
		cancel()
		w.mu.Lock()
		if err != nil {
			w.errs = append(w.errs, err)
		} else {
			w.accepted = append(w.accepted, n)
		}
		w.mu.Unlock()
		if w.pause > 0 {
			select {
			case <-stop:
			case <-time.After(w.pause):
			}
		}
	}
}

// written is every value accepted so far, and the errors.
func (w *otherWriter) written() ([]int, []error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.accepted), slices.Clone(w.errs)
}

// startWriters runs the writers until the test ends or the returned stop is called (which
// waits for them).
func startWriters(t *testing.T, writers ...*otherWriter) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Go(func() { w.run(done) })
	}
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// timeoutOf is the route timeout the writers set for n: n ms above a second.
func timeoutOf(n int) time.Duration { return time.Second + time.Duration(n)*time.Millisecond }

// timeoutWriter sets the steered route's timeout with a plain JSON patch (no
// resourceVersion): the API server accepts every one.
func timeoutWriter(env *testenv.Env, ns string, pause time.Duration) *otherWriter {
	return &otherWriter{name: "timeout", pause: pause, write: func(ctx context.Context, n int) error {
		patch := fmt.Sprintf(`[{"op":"add","path":"/spec/http/1/timeout","value":%q}]`, timeoutOf(n))
		vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Patch(ctx, "reviews", types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: "timeout-tuner"})
		if err != nil {
			return err
		}
		if got := vs.Spec.Http[1].GetTimeout().AsDuration(); got != timeoutOf(n) {
			return fmt.Errorf("write %d: the VirtualService holds timeout %v after it, want %v", n, got, timeoutOf(n))
		}
		return nil
	}}
}

// checkNoLostUpdate fails the test unless every value w had accepted is in the versions, in
// the order written, and the last one is still in place: nobody wrote an older value back.
func checkNoLostUpdate(t *testing.T, w *otherWriter, vs []version, field func(version) string, format func(int) string) {
	t.Helper()
	accepted, errs := w.written()
	if len(accepted) == 0 {
		t.Fatalf("writer %s had nothing accepted (errors: %v)", w.name, errs)
	}
	var seen []string
	for _, v := range vs {
		if f := field(v); f != "" && (len(seen) == 0 || seen[len(seen)-1] != f) {
			seen = append(seen, f)
		}
	}
	want := make([]string, len(accepted))
	for i, n := range accepted {
		want[i] = format(n)
	}
	// Each accepted write made a version; a version holding an older value than the one
	// before it would be a lost update.
	if !slices.Equal(seen, want) {
		t.Errorf("writer %s: the VirtualService's versions hold %d values, want the %d accepted in order\nseen: %q\nwant: %q", w.name, len(seen), len(want), seen, want)
	}
	if last := field(vs[len(vs)-1]); last != want[len(want)-1] {
		t.Errorf("writer %s: the VirtualService holds %q at the end, want its last write %q", w.name, last, want[len(want)-1])
	}
}

func timeoutField(v version) string { return v.timeout }

func timeoutText(n int) string { return timeoutOf(n).String() }

// Promise: a writer changing another field of the route (its timeout) every 50ms during a
// whole progression neither stops it nor loses a write: meshroll's guarded writes re-read
// and keep the other writer's value. The run promotes, every value the other writer wrote
// was accepted and recorded in order, and its last one is in place at the end.
func TestFaultAnotherFieldWriter(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := newStack(t, env)
	log := recordVersions(t, env, ns)
	w := timeoutWriter(env, ns, 50*time.Millisecond)
	stop := startWriters(t, w)
	waitUntil(t, faultWait, "the other writer's first write", func() bool { got, _ := w.written(); return len(got) > 0 })

	got := runMain(t.Context(), t, env, ns, "MESHROLL_STEPS=20,50,100", "MESHROLL_STEP_DURATION=1s")
	stop()

	if got.code != 0 || !strings.Contains(got.stdout, "result: promoted") {
		t.Errorf("exit %d, want 0 (promoted)\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
	}
	if _, errs := w.written(); len(errs) > 0 {
		t.Errorf("the other writer's writes failed: %v", errs)
	}
	vs := log.settled(t, env, ns)
	if want := []string{"v1 90, v2 10", "v1 80, v2 20", "v1 50, v2 50", "v1 0, v2 100"}; !slices.Equal(weightChanges(vs), want) {
		t.Errorf("weights went %q, want %q", weightChanges(vs), want)
	}
	checkNoLostUpdate(t, w, vs, timeoutField, timeoutText)
	accepted, _ := w.written()
	t.Logf("the other writer wrote %d times during the run, which wrote 3 times", len(accepted))
}
