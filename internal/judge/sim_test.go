package judge

import (
	"math"
	"math/rand/v2"
	"slices"
)

// The simulated rollouts of issue 12's proof. Traffic is Poisson, each request fails
// independently (binomial 5xx) and latencies are log-normal; the judges see exactly the counts
// meshroll would read from Istio's counters at the window's edges.

// service is one simulated service: its traffic, the stable version's behaviour and how the
// canary differs.
type service struct {
	rps       float64
	stable5xx float64 // probability that a stable request fails
	canary5xx float64
	// slower multiplies every canary latency: 1.2 is p99 (and every quantile) +20 %.
	slower float64
}

// schedule is the rollout's plan: meshroll's defaults are steps 10/25/50 (100 is the
// promotion, not held), 1 minute each, a 30 s analysis window.
type schedule struct {
	shares      []float64
	window      float64 // seconds
	stepWindows int     // windows in a full step
	// minWindows > 0 turns early completion on: after that many windows a step may end as
	// soon as every comparison is close enough (MESHROLL_MIN_STEP_DURATION = minWindows windows).
	minWindows int
}

func defaultSchedule() schedule {
	return schedule{shares: []float64{0.10, 0.25, 0.50}, window: 30, stepWindows: 2}
}

// seconds is the length of the fixed schedule.
func (s schedule) seconds() float64 { return float64(len(s.shares)*s.stepWindows) * s.window }

// Latencies are log-normal with a 40 ms median and σ = 0.6 (p99 ≈ 161 ms) for stable.
const (
	latencyMedian = 40.0
	latencySigma  = 0.6
)

// histogramBounds are Istio's default bucket boundaries from 100 ms up. The lower ones hold at
// least a third of the requests above them (never nearest the p99) and are left out of the
// simulated histogram to save sampling.
var histogramBounds = []float64{100, 250, 500, 1000, 2500, 5000, 10000}

// histogramLes are the le labels of the simulated histogram: histogramBounds and +Inf.
var histogramLes = append(slices.Clone(histogramBounds), math.Inf(1))

// slowerThan is the probability that a request of a version whose latencies are scaled by
// scale takes longer than le milliseconds.
func slowerThan(le, scale float64) float64 {
	z := (math.Log(le/scale) - math.Log(latencyMedian)) / latencySigma
	return 0.5 * math.Erfc(z/math.Sqrt2)
}

// window is what a judge learns at the end of one analysis window.
type window struct {
	errors Counts // 5xx
	slow   Counts // requests slower than the step's latency boundary
	// canaryOver500 is the canary's requests slower than 500 ms, for the old p99 ≤ 500 ms check.
	canaryOver500 int64
	// stableHistogram is stable's requests at or below each of histogramLes, for choosing the
	// next step's boundary.
	stableHistogram []float64
}

// draw simulates one window at the canary's share with the latency boundary b (one of
// histogramBounds). Request counts are independent Poisson draws, the same in law as splitting
// one Poisson stream.
func (sv service) draw(r *rand.Rand, share, seconds, b float64) window {
	nc := poisson(r, sv.rps*share*seconds)
	ns := poisson(r, sv.rps*(1-share)*seconds)
	w := window{errors: Counts{
		CanaryRequests: nc, StableRequests: ns,
		CanaryBad: binomial(r, nc, sv.canary5xx), StableBad: binomial(r, ns, sv.stable5xx),
	}}
	w.stableHistogram = make([]float64, len(histogramBounds)+1)
	w.stableHistogram[len(histogramBounds)] = float64(ns) // le="+Inf"
	above, prevTail := ns, 1.0
	var stableAboveB int64
	for i, le := range histogramBounds {
		tail := slowerThan(le, 1)
		above = binomial(r, above, tail/prevTail)
		prevTail = tail
		w.stableHistogram[i] = float64(ns - above)
		if le == b {
			stableAboveB = above
		}
	}
	// The canary's two counts are nested: requests over the higher bound are among those over
	// the lower one.
	lo, hi := min(b, 500), max(b, 500)
	tailLo, tailHi := slowerThan(lo, sv.slower), slowerThan(hi, sv.slower)
	overLo := binomial(r, nc, tailLo)
	overHi := binomial(r, overLo, tailHi/tailLo)
	overB, over500 := overLo, overHi
	if b > 500 {
		overB, over500 = overHi, overLo
	}
	w.canaryOver500 = over500
	w.slow = Counts{CanaryRequests: nc, StableRequests: ns, CanaryBad: overB, StableBad: stableAboveB}
	return w
}

