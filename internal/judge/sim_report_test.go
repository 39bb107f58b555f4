package judge

import (
	"flag"
	"fmt"
	"math"
	"strings"
	"testing"
)

var simRollouts = flag.Int("judge.rollouts", 2000, "rollouts per cell of BenchmarkJudgeSimulation")

// simAlpha is 1 − MESHROLL_CONFIDENCE's default of 99 %.
const simAlpha = 0.01

func oldJudgeFor() judge { return &oldJudge{} }
func newJudgeFor() judge { return newNewJudge(simAlpha, nil) }

// binomialTolerance is how far above p the share of n independent runs may come out when the
// true probability is at most p: three standard deviations of the binomial, exceeded by
// chance in about 0.1 % of seeds (the count is nearly normal at these sizes).
func binomialTolerance(p float64, n int) float64 { return 3 * math.Sqrt(p*(1-p)/float64(n)) }

// Identical versions at 100 rps and 1 % 5xx, where the old judge rolled back most rollouts:
// the new one rolls back at most α of them. 2,000 rollouts from a fixed seed.
func TestFalseRollbackBound(t *testing.T) {
	t.Parallel()
	const n = 2000
	sv := service{rps: 100, stable5xx: 0.01, canary5xx: 0.01, slower: 1}
	got := simulate(12, n, sv, defaultSchedule(), newJudgeFor)
	if limit := simAlpha + binomialTolerance(simAlpha, n); got.rollbackRate() > limit {
		t.Errorf("identical versions rolled back in %d of %d rollouts (%.2f %%), above α = %g plus tolerance (%.2f %%)",
			got.rolledBack, n, 100*got.rollbackRate(), simAlpha, 100*limit)
	}
}

// A canary exactly at the margin (0.75 % against 0.5 %: 1.5×) at 1,000 rps, where the
// close-enough test has the most data to be wrong with, with rollbacks off so that only that
// test decides: it passes a step early in at most α of rollouts.
func TestEarlyPassBound(t *testing.T) {
	t.Parallel()
	const n = 1000
	sv := service{rps: 1000, stable5xx: 0.005, canary5xx: 0.0075, slower: 1}
	got := simulate(13, n, sv, earlySchedule(), closeOnlyJudge)
	if limit := simAlpha + binomialTolerance(simAlpha, n); got.earlyRate() > limit {
		t.Errorf("a canary at the margin passed a step early in %d of %d rollouts (%.2f %%), above α = %g plus tolerance (%.2f %%)",
			got.early, n, 100*got.earlyRate(), simAlpha, 100*limit)
	}
}

// The test's power where it must have it: a canary at twice stable's 5xx rate, or 50 %
// slower, at 1,000 rps is rolled back in almost every rollout.
func TestDetection(t *testing.T) {
	t.Parallel()
	for name, sv := range map[string]service{
		"5xx 2×":  {rps: 1000, stable5xx: 0.005, canary5xx: 0.01, slower: 1},
		"p99 +50": {rps: 1000, stable5xx: 0.005, canary5xx: 0.005, slower: 1.5},
	} {
		if got := simulate(14, 200, sv, defaultSchedule(), newJudgeFor); got.rollbackRate() < 0.95 {
			t.Errorf("%s: rolled back in %.1f %% of rollouts, want ≥ 95 %%", name, 100*got.rollbackRate())
		}
	}
}

// earlySchedule is the default schedule with MESHROLL_MIN_STEP_DURATION=30s.
func earlySchedule() schedule {
	s := defaultSchedule()
	s.minWindows = 1
	return s
}

func earlyJudge() judge {
	m := DefaultMargin()
	return newNewJudge(simAlpha, &m)
}

func closeOnlyJudge() judge {
	m := DefaultMargin()
	j := newNewJudge(simAlpha, &m)
	j.noRollback = true
	return j
}

var simRates = []float64{20, 100, 1000}

// BenchmarkJudgeSimulation is issue 12's proof: simulated rollouts (default steps 10/25/50, 1
// minute each, 30 s windows; Poisson traffic, binomial 5xx, log-normal latencies) judged by
// the old thresholds and by the sequential test, -judge.rollouts of them per cell. It logs
// the Markdown table and reports the figures the issue sets targets for. Every cell has its
// own seed: the table is the same on every machine.
//
//	go test ./internal/judge/ -run '^$' -bench JudgeSimulation -benchtime 1x -v -judge.rollouts=10000
//
// (-v: without it the testing package keeps only the first 10 lines of the table.)
func BenchmarkJudgeSimulation(b *testing.B) {
	n := *simRollouts
	var table strings.Builder
	var worstFalse, promotion, earlyAtMargin float64
	for b.Loop() {
		table.Reset()
		worstFalse = falseRollbackTable(&table, n)
		detectionTable(&table, n)
		promotion, earlyAtMargin = earlyTable(&table, n)
	}
	b.ReportMetric(worstFalse, "max-false-rollback")
	b.ReportMetric(promotion, "promotion-fraction")
	b.ReportMetric(earlyAtMargin, "early-pass-at-margin")
	b.Log("\n" + table.String())
}

