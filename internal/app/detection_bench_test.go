package app

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

const detectionInterval = 5 * time.Second

// BenchmarkDetectionLatency measures how long a canary that starts failing keeps its traffic:
// from the instant its backend starts answering 503 to every request, during a held step,
// until the VirtualService read back from the API server (every 50ms) has all traffic on
// stable again. It runs meshroll in-process against a real kube-apiserver, meshsim at 100 rps
// and a real Prometheus scraping every second, with MESHROLL_FAILURE_THRESHOLD=1 and
// MESHROLL_ANALYSIS_INTERVAL=5s.
//
// Detection is bounded by interval + scrape + 2s (target-s): the failure lands in Prometheus
// within one scrape, the next window judges it at most one interval later, and the query and
// the rollback write take the rest. The failure instants of successive iterations are spread
// over the window grid (a golden-ratio sequence: even for any number of iterations), so the
// median is that of a failure at a random moment.
//
// Reported: detect-s/op, the median detection time over the iterations (a median, not a sum
// divided by the iterations); max-detect-s, the slowest; target-s, the bound. ns/op times one
// meshroll run from its start to the rollback (the first window, the failure's phase, the
// detection) and is of little interest. Several iterations give a meaningful median:
//
//	MESHROLL_TEST_ASSETS=$HOME/.cache/meshroll/k8s-v1.37.2 go test -run '^$' -bench DetectionLatency -benchtime 5x ./internal/app/
//
// b.Loop runs the setup (namespace, mesh, Prometheus, stable data: ~8s) once per call, outside
// the timer. One iteration takes 8-13s, plus ~7s outside the timer before each later one,
// waiting for the previous failure to leave the analysis window. With the default
// -benchtime=1s the first iteration already exceeds it and b.Loop stops there, so each of the
// 5 calls of `make bench` (-count 5) takes about 20s.
func BenchmarkDetectionLatency(b *testing.B) {
	r := newRig(b, rigOptions{rps: 100})
	target := detectionInterval + scrapeInterval + 2*time.Second
	// The 5xx of the canary in the last window: meshroll's success rate sees them until they
	// are older than one interval (plus two scrapes, to be sure the last ones were scraped).
	recentErrors := volumeQuery(r.ns, "reviews-v2", "5..", strconv.Itoa(int((detectionInterval+2*scrapeInterval)/time.Second))+"s")
	var detect []float64
	for i := 0; b.Loop(); i++ {
		if i > 0 {
			// A healthy canary again, and no error of the previous iteration left in the window
			// that this one judges first. The VirtualService is on stable (v1 100, v2 0) after
			// every rollback, as it was when created.
			b.StopTimer()
			r.mesh.SetBehaviour("v2", 0, 0)
			ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
			err := r.prom.WaitForSeries(ctx, fmt.Sprintf("(%s or vector(0)) == 0", recentErrors))
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		m := r.start(b,
			"MESHROLL_STEPS=20,50",
			"MESHROLL_STEP_DURATION=10m", // the failure always comes during the first hold
			"MESHROLL_ANALYSIS_INTERVAL="+detectionInterval.String(),
			"MESHROLL_FAILURE_THRESHOLD=1",
			"MESHROLL_MIN_REQUESTS=10",
			"MESHROLL_TIMEOUT=2m",
		)
		// The first window has been judged, a few ms after the window grid's first tick. The
		// failure comes at this iteration's phase in the grid: a deliberate wait, not one for
		// a condition.
		m.waitForOutput(b, regexp.MustCompile(`step 1/2 window 1 at`))
		phase := math.Mod(0.5+float64(i)*0.6180339887, 1)
		time.Sleep(time.Duration(phase * float64(detectionInterval)))
		r.mesh.SetBehaviour("v2", 1, 0)
		failedAt := time.Now()

		took := r.untilStable(b, failedAt)
		got := m.wait(b)
		got.expect(b, 3, "canary-failed")
		got.expectOutput(b, "the canary is worse than stable: 5xx")
		detect = append(detect, took.Seconds())
		b.Logf("iteration %d: failure %.2fs after the first window, traffic back on stable %.2fs later (target %v)",
			i+1, phase*detectionInterval.Seconds(), took.Seconds(), target)
	}
	slices.Sort(detect)
	b.ReportMetric(median(detect), "detect-s/op")
	b.ReportMetric(detect[len(detect)-1], "max-detect-s")
	b.ReportMetric(target.Seconds(), "target-s")
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// BenchmarkCancelRollback measures how long traffic stays on the canary after a cancel
// (SIGINT or SIGTERM from the CI system, which kills the process a few seconds later): from
// the cancel during a held, judged step until the VirtualService read back from the API server
// (every 50ms) has all traffic on stable. target-s is the 5s that CI systems commonly give
// between SIGTERM and SIGKILL (MESHROLL_ON_CANCEL=rollback's budget).
//
//	MESHROLL_TEST_ASSETS=$HOME/.cache/meshroll/k8s-v1.37.2 go test -run '^$' -bench CancelRollback -benchtime 5x ./internal/app/
func BenchmarkCancelRollback(b *testing.B) {
	r := newRig(b, rigOptions{rps: 50})
	var back []float64
	for b.Loop() {
		m := r.start(b, "MESHROLL_STEP_DURATION=10m", "MESHROLL_TIMEOUT=2m")
		m.waitForOutput(b, regexp.MustCompile(`step 1/3 window 1 at`))
		cancelled := time.Now()
		m.cancel()
		took := r.untilStable(b, cancelled)
		m.wait(b).expect(b, 130, "cancelled")
		back = append(back, took.Seconds())
	}
	slices.Sort(back)
	b.ReportMetric(median(back), "back-s/op")
	b.ReportMetric(back[len(back)-1], "max-back-s")
	b.ReportMetric(5, "target-s")
}
