package analysis

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/common/model"
)

// Tally is what one workload served in a window, as exact integer counts taken from Istio's
// counters: requests, 5xx answers, and, per latency bucket boundary (milliseconds, the
// histogram's le), the requests that took at most that long.
type Tally struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Within maps each bucket boundary to the requests no slower than it; +Inf counts all of
	// the histogram's requests.
	Within map[float64]int64 `json:"-"`
}

// Slower counts the requests slower than boundary (one of the histogram's le values).
func (t Tally) Slower(boundary float64) int64 {
	return max(t.Within[math.Inf(1)]-t.Within[boundary], 0)
}

// Boundaries are the histogram's bucket boundaries seen, ascending, +Inf last.
func (t Tally) Boundaries() []float64 {
	out := make([]float64, 0, len(t.Within))
	for le := range t.Within {
		out = append(out, le)
	}
	sort.Float64s(out)
	return out
}

// Counts are the tallies of both workloads over one window.
type Counts struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Canary Tally     `json:"canary"`
	Stable Tally     `json:"stable"`
}

// Snapshot is the raw value of every counter series of both workloads at one instant.
// Two snapshots make a window's Counts: counts, not rates, so nothing is extrapolated
// (increase() extrapolates to the window's edges) and a restarted pod's counter reset is
// seen per series.
type Snapshot struct {
	At     time.Time
	series map[seriesKey]float64
}

type seriesKey struct {
	side   string // "canary" or "stable"
	metric string // "requests", "errors" or "bucket"
	le     float64
	labels string // the series' labels, le included
}

// Snapshot reads every counter series of the canary and the stable workload at instant at.
// Prometheus unreachable after the retries wraps ErrUnavailable.
func (a *Analyzer) Snapshot(ctx context.Context, at time.Time) (Snapshot, error) {
	if err := a.open(ctx); err != nil {
		return Snapshot{}, err
	}
	q := a.labels()
	type read struct{ side, metric, query string }
	var reads []read
	for _, side := range []struct{ name, workload string }{{"canary", q.canary}, {"stable", q.stable}} {
		sel := selector(q.reporter, q.namespace, side.workload)
		reads = append(reads,
			read{side.name, "requests", fmt.Sprintf(`istio_requests_total{%s}`, sel)},
			read{side.name, "errors", fmt.Sprintf(`istio_requests_total{%s,response_code=~"5.."}`, sel)},
			read{side.name, "bucket", fmt.Sprintf(`istio_request_duration_milliseconds_bucket{%s}`, sel)})
	}
	// The reads go out together, as a window's queries do: one budget (half an interval)
	// bounds them all, so that a slow Prometheus does not make the hold drift.
	values := make([]model.Value, len(reads))
	errs := make([]error, len(reads))
	var wg sync.WaitGroup
	for i, r := range reads {
		wg.Go(func() { values[i], errs[i] = a.queryValue(ctx, r.query, at, a.windowPolicy()) })
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return Snapshot{}, err
	}
	snap := Snapshot{At: at, series: map[seriesKey]float64{}}
	for i, r := range reads {
		vec, ok := values[i].(model.Vector)
		if !ok && values[i] != nil {
			return Snapshot{}, fmt.Errorf("query %s returned a %s where an instant vector is expected: %w", r.query, values[i].Type(), ErrQuery)
		}
		for _, s := range vec {
			key := seriesKey{side: r.side, metric: r.metric, labels: s.Metric.String()}
			if r.metric == "bucket" {
				le, err := strconv.ParseFloat(string(s.Metric[model.BucketLabel]), 64)
				if err != nil {
					continue // not a bucket series
				}
				key.le = le
			}
			snap.series[key] = float64(s.Value)
		}
	}
	return snap, nil
}

// firstError is the first of errs that is not nil.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Since is what both workloads served between prev and s. A series whose value went down
// was reset (its pod restarted): it counts from 0. A series new in s counts whole.
func (s Snapshot) Since(prev Snapshot) Counts {
	c := Counts{From: prev.At, To: s.At, Canary: Tally{Within: map[float64]int64{}}, Stable: Tally{Within: map[float64]int64{}}}
	for key, now := range s.series {
		d := delta(prev.series[key], now)
		t := &c.Canary
		if key.side == "stable" {
			t = &c.Stable
		}
		switch key.metric {
		case "requests":
			t.Requests += d
		case "errors":
			t.Errors += d
		case "bucket":
			t.Within[key.le] += d
		}
	}
	return c
}

// Count reads both workloads' counters at at and returns them with what was served since
// prev (the zero Snapshot: since the counters started).
func (a *Analyzer) Count(ctx context.Context, prev Snapshot, at time.Time) (Snapshot, Counts, error) {
	snap, err := a.Snapshot(ctx, at)
	if err != nil {
		return Snapshot{}, Counts{}, err
	}
	return snap, snap.Since(prev), nil
}

// delta is how much a counter grew from was to now, in whole requests. Counters only grow,
// so now below was means the process restarted and the counter began again from 0: the
// delta is then now itself. Both samples are rounded first, so float noise is never taken
// for a reset; NaN, infinite and negative samples count as 0. As with Prometheus's own
// increase(), a restart after which the counter climbed past was again cannot be seen from
// two samples.
func delta(was, now float64) int64 {
	w, n := whole(was), whole(now)
	if n < w {
		return n
	}
	return n - w
}

// whole rounds a sample to a non-negative int64.
func whole(v float64) int64 {
	if math.IsNaN(v) || v <= 0 {
		return 0
	}
	if v >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(math.Round(v))
}
