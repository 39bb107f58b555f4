package gates

import (
	"context"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/config"
)

// loadTarget is a loopback server that counts what it received.
type loadTarget struct {
	*httptest.Server
	received atomic.Int64 // requests that reached the handler
	non2xx   atomic.Int64 // of those, answered with another status than 2xx
}

// newLoadTarget serves respond(n) for the n-th request (from 1); respond writes the answer.
func newLoadTarget(t *testing.T, respond func(n int64, w http.ResponseWriter, r *http.Request) int) *loadTarget {
	t.Helper()
	lt := &loadTarget{}
	lt.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := respond(lt.received.Add(1), w, r); code < 200 || code > 299 {
			lt.non2xx.Add(1)
		}
	}))
	t.Cleanup(lt.Close)
	return lt
}

// waitFor polls cond; it fails the test only if cond never holds (the bound is not a speed).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
	}
}

// atMost is the most requests a constant rate may start in elapsed: vegeta's pacer sends the
// n-th request no sooner than n intervals after the start.
func atMost(rps int, elapsed time.Duration) int64 {
	return int64(math.Floor(float64(rps)*elapsed.Seconds())) + 1
}

func TestLoadCountsWhatTheServerReceived(t *testing.T) {
	t.Parallel()
	const rps = 50
	var mu sync.Mutex
	var wrongHeaders []string
	lt := newLoadTarget(t, func(_ int64, w http.ResponseWriter, r *http.Request) int {
		if got := r.Header.Get("Authorization") + "|" + r.Header.Get("X-Canary") + "|" + r.Host; got != "Bearer s3cret|always|reviews.example" {
			mu.Lock()
			wrongHeaders = append(wrongHeaders, got)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	})

	begin := time.Now()
	ld := StartLoad(t.Context(), config.LoadGenerator{
		URL:     lt.URL + "/health",
		RPS:     rps,
		Headers: map[string]string{"Authorization": "Bearer s3cret", "x-canary": "always", "Host": "reviews.example"},
	})
	waitFor(t, "10 requests received", func() bool { return lt.received.Load() >= 10 })
	stats := ld.Stop()
	elapsed := time.Since(begin)

	// Stop waited for the requests in flight, so the client counted what the server received.
	if got, want := stats.Requests, lt.received.Load(); got != want {
		t.Errorf("Requests = %d, the server received %d", got, want)
	}
	if most := atMost(rps, elapsed); stats.Requests < 10 || stats.Requests > most {
		t.Errorf("Requests = %d in %v at %d/s, want 10 to %d", stats.Requests, elapsed, rps, most)
	}
	if stats.Non2xx != 0 {
		t.Errorf("Non2xx = %d, want 0", stats.Non2xx)
	}
	if stats.Rate <= 0 || stats.Rate > 1.5*rps {
		t.Errorf("Rate = %.1f, want above 0 and at most 1.5 × %d", stats.Rate, rps)
	}
	if stats.P50 <= 0 || stats.P99 < stats.P50 {
		t.Errorf("P50 = %v, P99 = %v: want 0 < p50 ≤ p99", stats.P50, stats.P99)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(wrongHeaders) > 0 {
		t.Errorf("requests without the configured headers and host (Authorization|X-Canary|Host): %q", wrongHeaders)
	}
}

func TestLoadCountsNon2xxAndFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var redirected atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		redirected.Add(1)
	}))
	t.Cleanup(elsewhere.Close)
	lt := newLoadTarget(t, func(n int64, w http.ResponseWriter, r *http.Request) int {
		switch n % 3 {
		case 0:
			w.WriteHeader(http.StatusServiceUnavailable)
			return http.StatusServiceUnavailable
		case 1:
			http.Redirect(w, r, elsewhere.URL, http.StatusFound)
			return http.StatusFound
		default:
			w.WriteHeader(http.StatusNoContent)
			return http.StatusNoContent
		}
	})

	ld := StartLoad(t.Context(), config.LoadGenerator{URL: lt.URL, RPS: 100})
	waitFor(t, "9 requests received", func() bool { return lt.received.Load() >= 9 })
	stats := ld.Stop()

	want := LoadStats{Requests: lt.received.Load(), Non2xx: lt.non2xx.Load()}
	got := LoadStats{Requests: stats.Requests, Non2xx: stats.Non2xx}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-server +load):\n%s", diff)
	}
	if n := redirected.Load(); n != 0 {
		t.Errorf("%d redirects were followed; the headers must not go to another address", n)
	}
}

