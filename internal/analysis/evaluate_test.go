package analysis

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var at = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	const (
		// The queries as the fake sees them, for messages that name them.
		canarySuccess = `100 * (sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2",response_code!~"5.."}[30s])) or vector(0)) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2"}[30s]))`
		canaryLatency = `histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2"}[30s])))`
		stableLatency = `histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v1"}[30s])))`
	)
	volume := func(canary, stable *float64, v Verdict, msg string) Result {
		return Result{Check: "request-volume", Canary: canary, Stable: stable, Threshold: "≥ 20 requests", Verdict: v, Message: msg}
	}
	success := func(canary, stable *float64, v Verdict, msg string) Result {
		return Result{Check: "success-rate", Canary: canary, Stable: stable, Threshold: "≥ 99%", Verdict: v, Message: msg}
	}
	latency := func(canary, stable *float64, v Verdict, msg string) Result {
		return Result{Check: "latency-p99", Canary: canary, Stable: stable, Threshold: "≤ 500 ms", Verdict: v, Message: msg}
	}
	const tooFew = "the canary served 7 requests in the last 30s, fewer than the 20 needed to judge a window"

	tests := []struct {
		name    string
		answers map[string]string
		checks  []Check
		want    []Result
		judged  bool
	}{
		{
			name:    "healthy canary passes",
			answers: healthy(),
			want: []Result{
				volume(ptr(120), ptr(1000), VerdictPass, ""),
				success(ptr(99.5), ptr(99.9), VerdictPass, ""),
				latency(ptr(230), ptr(210), VerdictPass, ""),
			},
			judged: true,
		},
		{
			name:    "low success rate and slow canary fail",
			answers: with(healthy(), map[string]string{"success/canary": vectorBody("97.25"), "latency/canary": vectorBody("812.5")}),
			want: []Result{
				volume(ptr(120), ptr(1000), VerdictPass, ""),
				success(ptr(97.25), ptr(99.9), VerdictFail, "canary success rate 97.25% is below 99%"),
				latency(ptr(812.5), ptr(210), VerdictFail, "canary p99 latency 812.5 ms is above 500 ms"),
			},
			judged: true,
		},
		{
			name:    "exactly on the thresholds passes",
			answers: with(healthy(), map[string]string{"volume/canary": vectorBody("20"), "success/canary": vectorBody("99"), "latency/canary": vectorBody("500")}),
			want: []Result{
				volume(ptr(20), ptr(1000), VerdictPass, ""),
				success(ptr(99), ptr(99.9), VerdictPass, ""),
				latency(ptr(500), ptr(210), VerdictPass, ""),
			},
			judged: true,
		},
		{
			name:    "only 5xx reads as 0%, a failure",
			answers: with(healthy(), map[string]string{"success/canary": vectorBody("0")}),
			want: []Result{
				volume(ptr(120), ptr(1000), VerdictPass, ""),
				success(ptr(0), ptr(99.9), VerdictFail, "canary success rate 0% is below 99%"),
				latency(ptr(230), ptr(210), VerdictPass, ""),
			},
			judged: true,
		},
		{
			name:    "too few requests: every canary built-in is no-data, never a failure",
			answers: with(healthy(), map[string]string{"volume/canary": vectorBody("7"), "success/canary": vectorBody("50")}),
			want: []Result{
				volume(ptr(7), ptr(1000), VerdictNoData, tooFew),
				success(ptr(50), ptr(99.9), VerdictNoData, tooFew),
				latency(ptr(230), ptr(210), VerdictNoData, tooFew),
			},
		},
		{
			name:    "request counts are whole requests, judged as shown",
			answers: with(healthy(), map[string]string{"volume/canary": vectorBody("79.5"), "volume/stable": vectorBody("1236.4")}),
			want: []Result{
				volume(ptr(80), ptr(1236), VerdictPass, ""),
				success(ptr(99.5), ptr(99.9), VerdictPass, ""),
				latency(ptr(230), ptr(210), VerdictPass, ""),
			},
			judged: true,
		},
		{
			name:    "a fractional count below the minimum is too few whole requests",
			answers: with(healthy(), map[string]string{"volume/canary": vectorBody("19.4")}),
			want: []Result{
				volume(ptr(19), ptr(1000), VerdictNoData, "the canary served 19 requests in the last 30s, fewer than the 20 needed to judge a window"),
				success(ptr(99.5), ptr(99.9), VerdictNoData, "the canary served 19 requests in the last 30s, fewer than the 20 needed to judge a window"),
				latency(ptr(230), ptr(210), VerdictNoData, "the canary served 19 requests in the last 30s, fewer than the 20 needed to judge a window"),
			},
		},
		{
			name:    "no canary series at all",
			answers: with(healthy(), map[string]string{"volume/canary": vectorBody(), "success/canary": vectorBody(), "latency/canary": vectorBody("NaN")}),
			want: []Result{
				volume(nil, ptr(1000), VerdictNoData, "no requests recorded for the canary in the last 30s; at least 20 are needed to judge a window"),
				success(nil, ptr(99.9), VerdictNoData, "no requests recorded for the canary in the last 30s; at least 20 are needed to judge a window"),
				latency(nil, ptr(210), VerdictNoData, "no requests recorded for the canary in the last 30s; at least 20 are needed to judge a window"),
			},
		},
		{
			name:    "NaN and +Inf are no-data",
			answers: with(healthy(), map[string]string{"success/canary": vectorBody("NaN"), "latency/canary": vectorBody("+Inf")}),
			want: []Result{
				volume(ptr(120), ptr(1000), VerdictPass, ""),
				success(nil, ptr(99.9), VerdictNoData, "no data for the canary: the query returned NaN (no requests in the window?): no data"),
				latency(nil, ptr(210), VerdictNoData, "no data for the canary: the query returned +Inf (a division by zero?): no data"),
			},
		},
		{
			name:    "stable without data is reported as missing, not judged",
			answers: with(healthy(), map[string]string{"volume/stable": vectorBody(), "success/stable": vectorBody("NaN"), "latency/stable": vectorBody("-Inf")}),
			want: []Result{
				volume(ptr(120), nil, VerdictPass, ""),
				success(ptr(99.5), nil, VerdictPass, ""),
				latency(ptr(230), nil, VerdictPass, ""),
			},
			judged: true,
		},
		{
			name:    "multi-series where one value is expected is an error naming the query",
			answers: with(healthy(), map[string]string{"latency/canary": vectorBody("200", "300")}),
			want: []Result{
				volume(ptr(120), ptr(1000), VerdictPass, ""),
				success(ptr(99.5), ptr(99.9), VerdictPass, ""),
				latency(nil, ptr(210), VerdictError, "query "+canaryLatency+" returned 2 series where one value is expected; aggregate it, e.g. sum(...): invalid query"),
			},
		},
		{
			name:    "a stable query error is a note, the canary is still judged",
			answers: with(healthy(), map[string]string{"latency/stable": matrixBody("1")}),
			want: []Result{
				volume(ptr(120), ptr(1000), VerdictPass, ""),
				success(ptr(99.5), ptr(99.9), VerdictPass, ""),
				latency(ptr(230), nil, VerdictPass, "stable value unavailable: query "+stableLatency+" returned a matrix where one instant-vector value is expected; aggregate it, e.g. sum(...) or vector(...): invalid query"),
			},
			judged: true,
		},
		{
			name:    "a rejected query is an error result",
			answers: with(healthy(), map[string]string{"success/canary": "reject"}),
			want: []Result{
				volume(ptr(120), ptr(1000), VerdictPass, ""),
				success(nil, ptr(99.9), VerdictError, "failed to run query "+canarySuccess+": Prometheus rejected it: parse error: unexpected character: invalid query"),
				latency(ptr(230), ptr(210), VerdictPass, ""),
			},
		},
		{
			name:    "volume unknown: the other built-ins cannot be judged",
			answers: with(healthy(), map[string]string{"volume/canary": scalarBody("120")}),
			want: []Result{
				volume(nil, ptr(1000), VerdictError, `query sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2"}[30s])) returned a scalar where one instant-vector value is expected; aggregate it, e.g. sum(...) or vector(...): invalid query`),
				success(ptr(99.5), ptr(99.9), VerdictNoData, "the canary's request volume is unknown (its query failed), so this window cannot be judged"),
				latency(ptr(230), ptr(210), VerdictNoData, "the canary's request volume is unknown (its query failed), so this window cannot be judged"),
			},
		},
		{
			name: "custom checks: pass, fail either bound, no data; judged even with few requests",
			answers: with(healthy(), map[string]string{
				"volume/canary":            vectorBody("7"),
				`sum(errors{w="cart-v2"})`: vectorBody("3"),
				`sum(queue{w="cart-v2"})`:  vectorBody("9"),
				`sum(cpu{w="cart-v2"})`:    vectorBody("0.05"),
			}),
			checks: []Check{
				{Name: "errors", Query: `sum(errors{w="{{.CanaryWorkload}}"})`, Min: ptr(0), Max: ptr(5)},
				{Name: "queue", Query: `sum(queue{w="{{.CanaryWorkload}}"})`, Max: ptr(5)},
				{Name: "cpu", Query: `sum(cpu{w="{{.CanaryWorkload}}"})`, Min: ptr(0.1)},
				{Name: "absent", Query: `sum(absent{w="{{.CanaryWorkload}}"})`, Min: ptr(1)},
			},
			want: []Result{
				volume(ptr(7), ptr(1000), VerdictNoData, tooFew),
				success(ptr(99.5), ptr(99.9), VerdictNoData, tooFew),
				latency(ptr(230), ptr(210), VerdictNoData, tooFew),
				{Check: "errors", Canary: ptr(3), Threshold: "between 0 and 5", Verdict: VerdictPass},
				{Check: "queue", Canary: ptr(9), Threshold: "≤ 5", Verdict: VerdictFail, Message: "canary value 9 is above the maximum 5"},
				{Check: "cpu", Canary: ptr(0.05), Threshold: "≥ 0.1", Verdict: VerdictFail, Message: "canary value 0.05 is below the minimum 0.1"},
				{Check: "absent", Threshold: "≥ 1", Verdict: VerdictNoData, Message: "no data for the canary: the query returned no series: no data"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prom := newFakeProm(t, func(r *http.Request, q string, call int) (int, string) {
				if tt.answers[istioKey(q)] == "reject" {
					return http.StatusBadRequest, errorBody("bad_data", "parse error: unexpected character")
				}
				return answers(tt.answers)(r, q, call)
			})
			s := testSettings(prom.URL)
			s.Checks = tt.checks
			a, err := New(s)
			if err != nil {
				t.Fatal(err)
			}
			w, err := a.Evaluate(t.Context(), at)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(Window{At: at, Results: tt.want}, w); diff != "" {
				t.Errorf("Evaluate (-want +got):\n%s", diff)
			}
			if got := w.Judged(); got != tt.judged {
				t.Errorf("Judged() = %v, want %v", got, tt.judged)
			}
			for _, r := range prom.seen() {
				if got := r.FormValue("time"); got != "1767323045" {
					t.Errorf("query evaluated at time=%q, want the window's instant 1767323045", got)
				}
			}
		})
	}
}

