package rollout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// fakeHooks answers each webhook type as a test scripts it: answer gets the type and the
// 1-based number of calls of that type so far, and says whether the webhook answered 2xx.
type fakeHooks struct {
	mu     sync.Mutex
	answer func(typ config.WebhookType, n int) bool
	f      *fakeTraffic // the canary weight at each call, when set
	calls  []string     // "type n (weight w)" or "post-rollout succeeded=…"
	count  map[config.WebhookType]int
	// ctxErr records, per type, whether a call came with its context already ended.
	ctxErr map[config.WebhookType]bool
}

func newHooks(f *fakeTraffic, answer func(typ config.WebhookType, n int) bool) *fakeHooks {
	return &fakeHooks{answer: answer, f: f, count: map[config.WebhookType]int{}, ctxErr: map[config.WebhookType]bool{}}
}

func (h *fakeHooks) Has(config.WebhookType) bool { return true }

func (h *fakeHooks) Call(ctx context.Context, typ config.WebhookType, succeeded bool) []HookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.count[typ]++
	n := h.count[typ]
	if n > 50 {
		panic(fmt.Sprintf("%s webhooks called 50 times: the run never stopped waiting", typ))
	}
	h.ctxErr[typ] = h.ctxErr[typ] || ctx.Err() != nil
	switch typ {
	case config.WebhookPostRollout:
		h.calls = append(h.calls, fmt.Sprintf("%s succeeded=%v", typ, succeeded))
	default:
		h.calls = append(h.calls, fmt.Sprintf("%s %d (weight %d)", typ, n, h.f.state.Routing().CanaryWeight()))
	}
	c := HookCall{Name: "hook-" + string(typ), Type: typ, URL: "http://hooks.test/" + string(typ), Status: 200, OK: true}
	if !h.answer(typ, n) {
		c.Status, c.OK, c.Error, c.Excerpt = 503, false, "answered 503 Service Unavailable: not yet", "not yet"
	}
	return []HookCall{c}
}

func allOK(config.WebhookType, int) bool { return true }

func (h *fakeHooks) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// hookedRunner is a runner on fake time with hooks and, when judge is set, metric analysis.
func hookedRunner(f *fakeTraffic, h *fakeHooks, judge func(weight, n int) (analysis.Window, error), log *bytes.Buffer) *Runner {
	var a Analysis
	if judge != nil {
		a = &scripted{f: f, judge: judge}
	}
	r := NewRunner(f, a, WriterLog(log))
	c := &clock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	r.Now, r.Hold, r.DriftInterval = c.Now, c.hold, 0
	r.Hooks = h
	return r
}

