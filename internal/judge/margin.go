package judge

import (
	"fmt"
	"math"
)

// Margin is how much worse than stable the canary may be and still be "close enough" to end a
// step early: its bad rate may reach max(Factor × stable's, stable's + Floor).
type Margin struct {
	// Factor is the relative part, at least 1: 1.5 allows 50 % more bad events than stable.
	Factor float64
	// Floor is the absolute part as a fraction, at least 0: 0.002 is 0.2 percentage points.
	Floor float64
}

// DefaultMargin is 1.5× stable's rate or 0.2 percentage points above it, whichever is larger.
func DefaultMargin() Margin { return Margin{Factor: 1.5, Floor: 0.002} }

// Allowed returns the largest bad rate of the canary within the margin when stable's is
// stableRate.
func (m Margin) Allowed(stableRate float64) float64 {
	return max(m.Factor*stableRate, stableRate+m.Floor)
}

// WithMargin turns on the close-enough test at confidence 1 − alpha and returns t: a canary
// worse than the margin makes CloseEnough true, at any window of the run, with probability at
// most alpha. Every comparison must be close enough for a step to end early, so alpha is the
// whole α, not a split one. Call it before the first Observe. It panics unless 0 < alpha < 1,
// Factor ≥ 1, Floor ≥ 0 and one of them allows some margin.
func (t *Test) WithMargin(m Margin, alpha float64) *Test {
	checkAlpha(alpha)
	if !(m.Factor >= 1 && m.Floor >= 0 && (m.Factor > 1 || m.Floor > 0)) || math.IsInf(m.Factor, 0) || math.IsInf(m.Floor, 0) {
		panic(fmt.Sprintf("judge: margin %+v allows no difference or is out of range", m))
	}
	if t.windows > 0 {
		panic("judge: WithMargin after Observe")
	}
	t.close = &closeTest{margin: m, alpha: alpha, mix: newMixture(m.Factor, m.Floor, closeComponents(m))}
	return t
}

// closeComponents returns the alternatives of the close-enough test: ratios below the factor
// and the difference family's alternative rates, half the weight each when both parts of the
// margin allow something.
func closeComponents(m Margin) []component {
	wRatio := 0.5
	switch {
	case m.Floor == 0:
		wRatio = 1
	case m.Factor == 1:
		wRatio = 0
	}
	var comps []component
	if wRatio > 0 {
		gs := logSpaced(closeLow, closeHigh, closeSize)
		thetas := make([]float64, len(gs))
		for i, g := range gs {
			thetas[i] = m.Factor / g
		}
		comps = append(comps, ratioComponents(m.Factor, thetas, wRatio)...)
	}
	if wRatio < 1 {
		comps = append(comps, differenceComponents(logSpaced(closeRateLow, closeRateHigh, closeRates), 1-wRatio)...)
	}
	return comps
}

// The alternative bad rates of the difference family.
// The ratio family's alternatives are θ = f/g for closeSize values of g log-spaced from
// closeLow to closeHigh: a canary from 1.1 to 4 times better than the margin allows, which
// covers a canary as good as stable under any factor up to 3.6; a healthy canary is what
// early completion is for, and more prior weight near it shows closeness sooner (simulated:
// 83 % of healthy rollouts at 1,000 rps ended a step early against 78 % with θ down to f/20).
// The difference family's alternatives are closeRates bad rates from closeRateLow to
// closeRateHigh.
const (
	closeSize     = 16
	closeLow      = 1.1
	closeHigh     = 4.0
	closeRates    = 24
	closeRateLow  = 0.0001
	closeRateHigh = 0.1
)

// Margin returns the close-enough test's margin, and false when it is off.
func (t *Test) Margin() (Margin, bool) {
	if t.close == nil {
		return Margin{}, false
	}
	return t.close.margin, true
}

// LogCloseEvidence is the natural logarithm of the e-value that the canary is within the
// margin; 0 when the close-enough test is off.
func (t *Test) LogCloseEvidence() float64 {
	if t.close == nil {
		return 0
	}
	return t.close.mix.log
}

// CloseEnough reports whether the evidence that the canary is within the margin reached 1/α;
// always false when the close-enough test is off.
func (t *Test) CloseEnough() bool {
	return t.close != nil && t.close.mix.log >= -math.Log(t.close.alpha)
}

// CloseConfidence is 1 − 1/e-value of the close-enough test, clipped to [0, 1].
func (t *Test) CloseConfidence() float64 { return confidence(t.LogCloseEvidence()) }