func TestWindow(t *testing.T) {
	t.Parallel()
	pass := Result{Check: "a", Verdict: VerdictPass}
	fail := Result{Check: "b", Verdict: VerdictFail}
	noData := Result{Check: "c", Verdict: VerdictNoData}
	errored := Result{Check: "d", Verdict: VerdictError}
	tests := []struct {
		name    string
		results []Result
		judged  bool
		failed  []Result
		errored []Result
	}{
		{name: "empty window judges nothing"},
		{name: "all pass", results: []Result{pass, pass}, judged: true},
		{name: "a failure is still judged", results: []Result{pass, fail}, judged: true, failed: []Result{fail}},
		{name: "no data is not judged", results: []Result{pass, noData, fail}, failed: []Result{fail}},
		{name: "an error is not judged", results: []Result{errored, pass}, errored: []Result{errored}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := Window{Results: tt.results}
			if got := w.Judged(); got != tt.judged {
				t.Errorf("Judged() = %v, want %v", got, tt.judged)
			}
			if diff := cmp.Diff(tt.failed, w.Failed()); diff != "" {
				t.Errorf("Failed() (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.errored, w.Errored()); diff != "" {
				t.Errorf("Errored() (-want +got):\n%s", diff)
			}
		})
	}
}

// signalled is the cause main.go cancels the run with on a signal: a context.Canceled that
// says what cancelled.
type signalled struct{}