func TestWebhookGates(t *testing.T) {
	t.Parallel()
	passing := func(int, int) (analysis.Window, error) { return pass, nil }
	tests := []struct {
		name     string
		mode     config.Mode
		analysis bool
		answer   func(config.WebhookType, int) bool
		judge    func(weight, n int) (analysis.Window, error)
		vars     func(*config.Config)
		want     Outcome
		check    string
		writes   []int
		calls    []string
		polls    int // the Polls of the gate's opening call, when one opened
	}{
		{
			name: "pre-rollout failure fails the canary and moves nothing",
			mode: config.ModeProgress, analysis: true, judge: passing,
			answer: func(typ config.WebhookType, n int) bool { return typ != config.WebhookPreRollout },
			want:   CanaryFailed, check: "webhook:hook-pre-rollout", writes: nil,
			calls: []string{"confirm-rollout 1 (weight 10)", "pre-rollout 1 (weight 10)", "post-rollout succeeded=false"},
		},
		{
			name: "a progression calls every gate at its place",
			mode: config.ModeProgress, analysis: true, judge: passing, answer: allOK,
			want: Promoted, writes: []int{25, 50, 100},
			calls: []string{
				"confirm-rollout 1 (weight 10)", "pre-rollout 1 (weight 10)",
				"rollout 1 (weight 25)", "rollout 2 (weight 25)", "rollout 3 (weight 50)", "rollout 4 (weight 50)",
				"confirm-promotion 1 (weight 50)", "post-rollout succeeded=true",
			},
			polls: 1,
		},
		{
			name: "confirm-rollout is polled until it opens, before anything moves",
			mode: config.ModeProgress, analysis: true, judge: passing,
			answer: func(typ config.WebhookType, n int) bool { return typ != config.WebhookConfirmRollout || n >= 3 },
			want:   Promoted, writes: []int{25, 50, 100},
			calls: []string{
				"confirm-rollout 1 (weight 10)", "confirm-rollout 2 (weight 10)", "confirm-rollout 3 (weight 10)", "pre-rollout 1 (weight 10)",
				"rollout 1 (weight 25)", "rollout 2 (weight 25)", "rollout 3 (weight 50)", "rollout 4 (weight 50)",
				"confirm-promotion 1 (weight 50)", "post-rollout succeeded=true",
			},
			polls: 3,
		},
		{
			name: "the canary is judged while the promotion waits",
			mode: config.ModeProgress, analysis: true, judge: passing,
			answer: func(typ config.WebhookType, n int) bool { return typ != config.WebhookConfirmPromotion || n >= 3 },
			want:   Promoted, writes: []int{25, 50, 100},
			calls: []string{
				"confirm-rollout 1 (weight 10)", "pre-rollout 1 (weight 10)",
				"rollout 1 (weight 25)", "rollout 2 (weight 25)", "rollout 3 (weight 50)", "rollout 4 (weight 50)",
				"confirm-promotion 1 (weight 50)", "rollout 5 (weight 50)",
				"confirm-promotion 2 (weight 50)", "rollout 6 (weight 50)",
				"confirm-promotion 3 (weight 50)", "post-rollout succeeded=true",
			},
			polls: 3,
		},
		{
			name: "a canary failing while the promotion waits is rolled back",
			mode: config.ModeProgress, analysis: true,
			judge: func(weight, n int) (analysis.Window, error) {
				if n > 4 {
					return fail, nil
				}
				return pass, nil
			},
			answer: func(typ config.WebhookType, n int) bool { return typ != config.WebhookConfirmPromotion },
			want:   CanaryFailed, check: "success-rate", writes: []int{25, 50, 0},
			calls: []string{
				"confirm-rollout 1 (weight 10)", "pre-rollout 1 (weight 10)",
				"rollout 1 (weight 25)", "rollout 2 (weight 25)", "rollout 3 (weight 50)", "rollout 4 (weight 50)",
				"confirm-promotion 1 (weight 50)", "rollout 5 (weight 50)",
				"confirm-promotion 2 (weight 50)", "rollout 6 (weight 50)",
				"rollback 1 (weight 0)", "post-rollout succeeded=false",
			},
		},
		{
			name: "rollout webhooks failing are failed checks",
			mode: config.ModeProgress, analysis: true, judge: passing,
			answer: func(typ config.WebhookType, n int) bool { return typ != config.WebhookRollout || n == 1 },
			want:   CanaryFailed, check: "webhook:hook-rollout", writes: []int{25, 50, 0},
			calls: []string{
				"confirm-rollout 1 (weight 10)", "pre-rollout 1 (weight 10)",
				"rollout 1 (weight 25)", "rollout 2 (weight 25)", "rollout 3 (weight 50)",
				"rollback 1 (weight 0)", "post-rollout succeeded=false",
			},
		},
		{
			name:   "without metric analysis the rollout webhooks judge the holds alone",
			mode:   config.ModeProgress,
			answer: func(typ config.WebhookType, n int) bool { return typ != config.WebhookRollout || n < 3 },
			want:   CanaryFailed, check: "webhook:hook-rollout", writes: []int{25, 50, 0},
			calls: []string{
				"confirm-rollout 1 (weight 10)", "pre-rollout 1 (weight 10)",
				"rollout 1 (weight 25)", "rollout 2 (weight 25)", "rollout 3 (weight 50)", "rollout 4 (weight 50)",
				"rollback 1 (weight 0)", "post-rollout succeeded=false",
			},
		},
		{
			name: "failed notifications change nothing",
			mode: config.ModePromote,
			answer: func(typ config.WebhookType, n int) bool {
				return typ != config.WebhookPostRollout && typ != config.WebhookRollback
			},
			want: Promoted, writes: []int{100},
			calls: []string{"confirm-rollout 1 (weight 10)", "pre-rollout 1 (weight 10)", "confirm-promotion 1 (weight 10)", "post-rollout succeeded=true"},
			polls: 1,
		},
		{
			name: "rollback mode passes no gate and notifies",
			mode: config.ModeRollback, answer: allOK,
			want: RolledBack, writes: []int{0},
			calls: []string{"rollback 1 (weight 0)", "post-rollout succeeded=false"},
		},
		{
			name: "a phase that sets a weight is no end: no post-rollout",
			mode: config.ModePhase, answer: allOK, vars: func(c *config.Config) { c.Weight = 30 },
			want: WeightSet, writes: []int{30},
			calls: []string{"confirm-rollout 1 (weight 10)", "pre-rollout 1 (weight 10)", "rollout 1 (weight 30)", "rollout 2 (weight 30)"},
		},
		{
			name: "a gate that never opens ends at MESHROLL_TIMEOUT, nothing moved",
			mode: config.ModeProgress, analysis: true, judge: passing,
			answer: func(typ config.WebhookType, n int) bool { return typ != config.WebhookConfirmRollout },
			vars:   func(c *config.Config) { c.Timeout = 50 * time.Millisecond },
			want:   Failed, writes: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			h := newHooks(f, tt.answer)
			var log bytes.Buffer
			judge := tt.judge
			if !tt.analysis {
				judge = nil
			}
			r := hookedRunner(f, h, judge, &log)
			c := cfg(tt.mode, func(c *config.Config) {
				c.Steps, c.StepDuration = []int{25, 50, 100}, time.Minute
				c.OnInconclusive, c.OnCancel = config.ActionRollback, config.ActionRollback
				c.Analysis.Interval, c.Analysis.FailureThreshold = 30*time.Second, 2
				if tt.analysis {
					c.Analysis.PrometheusURL, c.Analysis.Confidence, c.Analysis.MarginFactor, c.Analysis.MarginPoints = "http://prometheus:9090", 99, 1.5, 0.2
				}
				if tt.vars != nil {
					tt.vars(c)
				}
			})
			if c.Timeout > 0 {
				// The gate's waits last until the run's real timeout ends them.
				r.Hold = func(ctx context.Context, _ time.Duration) error {
					<-ctx.Done()
					return context.Cause(ctx)
				}
			}
			res := r.Run(t.Context(), c)
			if res.Outcome != tt.want || res.FailedCheck != tt.check {
				t.Fatalf("outcome %s, failed check %q, want %s, %q: %v\n%s", res.Outcome, res.FailedCheck, tt.want, tt.check, res.Err, log.String())
			}
			if diff := cmp.Diff(tt.writes, f.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if tt.calls != nil {
				if diff := cmp.Diff(tt.calls, h.got()); diff != "" {
					t.Errorf("webhook calls (-want +got):\n%s\n%s", diff, log.String())
				}
			}
			if tt.polls > 0 && !slicesContainsPolls(res.Webhooks, tt.polls) {
				t.Errorf("no gate call with %d polls in %+v", tt.polls, res.Webhooks)
			}
		})
	}
}

