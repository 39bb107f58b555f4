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
)

// clock is fake time: Hold advances it instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) hold(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.now = c.now.Add(d)
	}
	return nil
}

// scripted is an Analysis whose windows a test writes: judge gets the canary weight in the
// cluster and the 1-based evaluation number.
type scripted struct {
	f         *fakeTraffic
	preflight error
	judge     func(weight, n int) (analysis.Window, error)
	at        []time.Time
	// counts, when set, is what both versions served in the n-th counted interval (0: up to
	// the step's start); else nothing was served.
	counts  func(weight, n int) (analysis.Counts, error)
	counted int
}

func (s *scripted) Count(_ context.Context, _ analysis.Snapshot, at time.Time) (analysis.Snapshot, analysis.Counts, error) {
	if s.counts == nil {
		return analysis.Snapshot{At: at}, analysis.Counts{}, nil
	}
	c, err := s.counts(s.f.state.Routing().CanaryWeight(), s.counted)
	s.counted++
	if err != nil {
		return analysis.Snapshot{}, analysis.Counts{}, err
	}
	return analysis.Snapshot{At: at}, c, nil
}

func (s *scripted) Preflight(context.Context) error { return s.preflight }

func (s *scripted) Evaluate(ctx context.Context, at time.Time) (analysis.Window, error) {
	s.at = append(s.at, at)
	w, err := s.judge(s.f.state.Routing().CanaryWeight(), len(s.at))
	w.At = at
	return w, err
}

func value(v float64) *float64 { return &v }

func window(verdicts ...analysis.Verdict) analysis.Window {
	var w analysis.Window
	for i, v := range verdicts {
		r := analysis.Result{Check: []string{"request-volume", "success-rate", "latency-p99"}[i], Verdict: v, Threshold: "≥ 99%", Canary: value(100), Stable: value(100)}
		if v == analysis.VerdictFail {
			r.Canary, r.Message = value(80), "canary success rate 80% is below 99%"
		}
		if v == analysis.VerdictNoData {
			r.Canary, r.Message = nil, "the canary served 3 requests in the last 30s, fewer than the 20 needed to judge a window"
		}
		if v == analysis.VerdictError {
			r.Canary, r.Message = nil, `query "x" returned 2 series; aggregate it to one`
		}
		w.Results = append(w.Results, r)
	}
	return w
}

var (
	pass   = window(analysis.VerdictPass, analysis.VerdictPass)
	fail   = window(analysis.VerdictPass, analysis.VerdictFail)
	noData = window(analysis.VerdictNoData, analysis.VerdictNoData)
	broken = window(analysis.VerdictPass, analysis.VerdictError)
	down   = fmt.Errorf("failed to evaluate the canary: %w: connection refused", analysis.ErrUnavailable)
)

func analyzedCfg(mode config.Mode, vars func(*config.Config)) config.Config {
	return cfg(mode, func(c *config.Config) {
		c.Steps, c.StepDuration = []int{25, 50, 100}, time.Minute
		c.OnInconclusive, c.OnCancel = config.ActionRollback, config.ActionRollback
		c.Analysis = config.Analysis{PrometheusURL: "http://prometheus:9090", Interval: 30 * time.Second, FailureThreshold: 2, Confidence: 99, MarginFactor: 1.5, MarginPoints: 0.2}
		if vars != nil {
			vars(c)
		}
	})
}

