package meshsim

import (
	"math"
	"slices"
	"testing"
	"time"
)

// With a spread, latencies are log-normal around the configured latency: the median is that
// latency and the p99 about e^(2.33σ) times it; without one, every request takes exactly it.
func TestLatencySpread(t *testing.T) {
	t.Parallel()
	exact := behaviour{latency: 60 * time.Millisecond}
	if got := exact.draw(); got != 60*time.Millisecond {
		t.Errorf("without a spread: %s, want 60ms", got)
	}
	spread := behaviour{latency: 60 * time.Millisecond, spread: 0.3}
	const n = 20000
	draws := make([]float64, n)
	for i := range draws {
		draws[i] = float64(spread.draw()) / float64(time.Millisecond)
	}
	slices.Sort(draws)
	median, p99 := draws[n/2], draws[n*99/100]
	if math.Abs(median-60)/60 > 0.05 {
		t.Errorf("median %.1f ms, want about 60", median)
	}
	if want := 60 * math.Exp(2.326*0.3); math.Abs(p99-want)/want > 0.1 {
		t.Errorf("p99 %.1f ms, want about %.1f", p99, want)
	}
}
