package judge

import (
	"fmt"
	"math"
)

// Counts is one window of one comparison: requests served and bad events (5xx, or requests
// slower than the latency boundary) for each version. Negative values count as 0.
type Counts struct {
	CanaryRequests, StableRequests, CanaryBad, StableBad int64
}

// add returns the sum of two windows' counts.
func (c Counts) add(o Counts) Counts {
	return Counts{
		CanaryRequests: c.CanaryRequests + max(o.CanaryRequests, 0),
		StableRequests: c.StableRequests + max(o.StableRequests, 0),
		CanaryBad:      c.CanaryBad + max(o.CanaryBad, 0),
		StableBad:      c.StableBad + max(o.StableBad, 0),
	}
}

// Test is the sequential test of one comparison over a run: every window is observed, and
// after each one Worse says whether to roll back and, with a margin, CloseEnough whether the
// step may end early. A Test is not safe for concurrent use.
type Test struct {
	alpha   float64
	worse   mixture
	close   *closeTest
	totals  Counts
	windows int
}

// closeTest is the optional "close enough" test, with its own α.
type closeTest struct {
	margin Margin
	alpha  float64
	mix    mixture
}

// NewTest returns the test of one comparison that rolls back at confidence 1 − alpha: a
// canary no worse than stable makes Worse true, at any window of the run, with probability at
// most alpha. It panics unless 0 < alpha < 1 (config validates the user's confidence).
func NewTest(alpha float64) *Test {
	checkAlpha(alpha)
	return &Test{alpha: alpha, worse: newMixture(1, 0, ratioComponents(1, logSpaced(gridLow, gridHigh, gridSize), 1))}
}

// newTestGrid returns a test whose rollback mixture has the given alternatives and weights,
// for tests that compute the evidence by hand.
func newTestGrid(alpha float64, thetas, weights []float64) *Test {
	comps := ratioComponents(1, thetas, 1)
	for i := range comps {
		comps[i].logWeighted = math.Log(weights[i])
	}
	return &Test{alpha: alpha, worse: newMixture(1, 0, comps)}
}

func checkAlpha(alpha float64) {
	if !(alpha > 0 && alpha < 1) {
		panic(fmt.Sprintf("judge: alpha %v is not between 0 and 1", alpha))
	}
}

// Split returns the α of each of comparisons tests that together keep the probability of a
// wrong rollback at most alpha (Bonferroni: alpha divided by their number, at least 1).
func Split(alpha float64, comparisons int) float64 {
	return alpha / float64(max(comparisons, 1))
}

// Observe adds one window. Windows with no bad events, or with no requests on one side, carry
// no evidence that the canary is worse; they still count towards the totals.
func (t *Test) Observe(c Counts) {
	t.windows++
	t.totals = t.totals.add(c)
	t.worse.observe(c)
	if t.close != nil {
		t.close.mix.observe(c)
	}
}

// LogEvidence is the natural logarithm of the e-value that the canary is worse: 0 before any
// evidence, ln(1/α) at the rollback threshold.
func (t *Test) LogEvidence() float64 { return t.worse.log }

// Worse reports whether the evidence that the canary is worse reached 1/α: roll back.
func (t *Test) Worse() bool { return t.worse.log >= -math.Log(t.alpha) }

// Confidence is 1 − 1/e-value, clipped to [0, 1]: how sure the test is that the canary is
// worse. Worse is true exactly when it reaches 1 − α.
func (t *Test) Confidence() float64 { return confidence(t.worse.log) }

// Alpha is the test's α for rolling back.
func (t *Test) Alpha() float64 { return t.alpha }

// Totals returns the counts of every window observed so far, added up.
func (t *Test) Totals() Counts { return t.totals }

// Windows returns how many windows were observed.
func (t *Test) Windows() int { return t.windows }

func confidence(logE float64) float64 {
	return min(max(-math.Expm1(-logE), 0), 1)
}
