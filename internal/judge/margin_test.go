package judge

import (
	"math"
	"testing"
)

// Close-enough evidence of single alternatives, by hand.
func TestCloseEvidenceByHand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mix    mixture
		window Counts
		want   float64
	}{
		{
			// Ratio family, factor f = 2, alternative θ = 1, s = 1/2: D_2 = 1 + 1/2 = 1.5, D_1 = 1,
			// e = (1/2)^x · (1.5/1)^(x+y) = 1.5⁴ = 5.0625 for x = 0, y = 4.
			name:   "ratio, only stable failed",
			mix:    newMixture(2, 0, ratioComponents(2, []float64{1}, 1)),
			window: Counts{CanaryRequests: 100, StableRequests: 100, StableBad: 4},
			want:   5.0625,
		},
		{
			// Same, x = 2, y = 2: (1/2)² · 1.5⁴ = 1.265625.
			name:   "ratio, equal failures",
			mix:    newMixture(2, 0, ratioComponents(2, []float64{1}, 1)),
			window: Counts{CanaryRequests: 100, StableRequests: 100, CanaryBad: 2, StableBad: 2},
			want:   1.265625,
		},
		{
			// Difference family, floor d = 0.01, alternative r = 0.0075, s = 1/2, h = 50:
			// d·s(1−s) = 0.0025, r − d(2s−1) = 0.0075, so κ = 2·0.01 / (0.0075 + √(0.0075² +
			// 4·0.0025·0.01)) = 0.02 / (0.0075 + 0.0125) = 1. e = (1 − 1/2)^x · (1 + 1/2)^y ·
			// exp(1 · 0.01 · 50) = e^0.5 without bad events.
			name:   "difference, no bad events",
			mix:    newMixture(1, 0.01, differenceComponents([]float64{0.0075}, 1)),
			window: Counts{CanaryRequests: 100, StableRequests: 100},
			want:   math.Exp(0.5),
		},
		{
			// Same with x = 1, y = 1: 0.5 · 1.5 · e^0.5.
			name:   "difference, one each",
			mix:    newMixture(1, 0.01, differenceComponents([]float64{0.0075}, 1)),
			window: Counts{CanaryRequests: 100, StableRequests: 100, CanaryBad: 1, StableBad: 1},
			want:   0.75 * math.Exp(0.5),
		},
		{
			name:   "difference, no stable requests",
			mix:    newMixture(1, 0.01, differenceComponents([]float64{0.0075}, 1)),
			window: Counts{CanaryRequests: 100},
			want:   1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.mix.observe(tt.window)
			if got := math.Exp(tt.mix.log); !closeTo(got, tt.want) {
				t.Errorf("e-value %.12g, want %.12g", got, tt.want)
			}
		})
	}
}

// bestKappa maximises the expected log-evidence of a window where both versions are bad at
// rate r: nudging κ either way loses.
func TestBestKappa(t *testing.T) {
	t.Parallel()
	for _, s := range []float64{0.01, 0.1, 0.25, 0.5, 0.9} {
		for _, r := range []float64{0.0001, 0.002, 0.05} {
			for _, d := range []float64{0.001, 0.002, 0.05} {
				// The expected log-evidence divided by h = nc(1−s) = ns·s.
				growth := func(k float64) float64 {
					return r*math.Log1p(-k*(1-s))/(1-s) + r*math.Log1p(k*s)/s + k*d
				}
				k := bestKappa(s, r, d)
				if !(k > 0 && k*(1-s) < 1) {
					t.Fatalf("s %g r %g d %g: κ %g outside (0, 1/(1−s))", s, r, d, k)
				}
				if g := growth(k); growth(k*0.99) > g || growth(min(k*1.01, (1-1e-12)/(1-s))) > g {
					t.Errorf("s %g r %g d %g: κ %g is not the maximum", s, r, d, k)
				}
			}
		}
	}
}

