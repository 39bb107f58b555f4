package judge

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Exact samplers for the simulation: math/rand/v2 has uniform, normal and exponential
// variates only.

// poisson draws from the Poisson law with mean lambda: Knuth's product of uniforms below 10,
// Hörmann's transformed rejection with squeeze (PTRS, 1993, as in NumPy) above.
func poisson(r *rand.Rand, lambda float64) int64 {
	if lambda <= 0 {
		return 0
	}
	if lambda < 10 {
		limit, p := math.Exp(-lambda), 1.0
		for k := int64(0); ; k++ {
			p *= r.Float64()
			if p <= limit {
				return k
			}
		}
	}
	logLambda := math.Log(lambda)
	b := 0.931 + 2.53*math.Sqrt(lambda)
	a := -0.059 + 0.02483*b
	invAlpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + lambda + 0.43)
		if us >= 0.07 && v <= vr {
			return int64(k)
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invAlpha)-math.Log(a/(us*us)+b) <= -lambda+k*logLambda-lg {
			return int64(k)
		}
	}
}

// binomial draws from the binomial law of n trials with success probability p, by jumping
// from one success to the next with geometric gaps: exact, and as fast as the number of
// successes (or failures, when p > 1/2) is small.
func binomial(r *rand.Rand, n int64, p float64) int64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case p > 0.5:
		return n - binomial(r, n, 1-p)
	}
	logQ := math.Log1p(-p)
	var successes, trials int64
	for {
		// Failures before the next success: ⌊ln U / ln(1−p)⌋ with U in (0, 1].
		gap := math.Floor(math.Log(1-r.Float64()) / logQ)
		if gap >= float64(n-trials) {
			return successes
		}
		trials += int64(gap) + 1
		successes++
	}
}

// The samplers' first two moments, on a fixed seed.
func TestSamplers(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	const draws = 20000
	check := func(name string, mean, variance float64, draw func() int64) {
		t.Helper()
		var sum, sumSq float64
		for range draws {
			v := float64(draw())
			sum += v
			sumSq += v * v
		}
		m := sum / draws
		v := sumSq/draws - m*m
		// Five standard errors of the mean; the variance within 10 %.
		if math.Abs(m-mean) > 5*math.Sqrt(variance/draws) || math.Abs(v-variance) > 0.1*variance {
			t.Errorf("%s: mean %g variance %g, want %g and %g", name, m, v, mean, variance)
		}
	}
	for _, lambda := range []float64{0.5, 7, 30, 3000} {
		check("poisson", lambda, lambda, func() int64 { return poisson(r, lambda) })
	}
	for _, c := range []struct {
		n int64
		p float64
	}{{10, 0.3}, {3000, 0.005}, {1000, 0.9}, {50, 0.5}} {
		check("binomial", float64(c.n)*c.p, float64(c.n)*c.p*(1-c.p), func() int64 { return binomial(r, c.n, c.p) })
	}
}