func slicesContainsPolls(calls []HookCall, polls int) bool {
	for _, c := range calls {
		if c.OK && c.Polls == polls {
			return true
		}
	}
	return false
}

// While a gate waits, the log and the lock's record say which webhook is awaited.
func TestGateSaysWhoIsAwaited(t *testing.T) {
	t.Parallel()
	f, l := newFake(t), newFakeLock()
	h := newHooks(f, func(typ config.WebhookType, n int) bool { return typ != config.WebhookConfirmRollout || n >= 2 })
	var log bytes.Buffer
	r := hookedRunner(f, h, nil, &log)
	r.Lock, r.Holder = l, "https://ci.example.com/run/1"
	c := cfg(config.ModePromote, func(c *config.Config) { c.Analysis.Interval = 30 * time.Second })
	if res := r.Run(t.Context(), c); res.Outcome != Promoted {
		t.Fatalf("outcome %s: %v\n%s", res.Outcome, res.Err, log.String())
	}
	const waiting = `waiting at the confirm-rollout gate for webhook "hook-confirm-rollout"`
	if !strings.Contains(log.String(), waiting+" (http://hooks.test/confirm-rollout): answered 503 Service Unavailable: not yet; polling every 30s") {
		t.Errorf("log does not say who is awaited:\n%s", log.String())
	}
	found := false
	for _, rec := range l.history {
		found = found || rec.Doing == waiting
	}
	if !found {
		t.Errorf("the lock's record never said %q", waiting)
	}
}