func TestCloseEnough(t *testing.T) {
	t.Parallel()
	// 30 windows of 5,000 requests a side: a canary as good as stable (0.5 % against 0.5 %)
	// is shown close enough; one at 3× is not, and is worse.
	run := func(canaryBad int64) *Test {
		test := NewTest(0.01).WithMargin(DefaultMargin(), 0.01)
		for range 30 {
			test.Observe(Counts{CanaryRequests: 5000, StableRequests: 5000, CanaryBad: canaryBad, StableBad: 25})
		}
		return test
	}
	if healthy := run(25); !healthy.CloseEnough() || healthy.Worse() {
		t.Errorf("healthy canary: close enough %v (log-evidence %g), worse %v", healthy.CloseEnough(), healthy.LogCloseEvidence(), healthy.Worse())
	}
	if bad := run(75); bad.CloseEnough() || !bad.Worse() {
		t.Errorf("canary at 3×: close enough %v, worse %v (log-evidence %g)", bad.CloseEnough(), bad.Worse(), bad.LogEvidence())
	}
	// Without errors on either side only the floor can show closeness: 60,000 canary requests
	// without a 5xx show the canary's rate is below 0.2 points.
	quiet := NewTest(0.01).WithMargin(DefaultMargin(), 0.01)
	ratioOnly := NewTest(0.01).WithMargin(Margin{Factor: 1.5}, 0.01)
	for range 12 {
		quiet.Observe(Counts{CanaryRequests: 5000, StableRequests: 5000})
		ratioOnly.Observe(Counts{CanaryRequests: 5000, StableRequests: 5000})
	}
	if !quiet.CloseEnough() || ratioOnly.CloseEnough() {
		t.Errorf("no bad events: close enough with a floor %v (log-evidence %g), without %v",
			quiet.CloseEnough(), quiet.LogCloseEvidence(), ratioOnly.CloseEnough())
	}
	if off := NewTest(0.01); off.CloseEnough() || off.LogCloseEvidence() != 0 {
		t.Errorf("without a margin: close enough %v, log-evidence %g", off.CloseEnough(), off.LogCloseEvidence())
	}
}

func TestMarginAllowed(t *testing.T) {
	t.Parallel()
	m := DefaultMargin()
	for _, c := range []struct{ stable, want float64 }{
		{0.005, 0.0075}, // 1.5 × 0.5 % = 0.75 % beats 0.5 % + 0.2 points
		{0.001, 0.003},  // 0.1 % + 0.2 points beats 0.15 %
		{0, 0.002},
	} {
		if got := m.Allowed(c.stable); !closeTo(got, c.want) {
			t.Errorf("Allowed(%g) = %g, want %g", c.stable, got, c.want)
		}
	}
}

func TestPanics(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(){
		"alpha 0":              func() { NewTest(0) },
		"alpha 1":              func() { NewTest(1) },
		"alpha NaN":            func() { NewTest(math.NaN()) },
		"margin alpha 2":       func() { NewTest(0.01).WithMargin(DefaultMargin(), 2) },
		"factor below 1":       func() { NewTest(0.01).WithMargin(Margin{Factor: 0.9, Floor: 0.01}, 0.01) },
		"no margin at all":     func() { NewTest(0.01).WithMargin(Margin{Factor: 1}, 0.01) },
		"negative floor":       func() { NewTest(0.01).WithMargin(Margin{Factor: 2, Floor: -0.01}, 0.01) },
		"margin after observe": func() { t := NewTest(0.01); t.Observe(Counts{}); t.WithMargin(DefaultMargin(), 0.01) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		alpha float64
		n     int
		want  float64
	}{{0.01, 2, 0.005}, {0.01, 1, 0.01}, {0.05, 5, 0.01}, {0.01, 0, 0.01}, {0.01, -3, 0.01}} {
		if got := Split(c.alpha, c.n); !closeTo(got, c.want) {
			t.Errorf("Split(%g, %d) = %g, want %g", c.alpha, c.n, got, c.want)
		}
	}
}
