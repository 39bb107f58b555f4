package report

import (
	"fmt"
	"time"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Fixed timelines for the golden tests: what the rollout would hand a reporter.

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func weights(stable, canary int) []traffic.Destination {
	return []traffic.Destination{
		{Host: "reviews", Subset: "v1", Role: traffic.RoleStable, Weight: stable},
		{Host: "reviews", Subset: "v2", Role: traffic.RoleCanary, Weight: canary},
	}
}

func ptr(v float64) *float64 { return &v }

// window judges the three built-in checks the way the analysis package does, with a
// minimum of 20 requests, a 99% success rate and a 500 ms p99.
func window(when time.Time, requests, rate, p99 float64) analysis.Window {
	volume := analysis.Result{Check: "request-volume", Canary: ptr(requests), Stable: ptr(400), Threshold: "≥ 20 requests", Verdict: analysis.VerdictPass}
	sr := analysis.Result{Check: "success-rate", Canary: ptr(rate), Stable: ptr(99.9), Threshold: "≥ 99%", Verdict: analysis.VerdictPass}
	lat := analysis.Result{Check: "latency-p99", Canary: ptr(p99), Stable: ptr(120), Threshold: "≤ 500 ms", Verdict: analysis.VerdictPass}
	if requests < 20 {
		why := fmt.Sprintf("the canary served %s requests in the last 1m, fewer than the 20 needed to judge a window", analysis.Format(&requests))
		volume.Verdict, volume.Message = analysis.VerdictNoData, why
		sr.Verdict, sr.Message = analysis.VerdictNoData, why
		lat.Verdict, lat.Message = analysis.VerdictNoData, why
		return analysis.Window{At: when, Results: []analysis.Result{volume, sr, lat}}
	}
	if rate < 99 {
		sr.Verdict, sr.Message = analysis.VerdictFail, fmt.Sprintf("canary success rate %s%% is below 99%%", analysis.Format(&rate))
	}
	if p99 > 500 {
		lat.Verdict, lat.Message = analysis.VerdictFail, fmt.Sprintf("canary p99 latency %s ms is above 500 ms", analysis.Format(&p99))
	}
	return analysis.Window{At: when, Results: []analysis.Result{volume, sr, lat}}
}

// setStep is a written step of a progression, started at start.
func setStep(i, of, canary, prevCanary int, start time.Time, hold time.Duration, ws ...analysis.Window) rollout.Step {
	s := rollout.Step{
		Index: i, Of: of, Action: rollout.ActionSet, CanaryWeight: canary,
		Before: weights(100-prevCanary, prevCanary), After: weights(100-canary, canary),
		Changed: true, StartedAt: start, Windows: ws,
	}
	if hold > 0 {
		s.HeldUntil = start.Add(hold)
	}
	return s
}

func rollbackStep(from int, start time.Time) rollout.Step {
	return rollout.Step{Action: rollout.ActionRollback, Before: weights(100-from, from), After: weights(100, 0), Changed: true, StartedAt: start}
}

func baseResult(mode config.Mode) rollout.Result {
	return rollout.Result{
		Mode: mode, Namespace: "prod", VirtualService: "reviews", Route: "default",
		StableSubset: "v1", CanarySubset: "v2", StartedAt: t0,
	}
}

type fixture struct {
	name string
	res  rollout.Result
}

func fixtures() []fixture {
	m := time.Minute

	promoted := baseResult(config.ModeProgress)
	promoted.Analysis = true
	promoted.Steps = []rollout.Step{
		setStep(1, 4, 10, 0, at(time.Second), 2*m, window(at(m+time.Second), 120, 99.95, 210), window(at(2*m+time.Second), 130, 100, 190)),
		// A latency spike in the first window, tolerated: the next window passes.
		setStep(2, 4, 25, 10, at(2*m+2*time.Second), 2*m, window(at(3*m+2*time.Second), 310, 99.9, 612.5), window(at(4*m+2*time.Second), 330, 99.92, 230)),
		setStep(3, 4, 50, 25, at(4*m+3*time.Second), 2*m, window(at(5*m+3*time.Second), 610, 99.97, 240), window(at(6*m+3*time.Second), 640, 99.96, 250)),
		setStep(4, 4, 100, 50, at(6*m+4*time.Second), 0),
	}
	promoted.Final = weights(0, 100)
	promoted.FinishedAt = at(6*m + 5*time.Second)

	canaryFailed := baseResult(config.ModeProgress)
	canaryFailed.Analysis = true
	canaryFailed.Steps = []rollout.Step{
		setStep(1, 4, 10, 0, at(time.Second), 2*m, window(at(m+time.Second), 120, 99.95, 210), window(at(2*m+time.Second), 130, 99.91, 190)),
		setStep(2, 4, 25, 10, at(2*m+2*time.Second), 2*m, window(at(3*m+2*time.Second), 310, 98.2, 260), window(at(4*m+2*time.Second), 305, 95.1, 270)),
		rollbackStep(25, at(4*m+3*time.Second)),
	}
	canaryFailed.Outcome = rollout.CanaryFailed
	canaryFailed.FailedCheck = "success-rate"
	canaryFailed.Reason = "check success-rate failed: canary 95.1, stable 99.9, threshold ≥ 99%: canary success rate 95.1% is below 99% (2 failed windows, MESHROLL_FAILURE_THRESHOLD=2)"
	canaryFailed.Steps[1].Error = canaryFailed.Reason
	canaryFailed.Final = weights(100, 0)
	canaryFailed.FinishedAt = at(4*m + 4*time.Second)

	inconclusive := baseResult(config.ModeProgress)
	inconclusive.Analysis = true
	inconclusive.Steps = []rollout.Step{
		setStep(1, 3, 10, 0, at(time.Second), 5*m, window(at(m+time.Second), 3, 100, 180), window(at(2*m+time.Second), 0, 100, 180), window(at(3*m+time.Second), 2, 100, 180)),
		rollbackStep(10, at(3*m+2*time.Second)),
	}
	inconclusive.Outcome = rollout.Inconclusive
	inconclusive.Reason = "inconclusive: step 1/3 held 5m0s without one judged window (the canary served 2 requests in the last 1m, fewer than the 20 needed to judge a window); send the canary more traffic, lower MESHROLL_MIN_REQUESTS or hold longer with MESHROLL_STEP_DURATION"
	inconclusive.Steps[0].Error = inconclusive.Reason
	inconclusive.Final = weights(100, 0)
	inconclusive.FinishedAt = at(3*m + 3*time.Second)

	weightSet := baseResult(config.ModePhase)
	weightSet.Steps = []rollout.Step{setStep(1, 1, 20, 0, at(time.Second), 0)}
	weightSet.Outcome = rollout.WeightSet
	weightSet.Final = weights(80, 20)
	weightSet.FinishedAt = at(2 * time.Second)

	dryRun := baseResult(config.ModeProgress)
	for i, w := range []int{10, 50, 100} {
		prev := []int{0, 10, 50}[i]
		s := setStep(i+1, 3, w, prev, at(time.Second), 0)
		s.Action = rollout.ActionPlan
		s.Patch = []traffic.PatchOp{
			{Op: "add", Path: "/spec/http/0/route/0/weight", Value: 100 - w},
			{Op: "add", Path: "/spec/http/0/route/1/weight", Value: w},
		}
		dryRun.Steps = append(dryRun.Steps, s)
	}
	dryRun.Outcome = rollout.DryRun
	dryRun.Final = weights(0, 100)
	dryRun.FinishedAt = at(time.Second)

	// The write of step 3 failed (the API server went away): the step is not recorded, and
	// step 2, which was held to its end, completed.
	failedWrite := baseResult(config.ModeProgress)
	failedWrite.Steps = []rollout.Step{
		setStep(1, 4, 10, 0, at(time.Second), m),
		setStep(2, 4, 25, 10, at(m+2*time.Second), m),
		rollbackStep(25, at(2*m+3*time.Second)),
	}
	failedWrite.Outcome = rollout.Failed
	failedWrite.Reason = "failed to patch prod/reviews: Patch \"https://10.0.0.1:6443/apis/networking.istio.io/v1/namespaces/prod/virtualservices/reviews\": dial tcp 10.0.0.1:6443: connect: connection refused"
	failedWrite.Final = weights(100, 0)
	failedWrite.FinishedAt = at(2*m + 4*time.Second)

	// Bad input: nothing was read or written.
	invalid := rollout.Result{
		Mode: config.ModeProgress, Outcome: rollout.Invalid, Namespace: "prod", VirtualService: "reviews",
		StableSubset: "v1", CanarySubset: "v3", StartedAt: t0, FinishedAt: at(time.Second),
		Reason: "preflight failed: DestinationRule prod/reviews has no subset v3\nsubsets: v1, v2",
	}

	// Input with several problems, as config lists them, one per line; nothing else is known
	// of a run whose input could not be read.
	invalidInput := rollout.Result{
		Outcome: rollout.Invalid, StartedAt: t0, FinishedAt: t0,
		Reason: "MESHROLL_CANARY_SUBSET is required: set it to the DestinationRule subset of the canary version, e.g. v2\n" +
			"MESHROLL_WEIGHT=150: must be an integer from 0 to 100\n" +
			"MESHROLL_WIEGHT is not a meshroll variable: did you mean MESHROLL_WEIGHT?",
	}

	// A mirror stage, an A/B stage, then a weighted step that another writer undid.
	shaped := baseResult(config.ModeProgress)
	shaped.Analysis = true
	mirror := setStep(1, 4, 0, 0, at(time.Second), 2*m, window(at(m+time.Second), 240, 100, 200), window(at(2*m+time.Second), 250, 100, 205))
	mirror.Kind, mirror.Before, mirror.After = rollout.KindMirror, weights(100, 0), weights(100, 0)
	ab := setStep(2, 4, 0, 0, at(2*m+2*time.Second), 2*m, window(at(3*m+2*time.Second), 40, 100, 190), window(at(4*m+2*time.Second), 45, 100, 195))
	ab.Kind, ab.Before, ab.After = rollout.KindAB, weights(100, 0), weights(100, 0)
	drifted := setStep(3, 4, 20, 0, at(4*m+3*time.Second), 2*m)
	drifted.Kind = rollout.KindWeight
	shaped.Steps = []rollout.Step{mirror, ab, drifted}
	shaped.Outcome = rollout.Interrupted
	shaped.Reason = "the route was changed by someone else: VirtualService prod/reviews now has v1 100, v2 0, but this run left v1 80, v2 20; A/B route meshroll-ab-v2; stopping without writing so as not to undo that change (run again, or roll back, once it is settled)"
	shaped.Steps[2].Error = shaped.Reason
	shaped.Final = weights(100, 0)
	shaped.FinishedAt = at(5*m + 3*time.Second)

	// The sequential test found the canary worse than stable on its 5xx: rolled back at once,
	// with no threshold breached.
	worse := baseResult(config.ModeProgress)
	worse.Analysis = true
	w1 := window(at(m+time.Second), 120, 99.2, 210)
	w1.Results = w1.Results[:1] // request volume only: no guardrail set
	w1.Comparisons = []analysis.Comparison{
		{Name: "5xx", CanaryRequests: 120, CanaryBad: 1, StableRequests: 1080, StableBad: 4, Confidence: 0.12, Evidence: "5xx 0.83 % vs 0.37 % over 120 canary requests: no evidence yet that the canary is worse (confidence 12 %)"},
		{Name: "slower than 250 ms", CanaryRequests: 120, CanaryBad: 1, StableRequests: 1080, StableBad: 10, Evidence: "slower than 250 ms 0.83 % vs 0.93 % over 120 canary requests: no evidence yet that the canary is worse (confidence 0 %)"},
	}
	w2 := window(at(2*m+time.Second), 130, 93, 190)
	w2.Results = w2.Results[:1]
	w2.Comparisons = []analysis.Comparison{
		{Name: "5xx", CanaryRequests: 250, CanaryBad: 10, StableRequests: 2200, StableBad: 9, Confidence: 0.9991, Worse: true, Evidence: "5xx 4 % vs 0.41 % over 250 canary requests: worse with 99.9 % confidence"},
		{Name: "slower than 250 ms", CanaryRequests: 250, CanaryBad: 2, StableRequests: 2200, StableBad: 21, Evidence: "slower than 250 ms 0.8 % vs 0.95 % over 250 canary requests: no evidence yet that the canary is worse (confidence 0 %)"},
	}
	worse.Steps = []rollout.Step{setStep(1, 4, 10, 0, at(time.Second), 2*m, w1, w2), rollbackStep(10, at(2*m+2*time.Second))}
	worse.Outcome = rollout.CanaryFailed
	worse.FailedCheck = "5xx"
	worse.Reason = "the canary is worse than stable: " + w2.Comparisons[0].Evidence
	worse.Steps[0].Error = worse.Reason
	worse.Final = weights(100, 0)
	worse.FinishedAt = at(2*m + 3*time.Second)

	return []fixture{
		{"promoted", withOutcome(promoted, rollout.Promoted)},
		{"canary-failed", canaryFailed},
		{"inconclusive", inconclusive},
		{"weight-set", weightSet},
		{"dry-run", dryRun},
		{"failed-write", failedWrite},
		{"invalid", invalid},
		{"invalid-input", invalidInput},
		{"shapes-interrupted", shaped},
		{"canary-worse", worse},
		{"gates", gatesFixture()},
	}
}

func withOutcome(res rollout.Result, o rollout.Outcome) rollout.Result {
	res.Outcome = o
	return res
}

// replay feeds a reporter the log a rollout would write for res, then finishes it.
func replay(r Reporter, res rollout.Result) error {
	if res.Mode == "" {
		// Input that could not be read: app prints the problems on stderr, and reports.
		return r.Finish(res)
	}
	r.Printf("meshroll %s: VirtualService %s/%s, stable %s, canary %s", res.Mode, res.Namespace, res.VirtualService, res.StableSubset, res.CanarySubset)
	if res.Outcome == rollout.Invalid {
		r.Printf("preflight failed")
	} else {
		r.Printf("preflight passed: route %s now %s", res.Route, traffic.DescribeWeights(weights(100, 0)))
	}
	for _, s := range res.Steps {
		started := s
		started.After, started.Windows, started.Changed = nil, nil, false
		if s.Action == rollout.ActionRollback {
			r.Printf("%s: returning all traffic to %s", res.Outcome, res.StableSubset)
		}
		r.StepStarted(started)
		change := traffic.DescribeChange(s.Before, s.After)
		switch s.Action {
		case rollout.ActionPlan:
			r.Printf("dry run step %d/%d: %s\n  patch: %v", s.Index, s.Of, change, s.Patch)
		case rollout.ActionRollback:
			r.Printf("rollback: %s %s", res.VirtualService, change)
		default:
			r.Printf("step %d/%d: %s %s", s.Index, s.Of, res.VirtualService, change)
			if !s.HeldUntil.IsZero() {
				r.Printf("step %d/%d: holding %s", s.Index, s.Of, human(s.HeldUntil.Sub(s.StartedAt)))
			}
		}
		for _, w := range s.Windows {
			for _, c := range w.Results {
				line := fmt.Sprintf("step %d/%d: %s %s canary %s (%s): %s", s.Index, s.Of, offset(res, w.At), c.Check, analysis.Format(c.Canary), c.Threshold, c.Verdict)
				if c.Message != "" {
					line += ": " + c.Message
				}
				r.Printf("%s", line)
			}
		}
		r.StepDone(s)
	}
	return r.Finish(res)
}

// gatesFixture is a progression with every gate: a manual gate that opened on its second
// poll, a pre-rollout webhook, load during the holds, a rollout webhook that failed two
// windows (the canary failed), then the notifications, one of which failed; the preflight
// warned of a policy that protects stable only.
func gatesFixture() rollout.Result {
	m := time.Minute
	res := baseResult(config.ModeProgress)
	res.Analysis = true
	hook := func(w analysis.Window, ok bool) analysis.Window {
		r := analysis.Result{Check: "webhook:smoke", Canary: ptr(200), Threshold: "2xx", Verdict: analysis.VerdictPass}
		if !ok {
			r.Canary, r.Verdict, r.Message = ptr(500), analysis.VerdictFail, "answered 500 Internal Server Error: 3 of 40 smoke tests failed"
		}
		w.Results = append(w.Results, r)
		return w
	}
	s1 := setStep(1, 3, 10, 0, at(40*time.Second), 2*m, hook(window(at(m+40*time.Second), 120, 100, 200), true), hook(window(at(2*m+40*time.Second), 125, 100, 210), true))
	s1.Load = &rollout.LoadStats{Requests: 1200, Rate: 10, P50: 12 * time.Millisecond, P99: 48 * time.Millisecond, Summary: "1,200 requests at 10.0/s, 0 non-2xx, p50 12ms, p99 48ms"}
	s2 := setStep(2, 3, 50, 10, at(2*m+41*time.Second), 2*m, hook(window(at(3*m+41*time.Second), 600, 100, 220), false), hook(window(at(4*m+41*time.Second), 610, 100, 230), false))
	s2.Load = &rollout.LoadStats{Requests: 1199, Non2xx: 2, Rate: 9.99, P50: 13 * time.Millisecond, P99: 61 * time.Millisecond, Summary: "1,199 requests at 10.0/s, 2 non-2xx, p50 13ms, p99 61ms"}
	res.Steps = []rollout.Step{s1, s2, rollbackStep(50, at(4*m+42*time.Second))}
	res.Outcome = rollout.CanaryFailed
	res.FailedCheck = "webhook:smoke"
	res.Reason = "check webhook:smoke failed: canary 500, stable -, threshold 2xx: answered 500 Internal Server Error: 3 of 40 smoke tests failed (2 failed windows, MESHROLL_FAILURE_THRESHOLD=2)"
	res.Steps[1].Error = res.Reason
	res.Final = weights(100, 0)
	res.FinishedAt = at(4*m + 44*time.Second)
	res.Warnings = []string{"security parity: AuthorizationPolicy prod/reviews-v1-only selects app=reviews,version=v1: the canary (version=v2) is not protected by it; give the policy a selector that matches both versions (set MESHROLL_VERIFY_SECURITY=true to stop such a rollout)"}
	call := func(d time.Duration, name string, typ config.WebhookType, status int, polls int, errText string) rollout.HookCall {
		return rollout.HookCall{Name: name, Type: typ, URL: "http://flagger-loadtester.test/" + name, At: at(d), Status: status,
			Latency: 35 * time.Millisecond, OK: status >= 200 && status < 300, Error: errText, Polls: polls}
	}
	res.Webhooks = []rollout.HookCall{
		call(time.Second, "release-manager", config.WebhookConfirmRollout, 403, 1, "answered 403 Forbidden: gate closed"),
		call(31*time.Second, "release-manager", config.WebhookConfirmRollout, 200, 2, ""),
		call(32*time.Second, "acceptance", config.WebhookPreRollout, 200, 0, ""),
		call(4*m+43*time.Second, "slack", config.WebhookRollback, 200, 0, ""),
		{Name: "audit", Type: config.WebhookPostRollout, URL: "https://audit.test/events", At: at(4*m + 43*time.Second), Error: "no answer within 10s"},
	}
	return res
}