func TestAnalysis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         config.Config
		preflight   error
		judge       func(weight, n int) (analysis.Window, error)
		want        Outcome
		wantWrites  []int
		wantWindows []int // windows per written step, in order
		wantReason  string
		wantCheck   string
	}{
		{
			name:  "healthy canary promoted, two windows per held step",
			cfg:   analyzedCfg(config.ModeProgress, nil),
			judge: func(int, int) (analysis.Window, error) { return pass, nil },
			want:  Promoted, wantWrites: []int{25, 50, 100}, wantWindows: []int{2, 2, 0},
		},
		{
			name: "failing from step 2: rolled back, step 3 never reached",
			cfg:  analyzedCfg(config.ModeProgress, nil),
			judge: func(w, _ int) (analysis.Window, error) {
				if w >= 50 {
					return fail, nil
				}
				return pass, nil
			},
			want: CanaryFailed, wantWrites: []int{25, 50, 0}, wantWindows: []int{2, 2, 0}, wantCheck: "success-rate",
			wantReason: "check success-rate failed: canary 80, stable 100, threshold ≥ 99%: canary success rate 80% is below 99% (2 failed windows, MESHROLL_FAILURE_THRESHOLD=2)",
		},
		{
			name: "threshold 1: rolled back after the first failed window",
			cfg:  analyzedCfg(config.ModeProgress, func(c *config.Config) { c.Analysis.FailureThreshold = 1 }),
			judge: func(w, _ int) (analysis.Window, error) {
				if w >= 50 {
					return fail, nil
				}
				return pass, nil
			},
			want: CanaryFailed, wantWrites: []int{25, 50, 0}, wantWindows: []int{2, 1, 0}, wantCheck: "success-rate",
		},
		{
			name: "failed windows count over the whole run",
			cfg:  analyzedCfg(config.ModeProgress, nil),
			judge: func(_, n int) (analysis.Window, error) {
				if n == 1 || n == 4 {
					return fail, nil
				}
				return pass, nil
			},
			want: CanaryFailed, wantWrites: []int{25, 50, 0}, wantWindows: []int{2, 2, 0}, wantCheck: "success-rate",
		},
		{
			name:  "no data: inconclusive, back to stable",
			cfg:   analyzedCfg(config.ModeProgress, nil),
			judge: func(int, int) (analysis.Window, error) { return noData, nil },
			want:  Inconclusive, wantWrites: []int{25, 0}, wantWindows: []int{2, 0},
			wantReason: "inconclusive: step 1/3 held 1m0s without one judged window (the canary served 3 requests",
		},
		{
			name:  "no data with MESHROLL_ON_INCONCLUSIVE=hold: weights stay",
			cfg:   analyzedCfg(config.ModeProgress, func(c *config.Config) { c.OnInconclusive = config.ActionHold }),
			judge: func(int, int) (analysis.Window, error) { return noData, nil },
			want:  Inconclusive, wantWrites: []int{25}, wantWindows: []int{2},
		},
		{
			name: "one judged window makes a step conclusive",
			cfg:  analyzedCfg(config.ModeProgress, nil),
			judge: func(_, n int) (analysis.Window, error) {
				if n%2 == 1 {
					return noData, nil
				}
				return pass, nil
			},
			want: Promoted, wantWrites: []int{25, 50, 100}, wantWindows: []int{2, 2, 0},
		},
		{
			name:  "Prometheus down: failed, back to stable",
			cfg:   analyzedCfg(config.ModeProgress, nil),
			judge: func(int, int) (analysis.Window, error) { return analysis.Window{}, down },
			want:  Failed, wantWrites: []int{25, 0}, wantWindows: []int{0, 0},
			wantReason: "metric analysis failed in 2 windows in a row (MESHROLL_FAILURE_THRESHOLD=2), so the canary cannot be judged",
		},
		{
			name: "Prometheus down once: carries on",
			cfg:  analyzedCfg(config.ModeProgress, nil),
			judge: func(_, n int) (analysis.Window, error) {
				if n == 2 {
					return analysis.Window{}, down
				}
				return pass, nil
			},
			want: Promoted, wantWrites: []int{25, 50, 100}, wantWindows: []int{1, 2, 0},
		},
		{
			// A threshold above the windows of a step cannot be reached before the step ends:
			// Prometheus, not the canary's traffic, left it unjudged.
			name:  "Prometheus down, one window per step: failed, not inconclusive",
			cfg:   analyzedCfg(config.ModeProgress, func(c *config.Config) { c.StepDuration = 30 * time.Second }),
			judge: func(int, int) (analysis.Window, error) { return analysis.Window{}, down },
			want:  Failed, wantWrites: []int{25, 0}, wantWindows: []int{0, 0},
			wantReason: "step 1/3 held 30s without one judged window because metric analysis could not be evaluated: failed to evaluate the canary: prometheus unavailable",
		},
		{
			name:  "a query failing, one window per step: failed, not inconclusive",
			cfg:   analyzedCfg(config.ModeProgress, func(c *config.Config) { c.StepDuration = 30 * time.Second }),
			judge: func(int, int) (analysis.Window, error) { return broken, nil },
			want:  Failed, wantWrites: []int{25, 0}, wantWindows: []int{1, 0},
			wantReason: "step 1/3 held 30s without one judged window because metric analysis could not be evaluated: check success-rate could not be evaluated",
		},
		{
			name: "Prometheus down, then no data: inconclusive",
			cfg:  analyzedCfg(config.ModeProgress, nil),
			judge: func(_, n int) (analysis.Window, error) {
				if n == 1 {
					return analysis.Window{}, down
				}
				return noData, nil
			},
			want: Inconclusive, wantWrites: []int{25, 0}, wantWindows: []int{1, 0},
			wantReason: "inconclusive: step 1/3 held 1m0s without one judged window (the canary served 3 requests",
		},
		{
			name:  "a query keeps failing: failed, back to stable",
			cfg:   analyzedCfg(config.ModeProgress, nil),
			judge: func(int, int) (analysis.Window, error) { return broken, nil },
			want:  Failed, wantWrites: []int{25, 0}, wantWindows: []int{2, 0},
			wantReason: `check success-rate could not be evaluated: query "x" returned 2 series`,
		},
		{
			name:  "phase judged and failing: rolled back",
			cfg:   analyzedCfg(config.ModePhase, func(c *config.Config) { c.Steps, c.Weight = nil, 30 }),
			judge: func(int, int) (analysis.Window, error) { return fail, nil },
			want:  CanaryFailed, wantWrites: []int{30, 0}, wantWindows: []int{2, 0}, wantCheck: "success-rate",
		},
		{
			name:  "phase healthy: weight set after the hold",
			cfg:   analyzedCfg(config.ModePhase, func(c *config.Config) { c.Steps, c.Weight = nil, 30 }),
			judge: func(int, int) (analysis.Window, error) { return pass, nil },
			want:  WeightSet, wantWrites: []int{30}, wantWindows: []int{2},
		},
		{
			name:  "promote is not held",
			cfg:   analyzedCfg(config.ModePromote, func(c *config.Config) { c.Steps = nil }),
			judge: func(int, int) (analysis.Window, error) { return fail, nil },
			want:  Promoted, wantWrites: []int{100}, wantWindows: []int{0},
		},
		{
			name:      "a rejected query at preflight: invalid, nothing written",
			cfg:       analyzedCfg(config.ModeProgress, nil),
			preflight: fmt.Errorf("check x (canary): %w: parse error", analysis.ErrQuery),
			want:      Invalid, wantReason: "metric analysis preflight failed: check x (canary): invalid query: parse error",
		},
		{
			name:      "Prometheus down at preflight: failed, nothing written",
			cfg:       analyzedCfg(config.ModeProgress, nil),
			preflight: down,
			want:      Failed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			c := &clock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
			a := &scripted{f: f, preflight: tt.preflight, judge: tt.judge}
			var log bytes.Buffer
			r := NewRunner(f, a, WriterLog(&log))
			r.Now, r.Hold = c.Now, c.hold
			res := r.Run(t.Context(), tt.cfg)
			if res.Outcome != tt.want {
				t.Fatalf("outcome %s, want %s (err %v)\n%s", res.Outcome, tt.want, res.Err, log.String())
			}
			if diff := cmp.Diff(tt.wantWrites, f.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			var windows []int
			for _, s := range res.Steps {
				windows = append(windows, len(s.Windows))
			}
			if diff := cmp.Diff(tt.wantWindows, windows); diff != "" {
				t.Errorf("windows per step (-want +got):\n%s", diff)
			}
			// The step during whose hold the run ended says why; no other step does.
			for i, st := range res.Steps {
				lastSet := st.Action == ActionSet && (i == len(res.Steps)-1 || res.Steps[i+1].Action == ActionRollback)
				switch {
				case lastSet && res.Outcome.ExitCode() != 0 && (st.Error == "" || !strings.Contains(res.Reason, st.Error)):
					t.Errorf("step %d: error %q, want the reason %q", st.Index, st.Error, res.Reason)
				case (!lastSet || res.Outcome.ExitCode() == 0) && st.Error != "":
					t.Errorf("step %d (%s): error %q on a step that did not end the run", st.Index, st.Action, st.Error)
				}
			}
			if !strings.Contains(res.Reason, tt.wantReason) {
				t.Errorf("reason %q, want it to contain %q", res.Reason, tt.wantReason)
			}
			if res.FailedCheck != tt.wantCheck {
				t.Errorf("failed check %q, want %q", res.FailedCheck, tt.wantCheck)
			}
			if want := tt.cfg.Mode != config.ModePromote; res.Analysis != want {
				t.Errorf("Result.Analysis %v, want %v", res.Analysis, want)
			}
			// Windows are judged every interval from the step's start, never in between.
			for _, at := range a.at {
				if off := at.Sub(c.now.Truncate(time.Hour)); off%(30*time.Second) != 0 {
					t.Errorf("window evaluated at %s, not on an interval boundary", at)
				}
			}
		})
	}
}

