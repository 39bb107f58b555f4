package app

// End-to-end tests of the gates on the real API server: MESHROLL_WEBHOOKS and the built-in
// load (MESHROLL_LOAD_*). A loopback server (standIn) stands in for every webhook and for the
// load's target and counts what it gets; the assertions are on those counts and on what was
// configured, never on how long anything took.
//
//	MESHROLL_TEST_ASSETS=$HOME/.cache/meshroll/k8s-v1.37.2 CI=true go test -count=1 -run 'TestGates|TestSecurity' ./internal/app/

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/report"
	"github.com/meshroll/meshroll/internal/testenv"
)

// hookSecret is a webhook's Authorization header: a secret no output may show.
const hookSecret = "Bearer hook-s3cret-7f3a9c"

// checksumRE is Flagger's checksum: ten hex characters.
var checksumRE = regexp.MustCompile(`^[0-9a-f]{10}$`)

// gateRunTimeout is MESHROLL_TIMEOUT for the runs here: a safety net only, far beyond the
// few seconds they hold.
const gateRunTimeout = "MESHROLL_TIMEOUT=5m"

// expectSecretKept fails the test if the secret shows in the output or the result files.
func expectSecretKept(t *testing.T, secret string, got run, dir string) {
	t.Helper()
	for name, text := range map[string]string{"stdout": got.stdout, "stderr": got.stderr,
		report.ResultFile: outputFile(t, dir, report.ResultFile), report.SummaryFile: outputFile(t, dir, report.SummaryFile)} {
		if strings.Contains(text, secret) {
			t.Errorf("a header value (a secret) shows in %s", name)
		}
	}
}

// A pre-rollout webhook answering 500 fails the canary before any traffic moves: exit 3,
// failed check webhook:smoke, the VirtualService untouched. It got Flagger's body with the
// configured metadata and headers; the post-rollout webhook is told the rollout Failed; the
// rollback webhook is not called, since nothing went back to stable.
func TestGatesPreRolloutRejects(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := newStack(t, env)
	hooks := newStandIn(t, map[string]answer{
		"/smoke": func(int) (int, string) {
			return http.StatusInternalServerError, "smoke test failed: GET /health answered 503"
		},
	})
	out := t.TempDir()
	rvBefore := resourceVersion(t, env, ns, "reviews")
	got := runMain(t.Context(), t, env, ns, "MESHROLL_STEPS=50,100", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2", "MESHROLL_OUTPUT_DIR="+out, gateRunTimeout,
		webhooksVar(t,
			map[string]any{"name": "smoke", "type": "pre-rollout", "url": hooks.url("/smoke"),
				"metadata": map[string]string{"type": "bash", "cmd": "curl -sf http://reviews-canary:9080/health"},
				"headers":  map[string]string{"Authorization": hookSecret, "X-Team": "checkout"}},
			map[string]any{"name": "notify", "type": "post-rollout", "url": hooks.url("/notify")},
			map[string]any{"name": "undo", "type": "rollback", "url": hooks.url("/undo")},
		))
	got.expect(t, 3, "canary-failed")
	got.expectOutput(t, `pre-rollout webhook "smoke"`, "answered 500 Internal Server Error: smoke test failed", "nothing was moved")
	if rv := resourceVersion(t, env, ns, "reviews"); rv != rvBefore {
		t.Errorf("the VirtualService was written: resourceVersion %s → %s", rvBefore, rv)
	}

	res := readResult(t, out)
	if res.FailedCheck != "webhook:smoke" {
		t.Errorf("failedCheck = %q, want webhook:smoke", res.FailedCheck)
	}
	if diff := cmp.Diff([]string{"pre-rollout smoke 500", "post-rollout notify 200"}, hookCalls(res)); diff != "" {
		t.Errorf("the webhooks of %s (-want +got):\n%s", report.ResultFile, diff)
	}

	smoke := hooks.calls("/smoke")
	if len(smoke) != 1 {
		t.Fatalf("the pre-rollout webhook got %d calls, want 1", len(smoke))
	}
	call := smoke[0]
	checksum := call.payload(t).Checksum
	if !checksumRE.MatchString(checksum) {
		t.Errorf("checksum %q is not ten hex characters", checksum)
	}
	// Flagger's body exactly, keys in its order, the metadata as configured.
	want := fmt.Sprintf(`{"name":"reviews","namespace":%q,"phase":"Progressing","checksum":%q,"metadata":{"cmd":"curl -sf http://reviews-canary:9080/health","type":"bash"}}`, ns, checksum)
	if string(call.body) != want {
		t.Errorf("the pre-rollout webhook got\n%s\nwant\n%s", call.body, want)
	}
	for name, value := range map[string]string{"Authorization": hookSecret, "X-Team": "checkout", "Content-Type": "application/json"} {
		if got := call.header.Get(name); got != value {
			t.Errorf("header %s = %q, want %q", name, got, value)
		}
	}
	if call.method != http.MethodPost {
		t.Errorf("method %s, want POST", call.method)
	}
	notify := hooks.calls("/notify")
	if len(notify) != 1 || notify[0].payload(t).Phase != "Failed" || notify[0].payload(t).Checksum != checksum {
		t.Errorf("the post-rollout webhook got %d calls, want 1 with phase Failed and checksum %s: %q", len(notify), checksum, notify)
	}
	if n := hooks.count("/undo"); n != 0 {
		t.Errorf("the rollback webhook was called %d times, but nothing moved", n)
	}
	expectSecretKept(t, hookSecret, got, out)
}

