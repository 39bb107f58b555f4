package app

// Metric analysis end to end on Gateway API: the HTTPRoute stack of gatewayapi_test.go on the
// real API server, meshsim routing requests by that HTTPRoute (as a mesh implementation of
// Gateway API would) with load, the real Prometheus scraping it, and meshroll steering the
// HTTPRoute's weights step by step on what the canary's metrics say.
//
//	MESHROLL_TEST_ASSETS=$HOME/.cache/meshroll/k8s-v1.37.2 CI=true go test -count=1 -run TestGatewayAPIAnalysis ./internal/app/

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/gatewayapi"
)

// newGatewayRig is newRig on the HTTPRoute stack: the mesh follows the accepted HTTPRoute
// reviews, whose backendRefs name the versions by their Services.
func newGatewayRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	env := testenv.Get(t)
	ns := newGatewayStack(t, env, true)
	return startRig(t, env, o, meshsim.Options{
		Gateway: env.Gateway, Namespace: ns, HTTPRoute: "reviews",
		Versions: []meshsim.Version{
			{Subset: "v1", Workload: "reviews-v1", Service: "reviews-v1"},
			{Subset: "v2", Workload: "reviews-v2", Service: "reviews-v2"},
		},
	})
}

// judgedWindows matches every window table of the run, whatever its verdicts.
var judgedWindows = regexp.MustCompile(`step (\d+)/\d+ window \d+ at`)

// A healthy canary behind an HTTPRoute is judged at every step and promoted: the HTTPRoute
// goes through 20, 50 and 100, and the data plane follows it.
func TestGatewayAPIAnalysisHealthy(t *testing.T) {
	t.Parallel()
	r := newGatewayRig(t, rigOptions{rps: 80})
	watch := r.watchRouteCanary(t, nil)
	got := r.start(t, gatewayVars...).wait(t)
	got.expect(t, 0, "promoted")
	r.expectRouteWeights(t, "reviews-v1 0, reviews-v2 100")
	got.expectOutput(t, "meshroll progress: HTTPRoute "+r.ns+"/reviews", "step 1/3: holding 6s, judging the canary every 3s",
		"step 2/3 window 2 at", "step 3/3: reviews reviews-v1 50 → 0, reviews-v2 50 → 100")
	if strings.Contains(got.stdout, " fail ") || strings.Contains(got.stdout, "rollback") {
		t.Errorf("a healthy canary failed a check or was rolled back:\n%s", got.stdout)
	}
	if !judgedWindow.MatchString(got.stdout) {
		t.Errorf("no window of step 1 was judged with every check passing:\n%s", got.stdout)
	}
	windows := map[string]int{}
	for _, m := range judgedWindows.FindAllStringSubmatch(got.stdout, -1) {
		windows[m[1]]++
	}
	seen, _ := watch.history()
	t.Logf("canary weights seen on the HTTPRoute: %v; windows per step: %v", seen, windows)
	if diff := cmp.Diff([]int{0, 20, 50, 100}, seen); diff != "" {
		t.Errorf("canary weights on the HTTPRoute (-want +got):\n%s", diff)
	}
	if windows["1"] < 1 || windows["2"] < 1 {
		t.Errorf("windows per step %v: want steps 1 and 2 judged", windows)
	}
	r.expectMeshFollows(t, map[string]int{"v1": 0, "v2": 100}, "v1")
}

// A canary that answers half of its requests with 5xx once it has the second step's weight is
// found worse than stable there: the HTTPRoute's weights return to stable at once, the third
// step is never taken, and the data plane sends the canary nothing more.
func TestGatewayAPIAnalysisFaultyCanary(t *testing.T) {
	t.Parallel()
	r := newGatewayRig(t, rigOptions{rps: 80})
	const second = 50
	flipped := make(chan time.Time, 1)
	var once sync.Once
	watch := r.watchRouteCanary(t, func(w int) {
		if w == second {
			once.Do(func() {
				r.mesh.SetBehaviour("v2", 0.5, 0)
				flipped <- time.Now()
			})
		}
	})
	m := r.start(t, gatewayVars...)
	got := m.wait(t)
	got.expect(t, 3, "canary-failed")
	r.expectRouteWeights(t, "reviews-v1 100, reviews-v2 0")
	select {
	case at := <-flipped:
		t.Logf("the canary failed from %v after the start", at.Sub(m.started).Round(time.Millisecond))
	default:
		t.Errorf("the canary never had weight %d", second)
	}
	seen, maxWeight := watch.history()
	t.Logf("canary weights seen on the HTTPRoute: %v", seen)
	if maxWeight != second || seen[len(seen)-1] != 0 {
		t.Errorf("canary weights on the HTTPRoute %v: want at most %d (the step after the failure never taken), then 0", seen, second)
	}
	got.expectOutput(t, "the canary is worse than stable: 5xx", "step 2/3 window", "rollback: reviews reviews-v1 50 → 100, reviews-v2 50 → 0")
	if strings.Contains(got.stdout, "step 3/3") {
		t.Errorf("step 3 was started:\n%s", got.stdout)
	}
	r.expectMeshFollows(t, map[string]int{"v1": 100, "v2": 0}, "v2")
}

