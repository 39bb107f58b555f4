package judge

import (
	"math"
	"sort"
)

// Boundary picks the latency boundary of the slow-request comparison from the stable
// workload's histogram at the start of a step: les are the bucket boundaries (the le labels,
// +Inf allowed, in any order) and cumulative the number of requests at or below each. It
// returns the finite boundary nearest the q quantile (q = 0.99 for p99), and false when no
// boundary can be picked (no finite boundary, no requests, q outside (0, 1)).
//
// "Nearest" is measured on the share of requests above the boundary, as a ratio: the test
// counts those requests, and with Istio's coarse buckets (… 100, 250, 500 ms …) the choice is
// between, say, 6 % and 0.1 % of requests above, which are equally far from 1 % when 0.1 % is
// ten times too few and 6 % six times too many; a nearer boundary in milliseconds can leave
// ten times fewer slow requests to count. A boundary with no request above it counts as half
// a request above.
func Boundary(les, cumulative []float64, q float64) (float64, bool) {
	if len(les) != len(cumulative) || !(q > 0 && q < 1) {
		return 0, false
	}
	idx := make([]int, len(les))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return les[idx[a]] < les[idx[b]] })
	var total float64
	for _, i := range idx {
		total = max(total, cumulative[i])
	}
	if !(total > 0) || math.IsInf(total, 0) {
		return 0, false
	}
	target := math.Log(1 - q)
	best, bestDistance, found := 0.0, math.Inf(1), false
	for _, i := range idx {
		le := les[i]
		if math.IsInf(le, 0) || math.IsNaN(le) || math.IsNaN(cumulative[i]) {
			continue
		}
		above := max(total-cumulative[i], 0.5)
		d := math.Abs(math.Log(above/total) - target)
		// On a tie (the same count above several boundaries) the lowest boundary is nearest
		// when too few requests are above, the highest when too many are.
		if d < bestDistance || (d == bestDistance && above/total > 1-q) {
			best, bestDistance, found = le, d, true
		}
	}
	return best, found
}
