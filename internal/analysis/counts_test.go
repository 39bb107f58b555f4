package analysis

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// series renders one series of an instant vector answer.
func series(labels map[string]string, value float64) string {
	var ls []string
	for k, v := range labels {
		ls = append(ls, fmt.Sprintf("%q:%q", k, v))
	}
	return fmt.Sprintf(`{"metric":{%s},"value":[1700000000,"%g"]}`, strings.Join(ls, ","), value)
}

func vectorOf(s ...string) string {
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(s, ",") + `]}}`
}

// Two snapshots make a window's counts: per series, a counter that went down was reset (its
// pod restarted) and counts from 0, a series that appeared counts whole, and a series that
// went away counts nothing; the histogram's buckets are summed per boundary.
func TestSnapshotCounts(t *testing.T) {
	t.Parallel()
	pod := func(name string, extra ...string) map[string]string {
		m := map[string]string{"pod": name}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	// answers[call][query kind] for the canary; the stable side answers a fixed history.
	answers := []map[string]string{
		{ // the window's start
			"requests": vectorOf(series(pod("a", "response_code", "200"), 100), series(pod("b", "response_code", "200"), 50), series(pod("a", "response_code", "503"), 4)),
			"errors":   vectorOf(series(pod("a", "response_code", "503"), 4)),
			"bucket":   vectorOf(series(pod("a", "le", "25"), 90), series(pod("a", "le", "+Inf"), 104), series(pod("b", "le", "25"), 50), series(pod("b", "le", "+Inf"), 50)),
		},
		{ // its end: pod b restarted (its counters start again), pod c appeared, pod a served 20 more (2 of them 503)
			"requests": vectorOf(series(pod("a", "response_code", "200"), 118), series(pod("b", "response_code", "200"), 7), series(pod("a", "response_code", "503"), 6),
				series(pod("c", "response_code", "200"), 3)),
			"errors": vectorOf(series(pod("a", "response_code", "503"), 6)),
			"bucket": vectorOf(series(pod("a", "le", "25"), 100), series(pod("a", "le", "+Inf"), 124), series(pod("b", "le", "25"), 6), series(pod("b", "le", "+Inf"), 7),
				series(pod("c", "le", "25"), 3), series(pod("c", "le", "+Inf"), 3)),
		},
	}
	calls := map[string]int{}
	prom := newFakeProm(t, func(r *http.Request, q string, _ int) (int, string) {
		kind := "requests"
		switch {
		case strings.HasPrefix(q, "istio_request_duration_milliseconds_bucket"):
			kind = "bucket"
		case strings.Contains(q, `response_code=~"5.."`):
			kind = "errors"
		}
		if strings.Contains(q, `destination_workload="cart-v1"`) {
			return http.StatusOK, vectorOf(series(pod("s"), 1000*float64(calls["stable"+kind]+1)))
		}
		defer func() { calls[kind]++ }()
		return http.StatusOK, answers[calls[kind]][kind]
	})
	a, err := New(testSettings(prom.URL))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1700000000, 0)
	start, err := a.Snapshot(t.Context(), t0)
	if err != nil {
		t.Fatal(err)
	}
	calls["stablerequests"], calls["stableerrors"], calls["stablebucket"] = 1, 1, 1
	end, err := a.Snapshot(t.Context(), t0.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := end.Since(start)
	inf := math.Inf(1)
	want := Tally{
		Requests: 18 + 7 + 2 + 3, // a: +18 ok and +2 503; b: reset, 7 since; c: new, 3
		Errors:   2,
		Within:   map[float64]int64{25: 10 + 6 + 3, inf: 20 + 7 + 3},
	}
	if diff := cmp.Diff(want, got.Canary); diff != "" {
		t.Errorf("canary (-want +got):\n%s", diff)
	}
	if got.Canary.Slower(25) != 11 {
		t.Errorf("slower than 25 ms: %d, want 11", got.Canary.Slower(25))
	}
	if diff := cmp.Diff([]float64{25, inf}, got.Canary.Boundaries()); diff != "" {
		t.Errorf("boundaries (-want +got):\n%s", diff)
	}
	if got.Stable.Requests != 1000 || got.Stable.Errors != 1000 {
		t.Errorf("stable %+v, want 1000 requests and 1000 errors", got.Stable)
	}
	if !got.From.Equal(t0) || !got.To.Equal(t0.Add(30*time.Second)) {
		t.Errorf("window %s to %s", got.From, got.To)
	}
}

func TestDelta(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	for _, c := range []struct {
		name       string
		start, end float64
		want       int64
	}{
		{"grew", 100, 180, 80},
		{"unchanged", 100, 100, 0},
		{"from nothing", 0, 42, 42},
		{"reset: counted from 0", 1000, 40, 40},
		{"reset to 0", 1000, 0, 0},
		{"float noise is not a reset", 100.0000001, 100, 0},
		{"rounded to whole requests", 10.4, 12.6, 3},
		{"large counters keep precision", 9_007_199_254_740_000, 9_007_199_254_740_990, 990},
		{"NaN start counts as 0", math.NaN(), 7, 7},
		{"NaN end counts as 0", 7, math.NaN(), 0},
		{"infinite end is capped", 5, inf, math.MaxInt64 - 5},
		{"negative samples count as 0", -3, 4, 4},
	} {
		if got := delta(c.start, c.end); got != c.want {
			t.Errorf("%s: delta(%g, %g) = %d, want %d", c.name, c.start, c.end, got, c.want)
		}
	}
}
