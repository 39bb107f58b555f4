package judge

import (
	"math"
	"testing"
)

const tolerance = 1e-12

func closeTo(a, b float64) bool {
	return math.Abs(a-b) <= tolerance*max(1, math.Abs(a), math.Abs(b))
}

// The e-value of small cases, written down by hand from e_θ = θ^x / (1 + s(θ−1))^(x+y) with
// s = nc/(nc+ns), averaged with the weights.
func TestEvidenceByHand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		thetas  []float64
		weights []float64
		windows []Counts
		want    float64
	}{
		{
			// s = 1/2, so 1 + s(θ−1) = (1+θ)/2 and e_θ = (2θ/(1+θ))³:
			// θ=2: (4/3)³ = 64/27 = 2.370370…; θ=4: (8/5)³ = 512/125 = 4.096;
			// θ=8: (16/9)³ = 4096/729 = 5.618655…; mean (2.370370 + 4.096 + 5.618656)/3 = 4.028342.
			name:    "one window, equal traffic, 3 canary 5xx",
			thetas:  []float64{2, 4, 8},
			weights: []float64{1.0 / 3, 1.0 / 3, 1.0 / 3},
			windows: []Counts{{CanaryRequests: 100, StableRequests: 100, CanaryBad: 3}},
			want:    (64.0/27 + 512.0/125 + 4096.0/729) / 3,
		},
		{
			// s = 1/4, m = 4, so 1 + s(θ−1) = (3+θ)/4 and e_θ = θ² / ((3+θ)/4)⁴:
			// θ=2: 4·256/625 = 1.6384; θ=4: 16·256/2401 = 1.705956; mean 1.672178.
			name:    "one window, a quarter of the traffic, 2 and 2",
			thetas:  []float64{2, 4},
			weights: []float64{0.5, 0.5},
			windows: []Counts{{CanaryRequests: 100, StableRequests: 300, CanaryBad: 2, StableBad: 2}},
			want:    (1024.0/625 + 4096.0/2401) / 2,
		},
		{
			// θ = 3. Window 1, s = 1/2: D = 1 + 2/2 = 2, e = 3/2² = 0.75.
			// Window 2, s = 1/4: D = 1 + 2/4 = 1.5, e = 3²/1.5² = 4. Product 3.
			name:    "two windows of different shares multiply",
			thetas:  []float64{3},
			weights: []float64{1},
			windows: []Counts{
				{CanaryRequests: 50, StableRequests: 50, CanaryBad: 1, StableBad: 1},
				{CanaryRequests: 100, StableRequests: 300, CanaryBad: 2},
			},
			want: 3,
		},
		{
			// Only the stable version failed: e_θ = 1/((1+θ)/2)³ for θ=2: (2/3)³ = 8/27.
			name:    "stable's bad events are evidence for the canary",
			thetas:  []float64{2},
			weights: []float64{1},
			windows: []Counts{{CanaryRequests: 10, StableRequests: 10, StableBad: 3}},
			want:    8.0 / 27,
		},
		{
			name:    "windows without bad events or without one side carry no evidence",
			thetas:  []float64{2, 4},
			weights: []float64{0.5, 0.5},
			windows: []Counts{
				{CanaryRequests: 1000, StableRequests: 9000},
				{CanaryRequests: 0, StableRequests: 9000, StableBad: 90},
				{CanaryRequests: 1000, StableRequests: 0, CanaryBad: 90},
			},
			want: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			test := newTestGrid(0.01, tt.thetas, tt.weights)
			for _, w := range tt.windows {
				test.Observe(w)
			}
			if got := math.Exp(test.LogEvidence()); !closeTo(got, tt.want) {
				t.Errorf("e-value %.12g, want %.12g", got, tt.want)
			}
		})
	}
}

// The statistic computed a second way: as the likelihood ratio of two binomial laws for the
// canary's share of the window's bad events, from their probability mass with math.Lgamma.
func TestEvidenceIsBinomialLikelihoodRatio(t *testing.T) {
	t.Parallel()
	windows := []Counts{
		{CanaryRequests: 1840, StableRequests: 16560, CanaryBad: 17, StableBad: 66},
		{CanaryRequests: 7, StableRequests: 3, CanaryBad: 2, StableBad: 0},
		{CanaryRequests: 5000, StableRequests: 5000, CanaryBad: 40, StableBad: 31},
		{CanaryRequests: 120, StableRequests: 40, CanaryBad: 0, StableBad: 3},
	}
	test := NewTest(0.01)
	thetas := logSpaced(gridLow, gridHigh, gridSize)
	logLR := make([]float64, len(thetas))
	for _, w := range windows {
		test.Observe(w)
		s := float64(w.CanaryRequests) / float64(w.CanaryRequests+w.StableRequests)
		for i, th := range thetas {
			p := s * th / (s*th + 1 - s)
			logLR[i] += logBinomial(w.CanaryBad, w.CanaryBad+w.StableBad, p) - logBinomial(w.CanaryBad, w.CanaryBad+w.StableBad, s)
		}
	}
	var sum float64
	for _, l := range logLR {
		sum += math.Exp(l) / float64(len(thetas))
	}
	if got, want := test.LogEvidence(), math.Log(sum); math.Abs(got-want) > 1e-9 {
		t.Errorf("log-evidence %.12g, the binomial likelihood ratio gives %.12g", got, want)
	}
}

// logBinomial is ln P(X = k) for X ~ Binomial(n, p).
func logBinomial(k, n int64, p float64) float64 {
	lgN, _ := math.Lgamma(float64(n + 1))
	lgK, _ := math.Lgamma(float64(k + 1))
	lgNK, _ := math.Lgamma(float64(n - k + 1))
	return lgN - lgK - lgNK + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p)
}