// seedOf gives every cell of the tables its own stream.
func seedOf(table, row, col int) uint64 { return uint64(table*10000 + row*100 + col) }

func falseRollbackTable(w *strings.Builder, n int) (worstNew float64) {
	fmt.Fprintf(w, "False rollbacks, identical versions (old judge → new judge, α = %g split over 5xx and latency), %s rollouts each\n\n", simAlpha, thousands(int64(n)))
	fmt.Fprintln(w, "| baseline 5xx | 20 rps | 100 rps | 1,000 rps |\n|---|---|---|---|")
	for i, base := range []float64{0.001, 0.005, 0.01, 0.02} {
		fmt.Fprintf(w, "| %s |", percent(base))
		for j, rps := range simRates {
			sv := service{rps: rps, stable5xx: base, canary5xx: base, slower: 1}
			old := simulate(seedOf(1, i, j), n, sv, defaultSchedule(), oldJudgeFor)
			nw := simulate(seedOf(2, i, j), n, sv, defaultSchedule(), newJudgeFor)
			worstNew = max(worstNew, nw.rollbackRate())
			fmt.Fprintf(w, " %s → %s |", share(old.rollbackRate()), share(nw.rollbackRate()))
		}
		fmt.Fprintln(w)
	}
	return worstNew
}

func detectionTable(w *strings.Builder, n int) {
	fmt.Fprintf(w, "\nDetection: rolled back, and median time to rollback, stable at 0.5 %% 5xx and p99 161 ms (old judge → new judge)\n\n")
	fmt.Fprintln(w, "| canary | 20 rps | 100 rps | 1,000 rps |\n|---|---|---|---|")
	for i, c := range []struct {
		name     string
		canary   float64
		slowdown float64
	}{
		{"5xx 1.5×", 0.0075, 1}, {"5xx 2×", 0.01, 1}, {"5xx 5×", 0.025, 1},
		{"p99 +20 %", 0.005, 1.2}, {"p99 +50 %", 0.005, 1.5},
	} {
		fmt.Fprintf(w, "| %s |", c.name)
		for j, rps := range simRates {
			sv := service{rps: rps, stable5xx: 0.005, canary5xx: c.canary, slower: c.slowdown}
			old := simulate(seedOf(3, i, j), n, sv, defaultSchedule(), oldJudgeFor)
			nw := simulate(seedOf(4, i, j), n, sv, defaultSchedule(), newJudgeFor)
			fmt.Fprintf(w, " %s → %s |", detection(old), detection(nw))
		}
		fmt.Fprintln(w)
	}
}

func earlyTable(w *strings.Builder, n int) (promotion, earlyAtMargin float64) {
	fmt.Fprintf(w, "\nEarly completion (MESHROLL_MIN_STEP_DURATION=30s, margin 1.5× or +0.2 points, α = %g)\n\n", simAlpha)
	fmt.Fprintln(w, "| canary | 20 rps | 100 rps | 1,000 rps |\n|---|---|---|---|")
	rows := []struct {
		name      string
		stable    float64
		canary    float64
		judge     func() judge
		promotion bool // report the median time to promotion, else the share passed early
	}{
		{"healthy, 0.5 % 5xx: median time to promotion / fixed schedule", 0.005, 0.005, earlyJudge, true},
		{"healthy, 0.1 % 5xx: median time to promotion / fixed schedule", 0.001, 0.001, earlyJudge, true},
		{"at the margin (0.5 % → 0.75 %): runs with a step passed early", 0.005, 0.0075, earlyJudge, false},
		{"same, rollback off (the close-enough test alone)", 0.005, 0.0075, closeOnlyJudge, false},
		{"at the margin's floor (0.1 % → 0.3 %), rollback off", 0.001, 0.003, closeOnlyJudge, false},
	}
	for i, r := range rows {
		fmt.Fprintf(w, "| %s |", r.name)
		for j, rps := range simRates {
			sv := service{rps: rps, stable5xx: r.stable, canary5xx: r.canary, slower: 1}
			got := simulate(seedOf(5, i, j), n, sv, earlySchedule(), r.judge)
			v := got.earlyRate()
			if r.promotion {
				v = median(got.promotionSeconds) / earlySchedule().seconds()
				fmt.Fprintf(w, " %.2f (%s early) |", v, share(got.earlyRate()))
			} else {
				fmt.Fprintf(w, " %s |", share(v))
			}
			switch {
			case rps == 1000 && i == 0:
				promotion = v
			case rps == 1000 && i == 3:
				earlyAtMargin = v
			}
		}
		fmt.Fprintln(w)
	}
	return promotion, earlyAtMargin
}

// share writes a proportion of rollouts as a percentage with one decimal.
func share(p float64) string { return fmt.Sprintf("%.1f %%", 100*p) }

// detection writes the share rolled back and the median time to rollback.
func detection(t *tally) string {
	if t.rolledBack == 0 {
		return share(0)
	}
	return fmt.Sprintf("%s in %.0f s", share(t.rollbackRate()), median(t.rollbackSeconds))
}
