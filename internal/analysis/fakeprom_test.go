package analysis

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshroll/meshroll/internal/config"
)

// fakeProm speaks enough of the Prometheus HTTP API (/api/v1/query) for the
// analysis: each test decides what a query answers. Real Prometheus is used
// by the end-to-end tests; this fake is for the cases it cannot produce on
// demand (503s, NaN, multi-series, hanging).
type fakeProm struct {
	*httptest.Server
	respond func(r *http.Request, query string, call int) (status int, body string)

	mu       sync.Mutex
	calls    map[string]int
	requests []*http.Request
}

func newFakeProm(t *testing.T, respond func(r *http.Request, query string, call int) (int, string)) *fakeProm {
	t.Helper()
	f := &fakeProm{respond: respond, calls: map[string]int{}}
	f.Server = httptest.NewServer(f)
	t.Cleanup(f.Close)
	return f
}

// newHangingProm is a Prometheus that answers a request only when it is cancelled or the
// test ends.
func newHangingProm(t *testing.T) *fakeProm {
	t.Helper()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return newFakeProm(t, func(r *http.Request, _ string, _ int) (int, string) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return http.StatusOK, vectorBody("1")
	})
}

func newFakePromTLS(t *testing.T, respond func(r *http.Request, query string, call int) (int, string)) *fakeProm {
	t.Helper()
	f := &fakeProm{respond: respond, calls: map[string]int{}}
	f.Server = httptest.NewUnstartedServer(f)
	// Refused handshakes are what the TLS tests are about, not news.
	f.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.StartTLS()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		writeAPI(w, http.StatusBadRequest, errorBody("bad_data", err.Error()))
		return
	}
	q := r.FormValue("query")
	f.mu.Lock()
	f.calls[q]++
	call := f.calls[q]
	f.requests = append(f.requests, r.Clone(r.Context()))
	f.mu.Unlock()
	status, body := f.respond(r, q, call)
	writeAPI(w, status, body)
}

func writeAPI(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

// requestCount is how many queries reached the server.
func (f *fakeProm) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeProm) seen() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.requests...)
}

// vectorBody answers an instant vector with one series per value; values
// are written as Prometheus does ("1.5", "NaN", "+Inf").
func vectorBody(values ...string) string {
	var series []string
	ts := float64(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Unix())
	for i, v := range values {
		series = append(series, fmt.Sprintf(`{"metric":{"pod":"p%d"},"value":[%v,%q]}`, i, ts, v))
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(series, ",") + `]}}`
}

func scalarBody(v string) string {
	return fmt.Sprintf(`{"status":"success","data":{"resultType":"scalar","result":[1767323045,%q]}}`, v)
}

func matrixBody(v string) string {
	return fmt.Sprintf(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1767323045,%q]]}]}}`, v)
}

func errorBody(errorType, msg string) string {
	return fmt.Sprintf(`{"status":"error","errorType":%q,"error":%q}`, errorType, msg)
}

// Settings and answers shared by the tests: the canary cart-v2 and the stable
// cart-v1 in namespace shop, judged every 30s.
const (
	canaryLabel = `destination_workload="cart-v2"`
	stableLabel = `destination_workload="cart-v1"`
)

func testSettings(url string) Settings {
	return Settings{
		Analysis: config.Analysis{
			PrometheusURL:  url,
			Interval:       30 * time.Second,
			MinSuccessRate: 99,
			MaxLatencyP99:  500,
			MinRequests:    20,
			CanaryWorkload: "cart-v2",
			StableWorkload: "cart-v1",
			Reporter:       "destination",
		},
		Namespace: "shop",
		Retries:   3,
		Backoff:   time.Millisecond,
	}
}

// istioKey names a built-in query as "<check>/<side>" ("volume/canary",
// "success/stable", "latency/canary", "probe/stable"); any other query is
// its own key.
func istioKey(q string) string {
	side := ""
	switch {
	case strings.Contains(q, canaryLabel):
		side = "canary"
	case strings.Contains(q, stableLabel):
		side = "stable"
	}
	switch {
	case side == "":
		return q
	case strings.Contains(q, "histogram_quantile"):
		return "latency/" + side
	case strings.Contains(q, `response_code!~"5.."`):
		return "success/" + side
	case strings.HasPrefix(q, "sum(increase(") && strings.HasSuffix(q, "[30s]))"):
		return "volume/" + side
	case strings.HasPrefix(q, "sum(increase("):
		return "probe/" + side
	}
	return q
}

// healthy is a window in which both versions served plenty of good requests.
func healthy() map[string]string {
	return map[string]string{
		"volume/canary":  vectorBody("120"),
		"volume/stable":  vectorBody("1000"),
		"success/canary": vectorBody("99.5"),
		"success/stable": vectorBody("99.9"),
		"latency/canary": vectorBody("230"),
		"latency/stable": vectorBody("210"),
		"probe/stable":   vectorBody("8000"),
	}
}

// answers responds from a map keyed by istioKey; unknown queries get an
// empty vector, like a selector that matches nothing.
func answers(m map[string]string) func(*http.Request, string, int) (int, string) {
	return func(_ *http.Request, q string, _ int) (int, string) {
		if body, ok := m[istioKey(q)]; ok {
			return http.StatusOK, body
		}
		return http.StatusOK, vectorBody()
	}
}

func with(m map[string]string, changes map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range changes {
		out[k] = v
	}
	return out
}

func ptr(v float64) *float64 { return &v }
