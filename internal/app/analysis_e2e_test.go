package app

// End-to-end tests of metric analysis: meshroll runs in-process (app.Main) against a real
// kube-apiserver, a real Prometheus scraping every second, and meshsim, a data plane that routes
// real HTTP requests by the VirtualService and exports Istio's standard metrics. Each test has
// its own namespace, mesh, load and Prometheus, so they run in parallel.
//
//	MESHROLL_TEST_ASSETS=$HOME/.cache/meshroll/k8s-v1.37.2 CI=true go test -count=1 -run TestCanaryAnalysis ./internal/app/
//
// With the default -parallel (GOMAXPROCS) two of them run at a time; -parallel 8 runs them all
// at once (they mostly wait for windows, not for the CPU).

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/istio"
)

// analysisStack is the VirtualService of a reviews service whose catch-all route "default"
// sends everything to v1 (meshroll appends the v2 destination), and a route that pins
// requests carrying "x-pin: stable" to v1: callers that send it never reach the canary,
// whatever the weights.
const analysisStack = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - name: pinned
    match:
    - headers:
        x-pin: {exact: stable}
    route:
    - destination: {host: reviews, subset: v1}
  - name: default
    route:
    - destination: {host: reviews, subset: v1}
`

const (
	scrapeInterval = time.Second
	// rigSetupTimeout bounds everything before meshroll starts: the mesh, Prometheus (ready in
	// a few seconds, first scrape ~5s later) and the stable's first data, on a busy 2-core box.
	rigSetupTimeout = 2 * time.Minute
	// runTimeout bounds one meshroll run in a test; the runs here take 6-20s.
	runTimeout = 90 * time.Second
)

// pinnedToStable is the header of the "pinned" route.
var pinnedToStable = http.Header{"X-Pin": {"stable"}}

// rig is one namespace with the analysis stack, a mesh following its VirtualService, load on
// the mesh and a Prometheus scraping it, with data for the stable workload.
type rig struct {
	env  *testenv.Env
	ns   string
	mesh *meshsim.Mesh
	prom *testenv.Prometheus
}

type rigOptions struct {
	rps    int         // load on the mesh front
	header http.Header // on every request of the load; nil for none
	// prometheusHost is the address Prometheus listens on: "" for loopback, or one of
	// testenv.ServiceAddress for a Prometheus reached through the API server's service proxy.
	prometheusHost string
}

func newRig(tb testing.TB, o rigOptions) *rig {
	tb.Helper()
	env := testenv.Get(tb)
	ns := env.Namespace(tb)
	env.Apply(tb, ns, strings.Join([]string{testenv.DestinationRuleManifest("v1", "v2"), analysisStack, testenv.DeploymentManifest("reviews-v1", "v1"), testenv.DeploymentManifest("reviews-v2", "v2")}, "\n---\n"))
	for _, d := range []string{"reviews-v1", "reviews-v2"} {
		if err := env.SetDeploymentStatus(tb.Context(), ns, d, true); err != nil {
			tb.Fatal(err)
		}
	}
	return startRig(tb, env, o, meshsim.Options{
		Istio: env.Istio, Namespace: ns, VirtualService: "reviews",
		Versions: []meshsim.Version{{Subset: "v1", Workload: "reviews-v1"}, {Subset: "v2", Workload: "reviews-v2"}},
	})
}

// startRig starts the rig's mesh as mo says, Prometheus, and the load, in the namespace of mo
// where the routing object, the Deployments and whatever else the mesh follows are in place.
func startRig(tb testing.TB, env *testenv.Env, o rigOptions, mo meshsim.Options) *rig {
	tb.Helper()
	ns := mo.Namespace
	setup, cancel := context.WithTimeout(tb.Context(), rigSetupTimeout)
	defer cancel()
	mesh, err := meshsim.Start(setup, mo)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := mesh.Close(); err != nil {
			tb.Error(err)
		}
	})
	prom, err := testenv.StartPrometheusAt(setup, cmp.Or(o.prometheusHost, "127.0.0.1"), []string{mesh.MetricsAddr()}, scrapeInterval)
	if errors.Is(err, testenv.ErrAssetsMissing) && os.Getenv("CI") != "true" {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := prom.Stop(); err != nil {
			tb.Error(err)
		}
	})
	// Cleanups run last in, first out: the load stops before the mesh closes.
	load, stopLoad := context.WithCancel(context.Background())
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		mesh.Load(load, o.rps, o.header)
	}()
	tb.Cleanup(func() { stopLoad(); <-loaded })

	// meshroll's preflight needs requests of the stable workload in Prometheus: the same
	// query, so that the run starts as soon as it can pass.
	start := time.Now()
	if err := prom.WaitForSeries(setup, volumeQuery(ns, "reviews-v1", "", "5m")+" > 0"); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("stable data in Prometheus %v after it was ready", time.Since(start).Round(time.Millisecond))
	return &rig{env: env, ns: ns, mesh: mesh, prom: prom}
}

// volumeQuery is the request count of a workload over window, as meshroll's request-volume
// check writes it; codes (a regular expression) narrows it to some response codes.
func volumeQuery(ns, workload, codes, window string) string {
	sel := fmt.Sprintf(`reporter="destination",destination_workload_namespace=%q,destination_workload=%q`, ns, workload)
	if codes != "" {
		sel += fmt.Sprintf(",response_code=~%q", codes)
	}
	return fmt.Sprintf(`sum(increase(istio_requests_total{%s}[%s]))`, sel, window)
}

// environ is the environment of a meshroll progression with analysis against the rig: steps
// 20,50,100 held 6s each, judged every 3s; vars override (later entries win).
func (r *rig) environ(tb testing.TB, vars ...string) []string {
	return append([]string{
		"KUBECONFIG=" + r.env.Kubeconfig,
		"HOME=" + tb.TempDir(),
		"PATH=" + os.Getenv("PATH"),
		"MESHROLL_NAMESPACE=" + r.ns,
		"MESHROLL_VIRTUAL_SERVICE=reviews",
		"MESHROLL_STABLE_SUBSET=v1",
		"MESHROLL_CANARY_SUBSET=v2",
		"MESHROLL_CANARY_DEPLOYMENT=reviews-v2",
		"MESHROLL_CI=plain",
		"MESHROLL_OUTPUT_DIR=" + tb.TempDir(),
		"MESHROLL_PROMETHEUS_URL=" + r.prom.URL,
		"MESHROLL_STABLE_WORKLOAD=reviews-v1",
		"MESHROLL_CANARY_WORKLOAD=reviews-v2",
		"MESHROLL_STEPS=20,50,100",
		"MESHROLL_ANALYSIS_INTERVAL=3s",
		"MESHROLL_STEP_DURATION=6s",
		"MESHROLL_MIN_REQUESTS=5",
		// A safety net: a run that hangs ends (exit 1) long before the test's deadline.
		"MESHROLL_TIMEOUT=" + runTimeout.String(),
	}, vars...)
}

// judgedWindow matches a window table of step 1 in which every check passed (the step counts
// as judged): the header line, then only rows with the verdict pass.
var judgedWindow = regexp.MustCompile(`step 1/\d+ window \d+ at [0-9:]+:\n  check +canary +stable +threshold +verdict *\n(  [a-z0-9-]+ {2,}\S+ {2,}\S+ {2,}\S.*? {2,}pass *\n)+`)

// expect fails the test unless the run exited with code and printed the result.
func (g run) expect(tb testing.TB, code int, result string) {
	tb.Helper()
	if g.code != code || !strings.Contains(g.stdout, "result: "+result) {
		tb.Fatalf("exit %d, want %d with result %s\nstdout:\n%s\nstderr:\n%s", g.code, code, result, g.stdout, g.stderr)
	}
}

func (g run) expectOutput(tb testing.TB, want ...string) {
	tb.Helper()
	for _, w := range want {
		if !strings.Contains(g.stdout+g.stderr, w) {
			tb.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", w, g.stdout, g.stderr)
		}
	}
}

func (r *rig) expectWeights(tb testing.TB, want string) {
	tb.Helper()
	vs, err := r.env.Istio.NetworkingV1().VirtualServices(r.ns).Get(context.Background(), "reviews", metav1.GetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	state, err := istio.NewState(r.ns, "reviews", vs.ResourceVersion, specJSON(tb, vs), istio.Target{Namespace: r.ns, VirtualService: "reviews", Route: "default", StableSubset: "v1", CanarySubset: "v2"})
	if err != nil {
		tb.Fatal(err)
	}
	if got := traffic.DescribeWeights(state.Routing().Destinations); got != want {
		tb.Errorf("weights in the cluster = %s, want %s", got, want)
	}
}

// canaryWeight is v2's weight in the route "default".
func canaryWeight(vs *networkingv1.VirtualService) int {
	for _, h := range vs.Spec.GetHttp() {
		if h.GetName() != "default" {
			continue
		}
		w := 0
		for _, d := range h.GetRoute() {
			if d.GetDestination().GetSubset() == "v2" {
				w += int(d.GetWeight())
			}
		}
		return w
	}
	return 0
}

// A healthy canary is judged at every step and promoted.
func TestCanaryAnalysisHealthy(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{rps: 80})
	got := r.start(t).wait(t)
	got.expect(t, 0, "promoted")
	r.expectWeights(t, "v1 0, v2 100")
	got.expectOutput(t, "step 1/3: holding 6s, judging the canary every 3s", "step 2/3 window 2 at", "step 3/3: reviews v1 50 → 0, v2 50 → 100")
	if strings.Contains(got.stdout, " fail ") || strings.Contains(got.stdout, "rollback") {
		t.Errorf("a healthy canary failed a check or was rolled back:\n%s", got.stdout)
	}
	if !judgedWindow.MatchString(got.stdout) {
		t.Errorf("no window of step 1 was judged with every check passing:\n%s", got.stdout)
	}
}

// A canary that starts answering 5xx once it has the second step's weight is found worse than
// stable there, with no threshold set: all traffic returns to stable at once and the third
// step is never taken.
func TestCanaryAnalysisErrorsFromSecondStep(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{rps: 80})
	const second = 40
	flipped := make(chan time.Time, 1)
	var once sync.Once
	watch := r.watchCanary(t, func(w int) {
		if w == second {
			once.Do(func() {
				r.mesh.SetBehaviour("v2", 1, 0)
				flipped <- time.Now()
			})
		}
	})
	m := r.start(t, "MESHROLL_STEPS=20,40,70,100")
	got := m.wait(t)
	got.expect(t, 3, "canary-failed")
	r.expectWeights(t, "v1 100, v2 0")
	select {
	case at := <-flipped:
		t.Logf("the canary failed from %v after the start", at.Sub(m.started).Round(time.Millisecond))
	default:
		t.Errorf("the canary never had weight %d", second)
	}
	seen, maxWeight := watch.history()
	t.Logf("canary weights seen: %v", seen)
	if maxWeight != second {
		t.Errorf("the canary reached weight %d (history %v); the step after the failure (%d) must never be taken", maxWeight, seen, second)
	}
	got.expectOutput(t, "the canary is worse than stable: 5xx", "step 2/4 window", "rollback: reviews v1 60 → 100, v2 40 → 0")
	if strings.Contains(got.stdout, "step 3/4") {
		t.Errorf("step 3 was started:\n%s", got.stdout)
	}
}

// A canary 40 % slower than stable (log-normal latencies around 60 and 84 ms) that answers
// every request is rolled back, with no latency threshold set: its requests above the bucket
// boundary nearest stable's p99 outnumber its share.
func TestCanaryAnalysisLatencyRegression(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{rps: 80})
	for v, median := range map[string]time.Duration{"v1": 60 * time.Millisecond, "v2": 84 * time.Millisecond} {
		r.mesh.SetBehaviour(v, 0, median)
		r.mesh.SetSpread(v, 0.3)
	}
	// The boundary is taken from what stable served in the two intervals before a step:
	// let it serve that long at its new latency first (a condition on requests served).
	served := r.mesh.Requests("v1")
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return r.mesh.Requests("v1")-served >= 500, nil
	})
	if err != nil {
		t.Fatalf("stable never served 500 requests at its new latency: %v", err)
	}
	got := r.start(t).wait(t)
	got.expect(t, 3, "canary-failed")
	r.expectWeights(t, "v1 100, v2 0")
	got.expectOutput(t, "the canary is worse than stable: slower than")
	if strings.Contains(got.stdout+got.stderr, "worse than stable: 5xx") {
		t.Errorf("the canary was found worse on 5xx, but it answered every request")
	}
}

// When every caller is pinned to stable by a header route, the canary gets no request: no
// window can be judged, the step is inconclusive and traffic returns to stable.
func TestCanaryAnalysisNoCanaryTraffic(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{rps: 80, header: pinnedToStable})
	got := r.start(t).wait(t)
	got.expect(t, 4, "inconclusive")
	r.expectWeights(t, "v1 100, v2 0")
	got.expectOutput(t, "step 1/3 held 6s without one judged window", "no requests recorded for the canary", "rollback: reviews v1 80 → 100, v2 20 → 0")
	if n := r.mesh.Requests("v2"); n != 0 {
		t.Errorf("the canary served %d requests; the pinned route should have kept them all on v1", n)
	}
	if strings.Contains(got.stdout, "step 2/3") {
		t.Errorf("an inconclusive step was followed by the next:\n%s", got.stdout)
	}
}

// Prometheus going away mid-run leaves the canary unjudgeable: after
// MESHROLL_FAILURE_THRESHOLD windows in a row without an answer, traffic returns to stable
// and meshroll exits 1.
func TestCanaryAnalysisPrometheusStopped(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{rps: 80})
	// Three windows in the first step: Prometheus stops after a judged one (so the step
	// itself is not inconclusive) and the next two find it gone.
	m := r.start(t, "MESHROLL_STEP_DURATION=9s", "MESHROLL_FAILURE_THRESHOLD=2")
	m.waitForOutput(t, judgedWindow)
	if err := r.prom.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	got := m.wait(t)
	t.Logf("meshroll ended %v after Prometheus stopped", time.Since(stopped).Round(time.Millisecond))
	got.expect(t, 1, "failed")
	r.expectWeights(t, "v1 100, v2 0")
	got.expectOutput(t, "metric analysis failed in 2 windows in a row (MESHROLL_FAILURE_THRESHOLD=2)", "Prometheus at "+r.prom.URL+" cannot be reached", "rollback: reviews")
}

// A custom business check fails while every built-in passes: the canary's 5xx rate must be 0,
// and 20% errors are within MESHROLL_MIN_SUCCESS_RATE=50 and no worse than stable's.
func TestCanaryAnalysisCustomCheck(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{rps: 80})
	r.mesh.SetBehaviour("v1", 0.2, 0)
	r.mesh.SetBehaviour("v2", 0.2, 0)
	checks, err := json.Marshal([]map[string]any{{
		"name":  "canary-5xx",
		"query": `sum(rate(istio_requests_total{reporter="{{.Reporter}}",destination_workload_namespace="{{.Namespace}}",destination_workload="{{.CanaryWorkload}}",response_code=~"5.."}[{{.Interval}}]))`,
		"max":   0,
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := r.start(t, "MESHROLL_CHECKS="+string(checks), "MESHROLL_MIN_SUCCESS_RATE=50").wait(t)
	got.expect(t, 3, "canary-failed")
	r.expectWeights(t, "v1 100, v2 0")
	got.expectOutput(t, "check canary-5xx failed", "is above the maximum 0")
	if !regexp.MustCompile(`  success-rate {2,}[0-9.]+ {2,}\S+ {2,}≥ 50% {2,}pass`).MatchString(got.stdout) {
		t.Errorf("no window shows the success rate passing:\n%s", got.stdout)
	}
}

// A cancel during a held step (SIGINT/SIGTERM in main.go) returns traffic to stable and
// exits 130. How fast is measured by BenchmarkCancelRollback, not here.
func TestCanaryAnalysisCancelled(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{rps: 80})
	m := r.start(t, "MESHROLL_STEP_DURATION=60s")
	m.waitForOutput(t, regexp.MustCompile(`step 1/3 window 1 at`))
	m.cancel()
	got := m.wait(t)
	got.expect(t, 130, "cancelled")
	r.expectWeights(t, "v1 100, v2 0")
	got.expectOutput(t, "rollback: reviews v1 80 → 100, v2 20 → 0")
}

// untilStable polls the VirtualService every 50ms until the canary has no weight, and
// returns how long that took from since; it gives up after a minute.
func (r *rig) untilStable(tb testing.TB, since time.Time) time.Duration {
	tb.Helper()
	client := r.env.Istio.NetworkingV1().VirtualServices(r.ns)
	for {
		vs, err := client.Get(tb.Context(), "reviews", metav1.GetOptions{})
		switch {
		case err != nil:
			tb.Fatal(err)
		case canaryWeight(vs) == 0:
			return time.Since(since)
		case time.Since(since) > time.Minute:
			tb.Fatalf("the canary still has weight %d %v later", canaryWeight(vs), time.Since(since))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Analysis input that cannot work stops the run before the first write, with exit 2: a custom
// query Prometheus rejects (its message shown), and a stable workload label that matches no
// data.
func TestCanaryAnalysisPreflight(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{rps: 50})
	tests := []struct {
		name string
		vars []string
		want []string
	}{
		{
			name: "promql syntax error",
			vars: []string{`MESHROLL_CHECKS=[{"name": "canary-errors", "query": "sum(rate(istio_requests_total{destination_workload=\"{{.CanaryWorkload}}\"}[{{.Interval}}])", "max": 0}]`},
			want: []string{"check canary-errors (canary)", "Prometheus rejected it", "parse error", "unclosed left parenthesis"},
		},
		{
			name: "wrong stable workload",
			vars: []string{"MESHROLL_STABLE_WORKLOAD=reviews"},
			want: []string{"MESHROLL_STABLE_WORKLOAD", `destination_workload="reviews"`, "no requests recorded for the stable workload"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rvBefore := resourceVersion(t, r.env, r.ns, "reviews")
			got := r.start(t, tt.vars...).wait(t)
			got.expect(t, 2, "invalid")
			for _, w := range tt.want {
				if !strings.Contains(got.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, got.stderr)
				}
			}
			if rv := resourceVersion(t, r.env, r.ns, "reviews"); rv != rvBefore {
				t.Errorf("the VirtualService was written: resourceVersion %s → %s", rvBefore, rv)
			}
		})
	}
}

// specJSON is the spec of vs as JSON, as istio.NewState reads it.
func specJSON(tb testing.TB, vs *networkingv1.VirtualService) []byte {
	tb.Helper()
	data, err := json.Marshal(&vs.Spec)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}
