package analysis

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPreflight(t *testing.T) {
	t.Parallel()
	const probe = `sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v1"}[300s]))`
	tests := []struct {
		name    string
		answers map[string]string
		checks  []Check
		reject  string // a query substring answered with 400 bad_data
		status  int    // every query answered with this status
		wantIs  []error
		want    []string // each problem, one per line
	}{
		{
			name:    "healthy stable, canary without traffic yet",
			answers: with(healthy(), map[string]string{"volume/canary": vectorBody(), "success/canary": vectorBody(), "latency/canary": vectorBody("NaN")}),
		},
		{
			name:    "stable without data names the labels to check",
			answers: with(healthy(), map[string]string{"probe/stable": vectorBody()}),
			wantIs:  []error{ErrNoData},
			want: []string{
				"failed to check the analysis queries: no requests recorded for the stable workload in the last 5m (query: " + probe + "); " +
					`check MESHROLL_STABLE_WORKLOAD (destination_workload="cart-v1"), MESHROLL_REPORTER (reporter="destination") and ` +
					`MESHROLL_NAMESPACE (destination_workload_namespace="shop"), and that Prometheus scrapes the mesh's Istio metrics: the query returned no series: no data`,
			},
		},
		{
			name:    "every rejected or ill-shaped query reported at once",
			answers: with(healthy(), map[string]string{"probe/stable": vectorBody(), "rate(requests[30s])": vectorBody("1", "2")}),
			checks: []Check{
				{Name: "typo", Query: "sum(rate(requests[{{.Interval}}])", Max: ptr(1)},
				{Name: "per-pod", Query: "rate(requests[{{.Interval}}])", Max: ptr(1)},
			},
			reject: "sum(rate(requests[30s])",
			wantIs: []error{ErrQuery, ErrNoData},
			want: []string{
				"failed to check the analysis queries: check typo (canary): failed to run query sum(rate(requests[30s]): Prometheus rejected it: 1:25: parse error: unclosed left parenthesis: invalid query",
				"check per-pod (canary): query rate(requests[30s]) returned 2 series where one value is expected; aggregate it, e.g. sum(...): invalid query",
				"no requests recorded for the stable workload in the last 5m (query: " + probe + "); " +
					`check MESHROLL_STABLE_WORKLOAD (destination_workload="cart-v1"), MESHROLL_REPORTER (reporter="destination") and ` +
					`MESHROLL_NAMESPACE (destination_workload_namespace="shop"), and that Prometheus scrapes the mesh's Istio metrics: the query returned no series: no data`,
			},
		},
		{
			name:   "refused credentials, said once",
			status: http.StatusUnauthorized,
			wantIs: []error{ErrUnauthorized},
		},
		{
			name:   "unavailable",
			status: http.StatusBadGateway,
			wantIs: []error{ErrUnavailable},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			healthyAnswers := answers(tt.answers)
			prom := newFakeProm(t, func(r *http.Request, q string, call int) (int, string) {
				switch {
				case tt.status != 0:
					return tt.status, "go away"
				case tt.reject != "" && strings.HasPrefix(q, tt.reject):
					return http.StatusBadRequest, errorBody("bad_data", "1:25: parse error: unclosed left parenthesis")
				}
				return healthyAnswers(r, q, call)
			})
			s := testSettings(prom.URL)
			s.Checks = tt.checks
			a, err := New(s)
			if err != nil {
				t.Fatal(err)
			}
			err = a.Preflight(t.Context())
			if len(tt.wantIs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil {
				t.Fatal("Preflight passed, want an error")
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("error %v does not wrap %v", err, target)
				}
			}
			if tt.want != nil {
				if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
					t.Errorf("problems (-want +got):\n%s", diff)
				}
			}
			if tt.status == http.StatusUnauthorized && strings.Count(err.Error(), "refused the credentials") != 1 {
				t.Errorf("the refusal is repeated:\n%s", err)
			}
			// Every query was sent once (retries aside): 6 built-ins, the
			// custom ones and the stable probe.
			if tt.status == 0 {
				if got, want := prom.requestCount(), 7+len(tt.checks); got != want {
					t.Errorf("%d queries sent, want %d", got, want)
				}
			}
		})
	}
}

// A Prometheus slower than half the analysis interval once does not fail the preflight:
// nothing has moved yet, so its answer is waited for. Each query's first answer comes after
// the window budget (half of the 2s interval) has passed; a window, which must keep to that
// budget, gives up on the same answers.
func TestPreflightWaitsForASlowAnswer(t *testing.T) {
	t.Parallel()
	const slow = 1200 * time.Millisecond
	slowFirst := func(t *testing.T) Settings {
		healthyAnswers := answers(healthy())
		prom := newFakeProm(t, func(r *http.Request, q string, call int) (int, string) {
			if call == 1 {
				select {
				case <-time.After(slow):
				case <-r.Context().Done():
				}
			}
			return healthyAnswers(r, q, call)
		})
		s := testSettings(prom.URL)
		s.Interval = 2 * time.Second
		return s
	}
	t.Run("preflight", func(t *testing.T) {
		t.Parallel()
		a, err := New(slowFirst(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Preflight(t.Context()); err != nil {
			t.Fatalf("Preflight failed on answers slower than half the interval: %v", err)
		}
	})
	t.Run("window", func(t *testing.T) {
		t.Parallel()
		a, err := New(slowFirst(t))
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Evaluate(t.Context(), at)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Evaluate = %v, want ErrUnavailable after half the interval", err)
		}
		if want := " cannot be reached after 1 attempt in 1s (half the analysis interval): no answer within 1s\nquery: "; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	})
}