// A confirm-promotion gate that answers 403 until its third call keeps the canary at 50%:
// while the run waits there, the Lease's record and the log say which webhook it waits for.
// Once the gate answers 200 the canary is promoted. The gate got exactly three calls, the
// post-rollout webhook the phase Succeeded, and every call of the run the same checksum.
func TestGatesConfirmPromotion(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := newStack(t, env)
	const opensAt = 3
	release := make(chan struct{})
	var once sync.Once
	hooks := newStandIn(t, map[string]answer{"/approve": func(n int) (int, string) {
		if n < opensAt {
			return http.StatusForbidden, "not approved yet"
		}
		<-release // the test looks at the waiting run first: no race with the gate
		return http.StatusOK, "approved"
	}})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the server closes
	var opened, promotedEarly atomic.Bool
	watch := (&rig{env: env, ns: ns}).watchCanary(t, func(w int) {
		if w == 100 && !opened.Load() {
			promotedEarly.Store(true)
		}
	})
	out := t.TempDir()
	m := startMain(t, env, ns, "MESHROLL_STEPS=50,100", "MESHROLL_ANALYSIS_INTERVAL=1s", "MESHROLL_STEP_DURATION=2s",
		"MESHROLL_CANARY_DEPLOYMENT=reviews-v2", "MESHROLL_OUTPUT_DIR="+out, gateRunTimeout,
		webhooksVar(t,
			map[string]any{"name": "smoke", "type": "pre-rollout", "url": hooks.url("/smoke")},
			// The call that opens the gate waits for the test: its timeout must outlast that.
			map[string]any{"name": "approve", "type": "confirm-promotion", "url": hooks.url("/approve"), "timeout": "5m"},
			map[string]any{"name": "notify", "type": "post-rollout", "url": hooks.url("/notify")},
		))

	waitUntil(t, faultWait, fmt.Sprintf("call %d of the gate, or the run's end", opensAt), func() bool {
		select {
		case <-m.done:
			return true
		default:
			return hooks.count("/approve") >= opensAt
		}
	})
	if n := hooks.count("/approve"); n != opensAt {
		got := m.wait(t)
		t.Fatalf("the run ended (exit %d) after %d calls of the gate, before call %d", got.code, n, opensAt)
	}
	waiting := `waiting at the confirm-promotion gate for webhook "approve"`
	rec, holder := mustLock(t, env, ns)
	if rec.Doing != waiting || holder == "" {
		t.Errorf("while the gate is closed the Lease records %q (holder %q), want %q and held", rec.Doing, holder, waiting)
	}
	if !strings.Contains(m.stdout.String(), waiting+" (") {
		t.Errorf("while the gate is closed stdout does not say %q:\n%s", waiting, m.stdout.String())
	}
	if w := currentWeights(env, ns); w != "v1 50, v2 50" {
		t.Errorf("while the gate is closed the weights are %s, want v1 50, v2 50", w)
	}
	opened.Store(true)
	once.Do(func() { close(release) })

	got := m.wait(t)
	got.expect(t, 0, "promoted")
	got.expectOutput(t, "confirm-promotion gate open: every webhook answered 2xx (poll 3)", "answered 403 Forbidden: not approved yet")
	if n := hooks.count("/approve"); n != opensAt {
		t.Errorf("the gate got %d calls, want exactly %d", n, opensAt)
	}
	if seen, _ := waitHistory(t, watch, 100); !slices.Equal(seen, []int{10, 50, 100}) || promotedEarly.Load() {
		t.Errorf("canary weights seen %v (promoted before the gate opened: %v), want 10, 50, then 100 once it opened", seen, promotedEarly.Load())
	}
	res := readResult(t, out)
	want := []string{"pre-rollout smoke 200", "confirm-promotion approve 403 (poll 1)", "confirm-promotion approve 200 (poll 3)", "post-rollout notify 200"}
	if diff := cmp.Diff(want, hookCalls(res)); diff != "" {
		t.Errorf("the webhooks of %s (-want +got):\n%s", report.ResultFile, diff)
	}

	var phases []string
	checksums := map[string]bool{}
	for _, path := range []string{"/smoke", "/approve", "/notify"} {
		for _, c := range hooks.calls(path) {
			p := c.payload(t)
			phases = append(phases, path[1:]+" "+p.Phase)
			checksums[p.Checksum] = true
		}
	}
	wantPhases := []string{"smoke Progressing", "approve Progressing", "approve Progressing", "approve Progressing", "notify Succeeded"}
	if diff := cmp.Diff(wantPhases, phases); diff != "" {
		t.Errorf("the phases the webhooks got (-want +got):\n%s", diff)
	}
	if len(checksums) != 1 {
		t.Errorf("the calls of one run carried %d checksums, want 1: %v", len(checksums), checksums)
	}
}

