package app

// End-to-end tests of the mirror and A/B stages with metric analysis, on the rig of
// analysis_e2e_test.go (real kube-apiserver, real Prometheus, meshsim): a faulty canary is
// judged on the traffic its stage gives it (the matched users, or mirrored copies) and rolled
// back before any weighted step, so no user the stage did not select ever reaches it.
//
//	MESHROLL_TEST_ASSETS=$HOME/.cache/meshroll/k8s-v1.37.2 CI=true go test -count=1 -run TestShapesFaultyCanary ./internal/app/

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/meshsim"
)

// jason is Bookinfo's tester; matchJason is the A/B stage that shows him the canary.
var jason = http.Header{"End-User": {"jason"}}

const matchJason = "MESHROLL_MATCH=[{headers: {end-user: {exact: jason}}}]"

// A faulty canary shown to the users of MESHROLL_MATCH is found worse than stable in the A/B stage
// and is rolled back: the A/B route goes, and the canary's weight never left 0, so no other
// user ever got an answer from it.
func TestShapesFaultyCanaryABStage(t *testing.T) {
	t.Parallel()
	// The rig's load is jason's: on v1 (the default route) until the A/B route catches it.
	r := newRig(t, rigOptions{rps: 20, header: jason})
	r.mesh.SetBehaviour("v2", 1, 0)
	weights := r.watchCanary(t, nil)
	shapes := r.watchShapes(t)
	others := r.countedLoad(t, 60, nil)

	// One failed window rolls back: with the default 2, a stage whose other window happened to
	// lack data would pass to the first weighted step with a single failure on record.
	got := r.start(t, matchJason, "MESHROLL_FAILURE_THRESHOLD=1").wait(t)
	seen := others.stop()
	got.expect(t, 3, "canary-failed")
	got.expectOutput(t, "1. A/B: requests matching MESHROLL_MATCH to the canary, held 6s and judged",
		"A/B route meshroll-ab-v2 inserted", "step 1/4 window", "the canary is worse than stable: 5xx", "A/B route meshroll-ab-v2 removed")
	if strings.Contains(got.stdout, "step 2/4") {
		t.Errorf("a weighted step was started after the A/B stage failed:\n%s", got.stdout)
	}
	expectNoWeightedStep(t, weights)
	shapes.expect(t, "pinned, default", "pinned, meshroll-ab-v2, default", "pinned, default")
	r.expectWeights(t, "v1 100")

	t.Logf("the other users saw %+v; v2 answered %d requests", seen, r.mesh.Requests("v2"))
	if seen.Subsets["v2"] != 0 || seen.Errors() != 0 {
		t.Errorf("users without the header got %d answers from the canary and %d errors, want none", seen.Subsets["v2"], seen.Errors())
	}
	if seen.Subsets["v1"] == 0 {
		t.Error("users without the header got no answer at all")
	}
	if r.mesh.Requests("v2") == 0 || r.mesh.Mirrored("v2") != 0 {
		t.Errorf("the canary answered %d requests (%d of them mirrored copies): jason's requests never reached it", r.mesh.Requests("v2"), r.mesh.Mirrored("v2"))
	}
}

// A faulty canary that gets copies of every request is found worse than stable in the mirror stage
// and is rolled back: the mirror goes, the canary's weight never left 0, and no caller ever
// saw an error, since the mesh drops the mirror's answers.
func TestShapesFaultyCanaryMirrorStage(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{rps: 20})
	r.mesh.SetBehaviour("v2", 1, 0)
	weights := r.watchCanary(t, nil)
	shapes := r.watchShapes(t)
	callers := r.countedLoad(t, 60, nil)

	got := r.start(t, "MESHROLL_MIRROR_PERCENT=100", "MESHROLL_FAILURE_THRESHOLD=1").wait(t)
	seen := callers.stop()
	got.expect(t, 3, "canary-failed")
	got.expectOutput(t, "1. mirror 100% of the requests to the canary, held 6s and judged",
		"mirroring 100% to the canary", "step 1/4 window", "the canary is worse than stable: 5xx", "mirror removed")
	if strings.Contains(got.stdout, "step 2/4") {
		t.Errorf("a weighted step was started after the mirror stage failed:\n%s", got.stdout)
	}
	expectNoWeightedStep(t, weights)
	shapes.expect(t, "pinned, default", "pinned, default (mirror v2 100%)", "pinned, default")
	r.expectWeights(t, "v1 100")

	t.Logf("the callers saw %+v; %d copies were sent to v2, which answered %d", seen, r.mesh.Mirrored("v2"), r.mesh.Requests("v2"))
	if seen.Errors() != 0 || seen.Subsets["v2"] != 0 {
		t.Errorf("callers got %d errors and %d answers from the canary, want none: the mirror's answers are dropped", seen.Errors(), seen.Subsets["v2"])
	}
	if seen.Subsets["v1"] == 0 {
		t.Error("the callers got no answer at all")
	}
	if r.mesh.Mirrored("v2") == 0 || r.mesh.Requests("v2") > r.mesh.Mirrored("v2") {
		t.Errorf("v2 answered %d requests and was sent %d copies: it should have served copies only", r.mesh.Requests("v2"), r.mesh.Mirrored("v2"))
	}
}