func TestLoadStopIsPromptAndIdempotent(t *testing.T) {
	t.Parallel()
	// The target never answers: it holds every request until the client goes away.
	lt := newLoadTarget(t, func(_ int64, _ http.ResponseWriter, r *http.Request) int {
		<-r.Context().Done()
		return http.StatusOK
	})

	ld := StartLoad(t.Context(), config.LoadGenerator{URL: lt.URL, RPS: 20})
	waitFor(t, "2 requests held by the server", func() bool { return lt.received.Load() >= 2 })
	begin := time.Now()
	first := ld.Stop()
	took := time.Since(begin)

	// Waiting for the held requests would take the request timeout; Stop cut them short.
	if took >= loadRequestTimeout {
		t.Errorf("Stop took %v, as long as a request's timeout (%v): it waited for the requests", took, loadRequestTimeout)
	}
	if diff := cmp.Diff(LoadStats{}, first); diff != "" {
		t.Errorf("requests cut short are not counted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(first, ld.Stop()); diff != "" {
		t.Errorf("a second Stop returned other figures (-first +second):\n%s", diff)
	}
	if got, want := first.String(), "0 requests at 0.0/s, 0 non-2xx"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestLoadStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	const rps = 100
	lt := newLoadTarget(t, func(_ int64, w http.ResponseWriter, _ *http.Request) int {
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	})

	ctx, cancel := context.WithCancel(t.Context())
	begin := time.Now()
	ld := StartLoad(ctx, config.LoadGenerator{URL: lt.URL, RPS: rps})
	waitFor(t, "5 requests received", func() bool { return lt.received.Load() >= 5 })
	cancel()
	sending := time.Since(begin) // no request may start after cancel returned
	// A load that went on would send about 10 more requests while the test waits here.
	time.Sleep(100 * time.Millisecond)
	stats := ld.Stop()
	lt.Close() // waits for the handlers of every request that reached the server

	if most := atMost(rps, sending); lt.received.Load() > most {
		t.Errorf("the server received %d requests; at %d/s for the %v until the context ended, at most %d", lt.received.Load(), rps, sending, most)
	}
	// Requests the end of the context cut off are not counted: on a busy machine that can be
	// every one of them, so only the upper bound holds whatever the machine's speed.
	if stats.Requests > lt.received.Load() {
		t.Errorf("Requests = %d, more than the %d the server received", stats.Requests, lt.received.Load())
	}
}

func TestLoadWithAnEndedContextSendsNothing(t *testing.T) {
	t.Parallel()
	lt := newLoadTarget(t, func(_ int64, w http.ResponseWriter, _ *http.Request) int {
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	stats := StartLoad(ctx, config.LoadGenerator{URL: lt.URL, RPS: 1000}).Stop()
	lt.Close()

	if diff := cmp.Diff(LoadStats{}, stats); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if n := lt.received.Load(); n != 0 {
		t.Errorf("the server received %d requests, want none", n)
	}
}

func TestLoadVerifiesCertificates(t *testing.T) {
	t.Parallel()
	var served atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }))
	handshakeFailed := make(chan struct{})
	var once sync.Once
	// The server logs each refused handshake; the first tells that the load tried.
	srv.Config.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
		once.Do(func() { close(handshakeFailed) })
		return len(p), nil
	}), "", 0)
	srv.StartTLS() // a certificate no system pool trusts
	t.Cleanup(srv.Close)

	ld := StartLoad(t.Context(), config.LoadGenerator{URL: srv.URL, RPS: 50})
	waitFor(t, "a refused handshake", func() bool { return isClosed(handshakeFailed) })
	stats := ld.Stop()

	if served.Load() != 0 {
		t.Errorf("the handler served %d requests through an unverified certificate", served.Load())
	}
	if stats.Requests < 1 || stats.Non2xx != stats.Requests {
		t.Errorf("Requests = %d, Non2xx = %d: want every failed request counted as non-2xx", stats.Requests, stats.Non2xx)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestLoadWithoutURLOrRateSendsNothing(t *testing.T) {
	t.Parallel()
	for name, l := range map[string]config.LoadGenerator{
		"no URL":    {RPS: 10},
		"zero rate": {URL: "http://127.0.0.1:1/", RPS: 0}, // vegeta reads a zero rate as unlimited
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(LoadStats{}, StartLoad(t.Context(), l).Stop()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadStatsString(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		stats LoadStats
		want  string
	}{
		"the issue's line": {
			LoadStats{Requests: 1200, Non2xx: 3, P50: 12 * time.Millisecond, P99: 48 * time.Millisecond, Rate: 20},
			"1,200 requests at 20.0/s, 3 non-2xx, p50 12ms, p99 48ms",
		},
		"one request, sub-millisecond": {
			LoadStats{Requests: 1, P50: 420 * time.Microsecond, P99: 420 * time.Microsecond, Rate: 0.5},
			"1 request at 0.5/s, 0 non-2xx, p50 0.4ms, p99 0.4ms",
		},
		"millions, seconds": {
			LoadStats{Requests: 1234567, Non2xx: 1000, P50: 1250 * time.Millisecond, P99: 12 * time.Second, Rate: 1000},
			"1,234,567 requests at 1000.0/s, 1,000 non-2xx, p50 1.25s, p99 12.00s",
		},
		"nothing": {LoadStats{}, "0 requests at 0.0/s, 0 non-2xx"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := tc.stats.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// BenchmarkLoadRate holds 200 requests a second for 2 seconds against a loopback server and
// reports the rate achieved and the client's latencies.
func BenchmarkLoadRate(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)
	const rps, hold = 200, 2 * time.Second
	var last LoadStats
	for b.Loop() {
		ld := StartLoad(b.Context(), config.LoadGenerator{URL: srv.URL, RPS: rps})
		time.Sleep(hold)
		last = ld.Stop()
		if last.Non2xx != 0 {
			b.Fatalf("%s: want no non-2xx", last)
		}
	}
	b.ReportMetric(last.Rate, "req/s")
	b.ReportMetric(last.Rate/rps*100, "%-of-target")
	b.ReportMetric(float64(last.P50.Microseconds()), "p50-us")
	b.ReportMetric(float64(last.P99.Microseconds()), "p99-us")
}