// A rollout webhook, without Prometheus the only judge of the held steps, that fails from its
// second call fails the canary: traffic goes back to stable, the rollback and post-rollout
// webhooks are told Failed. The webhook was called once per window, and the windows of
// result.json show its answers.
func TestGatesRolloutWebhookFails(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := newStack(t, env)
	hooks := newStandIn(t, map[string]answer{"/judge": func(n int) (int, string) {
		if n >= 2 {
			return http.StatusInternalServerError, "error rate 7%"
		}
		return http.StatusOK, ""
	}})
	watch := (&rig{env: env, ns: ns}).watchCanary(t, nil)
	out := t.TempDir()
	got := runMain(t.Context(), t, env, ns, "MESHROLL_STEPS=50,100", "MESHROLL_ANALYSIS_INTERVAL=1s", "MESHROLL_STEP_DURATION=4s",
		"MESHROLL_OUTPUT_DIR="+out, gateRunTimeout,
		webhooksVar(t,
			map[string]any{"name": "judge", "type": "rollout", "url": hooks.url("/judge")},
			map[string]any{"name": "undo", "type": "rollback", "url": hooks.url("/undo")},
			map[string]any{"name": "notify", "type": "post-rollout", "url": hooks.url("/notify")},
		))
	got.expect(t, 3, "canary-failed")
	got.expectOutput(t, "only the rollout webhooks judge the canary, every 1s", "check webhook:judge failed", "rollback: reviews v1 50 → 100, v2 50 → 0")
	if w := currentWeights(env, ns); w != "v1 100, v2 0" {
		t.Errorf("weights after the failure = %s, want v1 100, v2 0", w)
	}
	if seen, _ := waitHistory(t, watch, 0); !slices.Equal(seen, []int{10, 50, 0}) {
		t.Errorf("canary weights seen %v, want 10, 50, 0", seen)
	}

	res := readResult(t, out)
	if res.FailedCheck != "webhook:judge" || len(res.Steps) == 0 {
		t.Fatalf("failedCheck = %q with %d steps, want webhook:judge", res.FailedCheck, len(res.Steps))
	}
	var verdicts []string
	for _, w := range res.Steps[0].Windows {
		for _, r := range w.Results {
			if r.Check == "webhook:judge" {
				verdicts = append(verdicts, string(r.Verdict))
			}
		}
	}
	// The first call passed and every later one failed; the run stopped at the failure that
	// reached the threshold, so the last window is a failure.
	calls := hooks.count("/judge")
	if len(verdicts) < 2 || verdicts[0] != string(analysis.VerdictPass) || slices.Contains(verdicts[1:], string(analysis.VerdictPass)) || calls != len(verdicts) {
		t.Errorf("the webhook's verdicts in step 1's windows are %v after %d calls, want pass then fail…, one window a call", verdicts, calls)
	}
	t.Logf("the rollout webhook got %d calls, %d windows judged", calls, len(verdicts))
	for _, path := range []string{"/undo", "/notify"} {
		c := hooks.calls(path)
		if len(c) != 1 || c[0].payload(t).Phase != "Failed" {
			t.Errorf("%s got %d calls, want 1 with phase Failed", path, len(c))
		}
	}
}

