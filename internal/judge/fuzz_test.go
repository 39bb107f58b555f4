package judge

import (
	"math"
	"testing"
)

// Any counts give finite evidence, and windows whose canary and stable rates are equal never
// give evidence that the canary is worse: ln(1 + s(θ−1)) ≥ s·ln θ (concavity), so each such
// window's factor is at most 1.
func FuzzEvidence(f *testing.F) {
	f.Add(uint32(100), uint32(900), uint32(3), uint32(0), uint16(2), uint16(1), uint16(3))
	f.Add(uint32(1), uint32(1_000_000_000), uint32(1), uint32(0), uint16(1), uint16(1), uint16(1))
	f.Add(uint32(4_000_000_000), uint32(1), uint32(0), uint32(7), uint16(5), uint16(3), uint16(0))
	f.Add(uint32(0), uint32(0), uint32(0), uint32(0), uint16(0), uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, nc, ns, x, y uint32, a, b, u uint16) {
		test := NewTest(0.01).WithMargin(DefaultMargin(), 0.01)
		// Arbitrary counts, even inconsistent ones (more bad events than requests).
		test.Observe(Counts{CanaryRequests: int64(nc), StableRequests: int64(ns), CanaryBad: int64(x), StableBad: int64(y)})
		for _, l := range []float64{test.LogEvidence(), test.LogCloseEvidence()} {
			if math.IsNaN(l) || math.IsInf(l, 0) {
				t.Fatalf("log-evidence %g for %d %d %d %d", l, nc, ns, x, y)
			}
		}
		// Equal rates: nc = a·k, ns = b·k, x = a·u, y = b·u with u ≤ k, in several windows.
		same := NewTest(0.01)
		k := int64(u) + int64(nc%1000)
		for range 5 {
			same.Observe(Counts{CanaryRequests: int64(a) * k, StableRequests: int64(b) * k, CanaryBad: int64(a) * int64(u), StableBad: int64(b) * int64(u)})
		}
		if l := same.LogEvidence(); l > 1e-9 || math.IsNaN(l) {
			t.Fatalf("equal rates (%d:%d, %d of %d): log-evidence %g > 0", a, b, u, k, l)
		}
	})
}