// Notifications are sent after a cancel, on a context of their own.
func TestNotificationsAfterCancel(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	h := newHooks(f, allOK)
	var log bytes.Buffer
	r := hookedRunner(f, h, nil, &log)
	ctx, cancel := context.WithCancelCause(t.Context())
	r.Hold = func(ctx context.Context, d time.Duration) error {
		if len(f.writes) > 0 {
			cancel(errors.New("cancelled by SIGTERM"))
		}
		return context.Cause(ctx)
	}
	c := cfg(config.ModeProgress, func(c *config.Config) {
		c.Steps, c.StepDuration, c.OnCancel = []int{25, 100}, time.Minute, config.ActionRollback
		c.Analysis.Interval, c.Analysis.FailureThreshold = 30*time.Second, 1
	})
	res := r.Run(ctx, c)
	if res.Outcome != Cancelled {
		t.Fatalf("outcome %s: %v\n%s", res.Outcome, res.Err, log.String())
	}
	got := h.got()
	if want := []string{"rollback 1 (weight 0)", "post-rollout succeeded=false"}; !cmp.Equal(want, got[len(got)-2:]) {
		t.Errorf("calls %q, want them to end with %q", got, want)
	}
	if h.ctxErr[config.WebhookRollback] || h.ctxErr[config.WebhookPostRollout] {
		t.Errorf("a notification was called with an ended context")
	}
}

type fakeLoad struct{ started, stopped int }

func (l *fakeLoad) Start(context.Context) func() LoadStats {
	l.started++
	return func() LoadStats {
		l.stopped++
		return LoadStats{Requests: 600, Rate: 10, Summary: "600 requests at 10.0/s, 0 non-2xx"}
	}
}

// The load runs through every held step, and only there.
func TestLoadDuringHolds(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var log bytes.Buffer
	r := runner(f, &log)
	load := &fakeLoad{}
	r.Load = load
	res := r.Run(t.Context(), cfg(config.ModeProgress, func(c *config.Config) { c.Steps, c.StepDuration = []int{25, 50, 100}, time.Minute }))
	if res.Outcome != Promoted {
		t.Fatalf("outcome %s: %v", res.Outcome, res.Err)
	}
	var loads []bool
	for _, s := range res.Steps {
		loads = append(loads, s.Load != nil)
	}
	if diff := cmp.Diff([]bool{true, true, false}, loads); diff != "" {
		t.Errorf("steps with load (-want +got):\n%s", diff)
	}
	if load.started != 2 || load.stopped != 2 {
		t.Errorf("load started %d, stopped %d times; want 2 and 2", load.started, load.stopped)
	}
	if !strings.Contains(log.String(), "step 1/3: load: 600 requests at 10.0/s, 0 non-2xx") {
		t.Errorf("log lacks the load's figures:\n%s", log.String())
	}
}

type fakeSecurity struct {
	warnings []string
	err      error
	checked  int
}

func (s *fakeSecurity) Check(context.Context) ([]string, error) {
	s.checked++
	return s.warnings, s.err
}

func TestSecurityPreflight(t *testing.T) {
	t.Parallel()
	gap := traffic.Preflightf(traffic.ErrForbidden, "AuthorizationPolicy prod/reviews-v1 protects stable but not the canary")
	tests := []struct {
		name    string
		mode    config.Mode
		sec     fakeSecurity
		want    Outcome
		checked int
	}{
		{name: "a warning lets the run go on", mode: config.ModePromote, sec: fakeSecurity{warnings: []string{"policy x misses the canary"}}, want: Promoted, checked: 1},
		{name: "a failed check stops it before any write", mode: config.ModePromote, sec: fakeSecurity{err: gap}, want: Invalid, checked: 1},
		{name: "a rollback is never stopped by it", mode: config.ModeRollback, sec: fakeSecurity{err: gap}, want: RolledBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			var log bytes.Buffer
			r := runner(f, &log)
			sec := tt.sec
			r.Security = &sec
			res := r.Run(t.Context(), cfg(tt.mode, nil))
			if res.Outcome != tt.want || sec.checked != tt.checked {
				t.Fatalf("outcome %s after %d checks, want %s after %d: %v", res.Outcome, sec.checked, tt.want, tt.checked, res.Err)
			}
			if diff := cmp.Diff(tt.sec.warnings, res.Warnings); tt.checked > 0 && diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if tt.want == Invalid && len(f.writes) > 0 {
				t.Errorf("wrote %v after a failed security preflight", f.writes)
			}
		})
	}
}