// waitHistory waits until the watch has seen the canary at weight last, and returns what it saw.
func waitHistory(t *testing.T, w *weightWatch, last int) ([]int, int) {
	t.Helper()
	waitUntil(t, faultWait, fmt.Sprintf("the watch to see canary weight %d", last), func() bool {
		seen, _ := w.history()
		return len(seen) > 0 && seen[len(seen)-1] == last
	})
	return w.history()
}

// loadLine is the log line of a held step's load.
var loadLine = regexp.MustCompile(`step 1/2: load: ([0-9,]+) requests? at [0-9.]+/s, 0 non-2xx, p50 \S+, p99 \S+`)

// The built-in load on a quiet service: while the first step holds, meshroll sends GET
// requests with the configured header to MESHROLL_LOAD_URL at about MESHROLL_LOAD_RPS, and the
// log, result.json and the summary say how many.
func TestGatesLoad(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := newStack(t, env)
	const rps, hold, secret = 20, 3 * time.Second, "load-s3cret-51d2"
	target := newStandIn(t, nil)
	out := t.TempDir()
	got := runMain(t.Context(), t, env, ns, "MESHROLL_STEPS=50,100", "MESHROLL_STEP_DURATION="+hold.String(),
		"MESHROLL_LOAD_URL="+target.url("/load"), "MESHROLL_LOAD_RPS="+strconv.Itoa(rps), "MESHROLL_LOAD_HEADERS=X-Load-Token: "+secret,
		"MESHROLL_OUTPUT_DIR="+out, gateRunTimeout)
	got.expect(t, 0, "promoted")

	sent := target.calls("/load")
	for i, r := range sent {
		if r.method != http.MethodGet || r.header.Get("X-Load-Token") != secret {
			t.Errorf("request %d: %s with X-Load-Token %q, want GET with the configured header", i+1, r.method, r.header.Get("X-Load-Token"))
			break
		}
	}
	res := readResult(t, out)
	if len(res.Steps) != 2 || res.Steps[0].Load == nil || res.Steps[1].Load != nil {
		t.Fatalf("want load figures for step 1 (held) only, not the final 100: %+v", res.Steps)
	}
	load := *res.Steps[0].Load
	served := int64(len(sent))
	// The load ran while step 1 held: after step 1 started, before step 2 did.
	ran := res.Steps[1].StartedAt.Sub(res.Steps[0].StartedAt)
	t.Logf("the target counted %d requests; meshroll counted %d (%s); configured %d/s × %s = %d; the load ran within %s",
		served, load.Requests, load.Summary, rps, hold, int(rps*hold.Seconds()), ran.Round(time.Millisecond))

	// Every request meshroll counted got a 2xx from the target, so the target saw it; the
	// target may have seen a few more that were in flight when the load stopped and were cut
	// short uncounted. Stop waits a second for them, and the target answers at once, so they
	// are fewer than a second's worth of requests.
	if load.Non2xx != 0 || served < load.Requests || served > load.Requests+rps {
		t.Errorf("the target counted %d requests, meshroll %d with %d non-2xx; want 0 non-2xx and the target's count from meshroll's to %d more", served, load.Requests, load.Non2xx, rps)
	}
	// The rate is loosely what was configured. The load runs for at least the hold (time
	// passes however busy the machine) and its pacer catches up with the hits it is due, so
	// even on a slow machine it sends far more than a quarter of rate × hold. It never sends
	// ahead of its pace, so it cannot exceed the rate over the time it ran (bounded by the
	// steps' start times in result.json, which a slow machine only lengthens) by half.
	if low, high := int64(rps*hold.Seconds()/4), int64(1.5*rps*ran.Seconds())+1; served < low || served > high {
		t.Errorf("the target counted %d requests, want between %d (25%% of %d/s × %s) and %d (150%% of %d/s × %s)", served, low, rps, hold, high, rps, ran.Round(time.Millisecond))
	}

	m := loadLine.FindStringSubmatch(got.stdout)
	if m == nil || strings.ReplaceAll(m[1], ",", "") != strconv.FormatInt(load.Requests, 10) {
		t.Errorf("stdout lacks the line `step 1/2: load: %d requests at …`:\n%s", load.Requests, got.stdout)
	}
	summary := outputFile(t, out, report.SummaryFile)
	if !strings.Contains(summary, "### Load (client side)") || !strings.Contains(summary, "| "+load.Summary+" |") {
		t.Errorf("%s lacks the load table with %q:\n%s", report.SummaryFile, load.Summary, summary)
	}
	expectSecretKept(t, secret, got, out)
}
