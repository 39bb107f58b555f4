package judge

import (
	"math"
	"testing"
)

func TestBoundary(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	istio := []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, inf}
	tests := []struct {
		name       string
		les        []float64
		cumulative []float64
		q          float64
		want       float64
		ok         bool
	}{
		{
			// 10,000 requests; above 100 ms: 630 (6.3 %), above 250 ms: 11 (0.11 %). 6.3 is
			// 6.3× from 1 %, 0.11 is 9.1× from it: 100 ms.
			name:       "the nearer tail share as a ratio",
			les:        istio,
			cumulative: []float64{0, 0, 0, 20, 2200, 6450, 9370, 9989, 9999, 10000, 10000, 10000, 10000, 10000},
			q:          0.99, want: 100, ok: true,
		},
		{
			// Above 250 ms: 300 (3 %, 3× from 1 %); above 500 ms: 20 (0.2 %, 5× from it): 250 ms,
			// though the p99 interpolated in milliseconds (≈ 430 ms) is nearer 500.
			name:       "ratio, not milliseconds",
			les:        []float64{100, 250, 500, inf},
			cumulative: []float64{5000, 9700, 9980, 10000},
			q:          0.99, want: 250, ok: true,
		},
		{
			name:       "p90",
			les:        []float64{100, 250, 500, inf},
			cumulative: []float64{5000, 9000, 9980, 10000},
			q:          0.9, want: 250, ok: true,
		},
		{
			name:       "order of the labels does not matter",
			les:        []float64{inf, 500, 100, 250},
			cumulative: []float64{10000, 9980, 5000, 9700},
			q:          0.99, want: 250, ok: true,
		},
		{
			name:       "every request below every boundary: the lowest",
			les:        []float64{100, 250, 500, inf},
			cumulative: []float64{400, 400, 400, 400},
			q:          0.99, want: 100, ok: true,
		},
		{
			name:       "every request above every boundary: the highest",
			les:        []float64{100, 250, 500, inf},
			cumulative: []float64{0, 0, 0, 400},
			q:          0.99, want: 500, ok: true,
		},
		{
			// The total is 9,950: 950 (9.5 %) above 100 ms, none above 250 ms.
			name:       "without +Inf the largest count is the total",
			les:        []float64{100, 250},
			cumulative: []float64{9000, 9950},
			q:          0.99, want: 100, ok: true,
		},
		{name: "no requests", les: []float64{100, 250, inf}, cumulative: []float64{0, 0, 0}, q: 0.99},
		{name: "only +Inf", les: []float64{inf}, cumulative: []float64{10}, q: 0.99},
		{name: "lengths differ", les: []float64{100, inf}, cumulative: []float64{10}, q: 0.99},
		{name: "q out of range", les: []float64{100, inf}, cumulative: []float64{5, 10}, q: 1},
		{name: "nothing", q: 0.99},
	}
	for _, tt := range tests {
		got, ok := Boundary(tt.les, tt.cumulative, tt.q)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: Boundary = %g, %v; want %g, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