func (signalled) Error() string        { return "cancelled by SIGTERM" }
func (signalled) Is(target error) bool { return target == context.Canceled }

// An already-cancelled context sends nothing and says why it was cancelled.
func TestCancelledContext(t *testing.T) {
	t.Parallel()
	prom := newFakeProm(t, answers(healthy()))
	a, err := New(testSettings(prom.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(signalled{})
	tests := []struct {
		name string
		run  func() error
	}{
		{name: "Evaluate", run: func() error { _, err := a.Evaluate(ctx, at); return err }},
		{name: "Preflight", run: func() error { return a.Preflight(ctx) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.run()
			if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
				t.Errorf("error = %v, want context.Canceled and not ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), "cancelled by SIGTERM") || strings.Contains(err.Error(), "context canceled") {
				t.Errorf("error %q does not say what cancelled it", err)
			}
		})
	}
	t.Cleanup(func() {
		if n := prom.requestCount(); n != 0 {
			t.Errorf("%d requests sent with a cancelled context", n)
		}
	})
}

// Cancelling while Prometheus is slow returns promptly with the context's
// error, not ErrUnavailable (which would read as an infrastructure failure).
func TestCancelDuringEvaluate(t *testing.T) {
	t.Parallel()
	prom := newHangingProm(t)
	s := testSettings(prom.URL)
	s.Interval = time.Minute
	a, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = a.Evaluate(ctx, at)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Errorf("error = %v, want context.DeadlineExceeded and not ErrUnavailable", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Evaluate took %s after its context ended", took)
	}
	if !strings.Contains(err.Error(), "failed to") {
		t.Errorf("error %q does not say what failed", err)
	}
}

// Cancelling while a query waits for Prometheus returns the reason it was cancelled.
func TestCancelCauseDuringEvaluate(t *testing.T) {
	t.Parallel()
	prom := newHangingProm(t)
	s := testSettings(prom.URL)
	s.Interval = time.Minute
	a, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	time.AfterFunc(100*time.Millisecond, func() { cancel(signalled{}) })
	_, err = a.Evaluate(ctx, at)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("error = %v, want context.Canceled and not ErrUnavailable", err)
	}
	if err == nil || !strings.Contains(err.Error(), "cancelled by SIGTERM") || strings.Contains(err.Error(), "context canceled") {
		t.Errorf("error %v does not say what cancelled it", err)
	}
}