// judge decides after each window: roll back now, or (with early completion) the step may end.
type judge interface {
	observe(w window) (rollback, close bool)
}

// oldJudge is meshroll's judge before issue 12: a window with at least 20 canary requests fails
// when the canary's success rate is below 99 % or its p99 above 500 ms; the second failed
// window of the run rolls back.
type oldJudge struct{ failed int }

func (j *oldJudge) observe(w window) (bool, bool) {
	n := w.errors.CanaryRequests
	if n < 20 {
		return false, false
	}
	// histogram_quantile's p99 is above 500 ms exactly when more than 1 % of the requests are.
	if float64(n-w.errors.CanaryBad) < 0.99*float64(n) || float64(w.canaryOver500) > 0.01*float64(n) {
		j.failed++
	}
	return j.failed >= 2, false
}

// newJudge is the sequential test on 5xx and on slow requests, α split over the two for
// rolling back, each close-enough test at the whole α.
type newJudge struct {
	errors, slow *Test
	noRollback   bool // measures the close-enough test alone
}

func newNewJudge(alpha float64, margin *Margin) *newJudge {
	j := &newJudge{errors: NewTest(Split(alpha, 2)), slow: NewTest(Split(alpha, 2))}
	if margin != nil {
		j.errors.WithMargin(*margin, alpha)
		j.slow.WithMargin(*margin, alpha)
	}
	return j
}

func (j *newJudge) observe(w window) (bool, bool) {
	j.errors.Observe(w.errors)
	j.slow.Observe(w.slow)
	rollback := !j.noRollback && (j.errors.Worse() || j.slow.Worse())
	return rollback, j.errors.CloseEnough() && j.slow.CloseEnough()
}

// outcome is how one rollout ended.
type outcome struct {
	rolledBack bool
	seconds    float64 // until the rollback or the promotion
	earlySteps int     // steps that ended before their full length
}

// rollout runs one rollout of the schedule against the service with the judge. The latency
// boundary of each step is the histogram bound nearest stable's p99 in the window before it
// (for the first step, a window with all traffic on stable).
func rollout(r *rand.Rand, sv service, sc schedule, j judge) outcome {
	hist := sv.draw(r, 0, sc.window, histogramBounds[0]).stableHistogram
	var out outcome
	for _, share := range sc.shares {
		b, ok := Boundary(histogramLes, hist, 0.99)
		if !ok {
			b = histogramBounds[0]
		}
		for n := 1; n <= sc.stepWindows; n++ {
			w := sv.draw(r, share, sc.window, b)
			hist = w.stableHistogram
			out.seconds += sc.window
			rollback, close := j.observe(w)
			if rollback {
				out.rolledBack = true
				return out
			}
			if sc.minWindows > 0 && n >= sc.minWindows && n < sc.stepWindows && close {
				out.earlySteps++
				break
			}
		}
	}
	return out
}

// tally sums the outcomes of many rollouts.
type tally struct {
	runs, rolledBack, early int
	rollbackSeconds         []float64
	promotionSeconds        []float64
}

func (t *tally) add(o outcome) {
	t.runs++
	if o.earlySteps > 0 {
		t.early++
	}
	if o.rolledBack {
		t.rolledBack++
		t.rollbackSeconds = append(t.rollbackSeconds, o.seconds)
	} else {
		t.promotionSeconds = append(t.promotionSeconds, o.seconds)
	}
}

func (t *tally) rollbackRate() float64 { return float64(t.rolledBack) / float64(t.runs) }
func (t *tally) earlyRate() float64    { return float64(t.early) / float64(t.runs) }

// median of xs, NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// simulate runs n rollouts with a judge made fresh for each, from a fixed seed.
func simulate(seed uint64, n int, sv service, sc schedule, newJudge func() judge) *tally {
	r := rand.New(rand.NewPCG(seed, 0x6d657368726f6c6c))
	t := &tally{}
	for range n {
		t.add(rollout(r, sv, sc, newJudge()))
	}
	return t
}