func TestAnalysisWindowTableInLog(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c := &clock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	a := &scripted{f: f, judge: func(int, int) (analysis.Window, error) { return fail, nil }}
	var log bytes.Buffer
	r := NewRunner(f, a, WriterLog(&log))
	r.Now, r.Hold = c.Now, c.hold
	r.Run(t.Context(), analyzedCfg(config.ModeProgress, nil))
	for _, want := range []string{
		"step 1/3: holding 1m0s, judging the canary every 30s",
		"step 1/3 window 1 at 12:00:30:",
		"  check           canary  stable  threshold  verdict",
		"  success-rate    80      100     ≥ 99%      fail     canary success rate 80% is below 99%",
		"canary-failed: returning all traffic to v1",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestNoAnalysisIsLoud(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	res := runner(newFake(t), &log).Run(t.Context(), cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{50} }))
	if res.Analysis || !strings.Contains(log.String(), "NOTE: no metric analysis (neither MESHROLL_PROMETHEUS_URL nor MESHROLL_PROMETHEUS_SERVICE is set)") {
		t.Errorf("analysis %v, log:\n%s", res.Analysis, log.String())
	}
}

// A cancel during a judged hold returns traffic to stable, unless MESHROLL_ON_CANCEL=leave.
func TestAnalysisCancel(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		onCancel   config.Action
		wantWrites []int
	}{
		{config.ActionRollback, []int{25, 0}},
		{config.ActionLeave, []int{25}},
	} {
		t.Run(string(tt.onCancel), func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			ctx, cancel := context.WithCancel(t.Context())
			c := &clock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
			a := &scripted{f: f, judge: func(_, n int) (analysis.Window, error) {
				cancel() // a SIGTERM arrives while the first window is evaluated
				return analysis.Window{}, context.Canceled
			}}
			var log bytes.Buffer
			r := NewRunner(f, a, WriterLog(&log))
			r.Now, r.Hold = c.Now, c.hold
			res := r.Run(ctx, analyzedCfg(config.ModeProgress, func(c *config.Config) { c.OnCancel = tt.onCancel }))
			if res.Outcome != Cancelled || !errors.Is(res.Err, context.Canceled) {
				t.Fatalf("outcome %s (err %v), want cancelled\n%s", res.Outcome, res.Err, log.String())
			}
			if diff := cmp.Diff(tt.wantWrites, f.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
		})
	}
}
