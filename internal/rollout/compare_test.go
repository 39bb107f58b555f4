package rollout

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
)

// served is one window in which the mesh served perWindow requests, split by the canary's
// weight, with the given 5xx rates and shares of requests slower than 100 ms (the histogram
// has boundaries 100 and 250 ms).
func served(weight int, perWindow int64, canaryErr, stableErr, canarySlow, stableSlow float64) analysis.Counts {
	tally := func(n int64, errRate, slow float64) analysis.Tally {
		s := int64(math.Round(float64(n) * slow))
		return analysis.Tally{Requests: n, Errors: int64(math.Round(float64(n) * errRate)),
			Within: map[float64]int64{100: n - s, 250: n, math.Inf(1): n}}
	}
	nc := perWindow * int64(weight) / 100
	return analysis.Counts{Canary: tally(nc, canaryErr, canarySlow), Stable: tally(perWindow-nc, stableErr, stableSlow)}
}

// The sequential test judges the canary against stable on counts: a canary six times as
// failing, or much slower, is rolled back at once with the evidence in the reason; identical
// versions at a 1.5 % 5xx rate are promoted (an absolute 99 % threshold would have rolled
// them back); and with early completion, a healthy canary ends its steps at the minimum.
func TestComparisons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		vars       func(*config.Config)
		counts     func(weight, n int) (analysis.Counts, error)
		want       Outcome
		wantCheck  string
		wantWrites []int
		wantReason []string
		wantLog    string
	}{
		{name: "identical versions at 1.5 % 5xx are promoted",
			counts: func(w, n int) (analysis.Counts, error) { return served(w, 3000, 0.015, 0.015, 0.005, 0.005), nil },
			want:   Promoted, wantWrites: []int{25, 50, 100}},
		{name: "a canary six times as failing is rolled back at once",
			counts: func(w, n int) (analysis.Counts, error) { return served(w, 3000, 0.06, 0.01, 0.005, 0.005), nil },
			want:   CanaryFailed, wantCheck: "5xx", wantWrites: []int{25, 0},
			wantReason: []string{"the canary is worse than stable: 5xx 6 % vs 1 %", "worse with 99"}},
		{name: "a slower canary is rolled back without a latency threshold",
			counts: func(w, n int) (analysis.Counts, error) {
				if n == 0 { // the counters two intervals before the step: only a starting point
					return served(0, 100000, 0, 0, 0, 0.01), nil
				}
				return served(w, 3000, 0.001, 0.001, 0.2, 0.01), nil
			},
			want: CanaryFailed, wantCheck: "slower than 100 ms", wantWrites: []int{25, 0},
			wantReason: []string{"slower than 100 ms 20 % vs 1 %"}},
		{name: "with early completion a healthy canary ends each step at the minimum",
			vars:   func(c *config.Config) { c.Analysis.MinStepDuration = time.Minute; c.StepDuration = 10 * time.Minute },
			counts: func(w, n int) (analysis.Counts, error) { return served(w, 60000, 0.001, 0.001, 0.001, 0.001), nil },
			want:   Promoted, wantWrites: []int{25, 50, 100}, wantLog: "step 1/3: ending the step early: the canary is within the margin of stable (1.5× or +0.2 points, whichever is larger) with 99% confidence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			c := &clock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
			a := &scripted{f: f, judge: func(int, int) (analysis.Window, error) { return pass, nil }, counts: tt.counts}
			var log bytes.Buffer
			r := NewRunner(f, a, WriterLog(&log))
			r.Now, r.Hold = c.Now, c.hold
			res := r.Run(t.Context(), analyzedCfg(config.ModeProgress, tt.vars))
			if res.Outcome != tt.want || res.FailedCheck != tt.wantCheck {
				t.Fatalf("outcome %s, failed check %q; want %s, %q (err %v)\n%s", res.Outcome, res.FailedCheck, tt.want, tt.wantCheck, res.Err, log.String())
			}
			if diff := cmp.Diff(tt.wantWrites, f.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			for _, w := range tt.wantReason {
				if !strings.Contains(res.Reason, w) {
					t.Errorf("reason lacks %q: %s", w, res.Reason)
				}
			}
			if !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, log.String())
			}
			if tt.wantLog != "" {
				for _, s := range res.Steps[:2] {
					if held := s.HeldUntil.Sub(s.StartedAt); held != time.Minute {
						t.Errorf("step %d held %s, want the minimum, 1m", s.Index, held)
					}
				}
			}
			first := res.Steps[0].Windows[0]
			if first.Counts == nil || len(first.Comparisons) == 0 || first.Comparisons[0].Name != "5xx" {
				t.Errorf("the first window carries no counts or comparisons: %+v", first)
			}
		})
	}
}