// The package's one fact: every window's evidence has expected value at most 1 when the
// canary is exactly as bad as allowed, summed exactly over every possible count of small
// binomial windows.
func TestEvidenceExpectationAtMostOne(t *testing.T) {
	t.Parallel()
	for _, shape := range []struct{ nc, ns int64 }{{5, 5}, {3, 30}, {40, 10}, {1, 2}} {
		for _, qs := range []float64{0.001, 0.05, 0.3} {
			rollback := NewTest(0.01)
			checkExpectation(t, "rollback", rollback.worse, shape.nc, shape.ns, qs, qs)
			for _, m := range []Margin{DefaultMargin(), {Factor: 2}, {Factor: 1, Floor: 0.05}} {
				close := NewTest(0.01).WithMargin(m, 0.01)
				checkExpectation(t, "close enough", close.close.mix, shape.nc, shape.ns, qs, min(m.Allowed(qs), 1))
			}
		}
	}
}

// checkExpectation sums every component's one-window evidence over all counts.
func checkExpectation(t *testing.T, name string, mix mixture, nc, ns int64, qs, qc float64) {
	t.Helper()
	for _, c := range mix.comps {
		var mean float64
		for x := int64(0); x <= nc; x++ {
			for y := int64(0); y <= ns; y++ {
				one := newMixture(mix.null, mix.floor, []component{{family: c.family, alt: c.alt, logAlt: c.logAlt}})
				one.observe(Counts{CanaryRequests: nc, StableRequests: ns, CanaryBad: x, StableBad: y})
				mean += math.Exp(logBinomial(x, nc, qc) + logBinomial(y, ns, qs) + one.log)
			}
		}
		if mean > 1+1e-9 {
			t.Errorf("%s, family %d, alternative %g, nc %d, ns %d, qs %g, qc %g: expected evidence %.12g > 1",
				name, c.family, c.alt, nc, ns, qs, qc, mean)
		}
	}
}

func TestEvidenceInvariances(t *testing.T) {
	t.Parallel()
	windows := []Counts{
		{CanaryRequests: 300, StableRequests: 2700, CanaryBad: 4, StableBad: 11},
		{CanaryRequests: 750, StableRequests: 2250, CanaryBad: 9, StableBad: 12},
		{CanaryRequests: 1500, StableRequests: 1500, CanaryBad: 0, StableBad: 0},
		{CanaryRequests: 1490, StableRequests: 1511, CanaryBad: 13, StableBad: 6},
	}
	run := func(ws []Counts, scale int64, m *Margin) *Test {
		test := NewTest(0.005)
		if m != nil {
			test.WithMargin(*m, 0.01)
		}
		for _, w := range ws {
			w.CanaryRequests *= scale
			w.StableRequests *= scale
			test.Observe(w)
		}
		return test
	}
	ratioOnly := Margin{Factor: 1.5}
	base := run(windows, 1, &ratioOnly)
	reversed := make([]Counts, len(windows))
	for i, w := range windows {
		reversed[len(windows)-1-i] = w
	}
	for name, other := range map[string]*Test{
		"windows in reverse order":     run(reversed, 1, &ratioOnly),
		"requests scaled by 7 on both": run(windows, 7, &ratioOnly),
	} {
		if !closeTo(base.LogEvidence(), other.LogEvidence()) {
			t.Errorf("%s: log-evidence %.15g, want %.15g", name, other.LogEvidence(), base.LogEvidence())
		}
		if !closeTo(base.LogCloseEvidence(), other.LogCloseEvidence()) {
			t.Errorf("%s: close-enough log-evidence %.15g, want %.15g", name, other.LogCloseEvidence(), base.LogCloseEvidence())
		}
	}
	// With a floor the rates matter, not only the shares: the order still does not.
	floor := DefaultMargin()
	if a, b := run(windows, 1, &floor), run(reversed, 1, &floor); !closeTo(a.LogCloseEvidence(), b.LogCloseEvidence()) {
		t.Errorf("with a floor, reversed windows: %.15g, want %.15g", b.LogCloseEvidence(), a.LogCloseEvidence())
	}
}

// More canary bad events are more evidence that it is worse and less that it is close; more
// stable bad events the reverse.
func TestEvidenceMonotone(t *testing.T) {
	t.Parallel()
	evidence := func(x, y int64) (worse, close float64) {
		test := NewTest(0.01).WithMargin(DefaultMargin(), 0.01)
		test.Observe(Counts{CanaryRequests: 2500, StableRequests: 7500, CanaryBad: x, StableBad: y})
		return test.LogEvidence(), test.LogCloseEvidence()
	}
	for y := int64(0); y <= 60; y += 20 {
		prevWorse, prevClose := evidence(0, y)
		for x := int64(1); x <= 60; x++ {
			worse, close := evidence(x, y)
			if (y > 0 || x > 1) && worse <= prevWorse {
				t.Errorf("x %d, y %d: log-evidence %g did not grow from %g", x, y, worse, prevWorse)
			}
			if close >= prevClose {
				t.Errorf("x %d, y %d: close-enough log-evidence %g did not fall from %g", x, y, close, prevClose)
			}
			prevWorse, prevClose = worse, close
		}
	}
	for x := int64(0); x <= 60; x += 20 {
		prevWorse, _ := evidence(x, 0)
		for y := int64(1); y <= 60; y++ {
			worse, _ := evidence(x, y)
			if worse > prevWorse {
				t.Errorf("x %d, y %d: log-evidence %g grew from %g", x, y, worse, prevWorse)
			}
			prevWorse = worse
		}
	}
}
