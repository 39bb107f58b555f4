package judge

import "math"

// family is how a component turns a window's counts into evidence; see the package comment.
type family int

const (
	// ratioFamily: e = (θ/ρ0)^x · (D_ρ0/D_θ)^m, D_t = 1 + s(t−1).
	ratioFamily family = iota
	// differenceFamily: e = (1−κ(1−s))^x · (1+κs)^y · exp(κ·d·h), κ chosen for alternative r.
	differenceFamily
)

// component is one alternative of a mixture with its accumulated evidence.
type component struct {
	family family
	// alt is θ for the ratio family and the alternative bad rate r for the difference family.
	alt float64
	// logAlt is ln(θ/ρ0) for the ratio family, precomputed.
	logAlt float64
	// logWeighted is ln(prior weight) plus the log-evidence accumulated so far.
	logWeighted float64
}

// mixture is a prior-weighted sum of e-processes, kept in log space.
type mixture struct {
	// null is ρ0 for the ratio family (1 for "worse", the margin's factor for "close");
	// floor is d for the difference family.
	null, floor float64
	comps       []component
	// log is ln Σ exp(logWeighted), refreshed after each window.
	log float64
}

// The alternatives θ of the rollback test: gridSize of them, log-spaced from gridLow to
// gridHigh. Simulated detection changed by a few points at most across grids from 1.05–10 to
// 1.05–50 and 24 to 48 values: the mixture is not sensitive to them.
const (
	gridSize = 32
	gridLow  = 1.1
	gridHigh = 20.0
)

// logSpaced returns n values from lo to hi with equal ratios between neighbours.
func logSpaced(lo, hi float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = lo * math.Pow(hi/lo, float64(i)/float64(n-1))
	}
	return out
}

// newMixture returns an empty mixture: its evidence is 1 (log 0) before any window. The
// components' weights must sum to 1; logWeighted holds their logarithms.
func newMixture(null, floor float64, comps []component) mixture {
	m := mixture{null: null, floor: floor, comps: comps}
	m.log = logSumExp(comps)
	return m
}

// ratioComponents returns equally weighted ratio alternatives θ, with total weight w.
func ratioComponents(null float64, thetas []float64, w float64) []component {
	out := make([]component, len(thetas))
	for i, th := range thetas {
		out[i] = component{family: ratioFamily, alt: th, logAlt: math.Log(th / null),
			logWeighted: math.Log(w / float64(len(thetas)))}
	}
	return out
}

// differenceComponents returns equally weighted alternatives r of the difference family,
// with total weight w.
func differenceComponents(rates []float64, w float64) []component {
	out := make([]component, len(rates))
	for i, r := range rates {
		out[i] = component{family: differenceFamily, alt: r, logWeighted: math.Log(w / float64(len(rates)))}
	}
	return out
}

// observe multiplies every component by the window's evidence. A window with no requests on
// one side carries none.
func (m *mixture) observe(c Counts) {
	if c.CanaryRequests <= 0 || c.StableRequests <= 0 {
		return
	}
	nc, ns := float64(c.CanaryRequests), float64(c.StableRequests)
	x, y := float64(max(c.CanaryBad, 0)), float64(max(c.StableBad, 0))
	s := nc / (nc + ns)
	h := nc * ns / (nc + ns)
	logNull := math.Log1p(s * (m.null - 1))
	for i := range m.comps {
		cp := &m.comps[i]
		switch cp.family {
		case ratioFamily:
			if x+y == 0 {
				continue
			}
			cp.logWeighted += x*cp.logAlt - (x+y)*(math.Log1p(s*(cp.alt-1))-logNull)
		case differenceFamily:
			k := bestKappa(s, cp.alt, m.floor)
			cp.logWeighted += x*math.Log1p(-k*(1-s)) + y*math.Log1p(k*s) + k*m.floor*h
		}
	}
	m.log = logSumExp(m.comps)
}

// bestKappa is the κ of the difference family that maximises the expected log-evidence of a
// window with canary share s when both versions are bad at rate r and the floor is d: the
// positive root of d·s(1−s)·κ² + (r − d(2s−1))·κ − d = 0, which lies in (0, 1/(1−s)), written
// so that it stays accurate when the quadratic term vanishes.
func bestKappa(s, r, d float64) float64 {
	a := d * s * (1 - s)
	b := r - d*(2*s-1)
	return 2 * d / (b + math.Sqrt(b*b+4*a*d))
}

// logSumExp returns ln Σ exp(logWeighted) without overflow.
func logSumExp(comps []component) float64 {
	top := math.Inf(-1)
	for _, c := range comps {
		top = max(top, c.logWeighted)
	}
	if math.IsInf(top, 0) {
		return top
	}
	var sum float64
	for _, c := range comps {
		sum += math.Exp(c.logWeighted - top)
	}
	return top + math.Log(sum)
}