// expectRouteWeights reads the HTTPRoute's rule default as meshroll does.
func (r *rig) expectRouteWeights(tb testing.TB, want string) {
	tb.Helper()
	hr, err := r.env.Gateway.GatewayV1().HTTPRoutes(r.ns).Get(context.Background(), "reviews", metav1.GetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	spec, err := json.Marshal(&hr.Spec)
	if err != nil {
		tb.Fatal(err)
	}
	state, err := gatewayapi.NewState(r.ns, "reviews", hr.ResourceVersion, spec, gatewayapi.Target{Namespace: r.ns, HTTPRoute: "reviews", Rule: "default", StableService: "reviews-v1", CanaryService: "reviews-v2"})
	if err != nil {
		tb.Fatal(err)
	}
	if got := traffic.DescribeWeights(state.Routing().Destinations); got != want {
		tb.Errorf("weights in the cluster = %s, want %s", got, want)
	}
}

// expectMeshFollows waits until the data plane applies weights, then checks that the version
// without weight serves nothing more while the other serves 200 requests of the load.
func (r *rig) expectMeshFollows(tb testing.TB, weights map[string]int, idle string) {
	tb.Helper()
	busy := "v1"
	if idle == "v1" {
		busy = "v2"
	}
	until := func(cond func() bool) error {
		return wait.PollUntilContextTimeout(tb.Context(), 10*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) { return cond(), nil })
	}
	if err := until(func() bool { return cmp.Equal(weights, r.mesh.Weights()) }); err != nil {
		tb.Fatalf("the mesh applies %v, want %v: %v", r.mesh.Weights(), weights, err)
	}
	// Requests drawn before the change may still be answered: let 100 go by first.
	start := r.mesh.Requests(busy)
	if err := until(func() bool { return r.mesh.Requests(busy)-start >= 100 }); err != nil {
		tb.Fatalf("%s served %d requests in a minute: %v", busy, r.mesh.Requests(busy)-start, err)
	}
	before, start := r.mesh.Requests(idle), r.mesh.Requests(busy)
	if err := until(func() bool { return r.mesh.Requests(busy)-start >= 200 }); err != nil {
		tb.Fatalf("%s served %d requests in a minute: %v", busy, r.mesh.Requests(busy)-start, err)
	}
	if n := r.mesh.Requests(idle) - before; n != 0 {
		tb.Errorf("%s served %d requests while %s served 200, with weights %v", idle, n, busy, weights)
	}
}

// watchRouteCanary records every weight of the reviews-v2 backendRef in the HTTPRoute's rule
// default (0 without one) that the API server reports, through a watch resumed from the last
// version seen, so that no write escapes it however short-lived; onChange (may be nil) is
// called in the watch's goroutine with each new weight.
func (r *rig) watchRouteCanary(tb testing.TB, onChange func(weight int)) *weightWatch {
	tb.Helper()
	w := &weightWatch{}
	client := r.env.Gateway.GatewayV1().HTTPRoutes(r.ns)
	hr, err := client.Get(tb.Context(), "reviews", metav1.GetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	w.record(routeCanaryWeight(hr), onChange)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rv := hr.ResourceVersion
		for ctx.Err() == nil {
			watcher, err := client.Watch(ctx, metav1.ListOptions{
				FieldSelector:   fields.OneTermEqualSelector("metadata.name", "reviews").String(),
				ResourceVersion: rv,
			})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range watcher.ResultChan() {
				if hr, ok := ev.Object.(*gatewayv1.HTTPRoute); ok {
					rv = hr.ResourceVersion
					w.record(routeCanaryWeight(hr), onChange)
				}
			}
			watcher.Stop()
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
	return w
}

// routeCanaryWeight is the weight of reviews-v2 in the rule default, 1 when unset.
func routeCanaryWeight(hr *gatewayv1.HTTPRoute) int {
	for _, rule := range hr.Spec.Rules {
		if rule.Name == nil || *rule.Name != "default" {
			continue
		}
		for _, b := range rule.BackendRefs {
			if b.Name == "reviews-v2" {
				if b.Weight == nil {
					return 1
				}
				return int(*b.Weight)
			}
		}
	}
	return 0
}