// expectNoWeightedStep fails unless the canary's weight in the steered route stayed 0.
func expectNoWeightedStep(tb testing.TB, w *weightWatch) {
	tb.Helper()
	seen, maxWeight := w.history()
	if maxWeight != 0 {
		tb.Errorf("the canary's weight went up to %d (history %v); it must never leave 0", maxWeight, seen)
	}
}

// counted is a load whose callers' experience is counted.
type counted struct {
	cancel context.CancelFunc
	result chan meshsim.LoadResult
	once   sync.Once
	got    meshsim.LoadResult
}

// countedLoad sends rps requests/s with header (nil for none) until stop.
func (r *rig) countedLoad(tb testing.TB, rps int, header http.Header) *counted {
	ctx, cancel := context.WithCancel(context.Background())
	c := &counted{cancel: cancel, result: make(chan meshsim.LoadResult, 1)}
	go func() { c.result <- r.mesh.Load(ctx, rps, header) }()
	tb.Cleanup(func() { c.stop() })
	return c
}

// stop ends the load and returns what its callers saw.
func (c *counted) stop() meshsim.LoadResult {
	c.once.Do(func() {
		c.cancel()
		c.got = <-c.result
	})
	return c.got
}

// shapeWatch records every distinct shape of the VirtualService, through a watch: its HTTP
// routes' names in order, with their mirror, e.g. "pinned, default (mirror v2 100%)".
type shapeWatch struct {
	client interface {
		Get(context.Context, string, metav1.GetOptions) (*networkingv1.VirtualService, error)
	}
	mu     sync.Mutex
	seen   []string
	lastRV string // of the last object recorded
}

func (r *rig) watchShapes(tb testing.TB) *shapeWatch {
	tb.Helper()
	w := &shapeWatch{client: r.env.Istio.NetworkingV1().VirtualServices(r.ns)}
	r.watchReviews(tb, w.record)
	return w
}

func (w *shapeWatch) record(vs *networkingv1.VirtualService) {
	var routes []string
	for _, h := range vs.Spec.GetHttp() {
		name := h.GetName()
		if m := h.GetMirror(); m != nil {
			percent := 100.0
			if h.GetMirrorPercentage() != nil {
				percent = h.GetMirrorPercentage().GetValue()
			}
			name += fmt.Sprintf(" (mirror %s %g%%)", m.GetSubset(), percent)
		}
		routes = append(routes, name)
	}
	shape := strings.Join(routes, ", ")
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastRV = vs.ResourceVersion
	if n := len(w.seen); n == 0 || w.seen[n-1] != shape {
		w.seen = append(w.seen, shape)
	}
}

// expect fails unless the shapes seen, once the watch has caught up with the object as it is
// now, are want, in order.
func (w *shapeWatch) expect(tb testing.TB, want ...string) {
	tb.Helper()
	vs, err := w.client.Get(tb.Context(), "reviews", metav1.GetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		caughtUp := w.lastRV == vs.ResourceVersion
		w.mu.Unlock()
		if caughtUp {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the watch has not seen resourceVersion %s 30s later", vs.ResourceVersion)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Equal(w.seen, want) {
		tb.Errorf("the VirtualService's routes went through\n  %s\nwant\n  %s", strings.Join(w.seen, "\n  "), strings.Join(want, "\n  "))
	}
}
