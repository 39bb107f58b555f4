package analysis

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// mtlsKey names the mtls check's queries as "plaintext/<side>" (its requests without mutual
// TLS) and "all/<side>" (all its requests, reporter="destination"); the tests run with
// MESHROLL_REPORTER=source, so that those are told from the request volume's. Other queries
// are named by istioKey.
func mtlsKey(q string) string {
	key := istioKey(q)
	side := key[strings.LastIndex(key, "/")+1:]
	switch {
	case strings.Contains(q, `connection_security_policy!="mutual_tls"`):
		return "plaintext/" + side
	case strings.Contains(q, `reporter="destination"`) && strings.HasPrefix(key, "volume/"):
		return "all/" + side
	}
	return key
}

// mtlsSettings are testSettings with the mtls check on and the source reporter.
func mtlsSettings(url string) Settings {
	s := testSettings(url)
	s.Reporter = "source"
	s.MTLS = true
	return s
}

// secureWindow is a window in which every request of both versions came with mutual TLS.
func secureWindow() map[string]string {
	return with(healthy(), map[string]string{
		"plaintext/canary": vectorBody("0"),
		"plaintext/stable": vectorBody("0"),
		"all/canary":       vectorBody("118.6"),
		"all/stable":       vectorBody("1000"),
	})
}

func TestEvaluateMTLS(t *testing.T) {
	t.Parallel()
	const (
		plaintext = "plaintext traffic reached the canary: its PeerAuthentication is not STRICT, and a client outside the mesh (or with mutual TLS disabled) called it"
		canaryAll = `sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2"}[30s]))`
		stableAll = `sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v1"}[30s]))`
		canaryNot = `sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2",connection_security_policy!="mutual_tls"}[30s])) or vector(0)`
	)
	mtls := func(canary, stable *float64, v Verdict, msg string) Result {
		return Result{Check: "mtls", Canary: canary, Stable: stable, Threshold: "100% mutual TLS", Verdict: v, Message: msg}
	}
	tests := []struct {
		name    string
		answers map[string]string
		want    Result
	}{
		{
			name:    "every request mutual TLS: exactly 100%, a pass",
			answers: secureWindow(),
			want:    mtls(ptr(100), ptr(100), VerdictPass, ""),
		},
		{
			name:    "a share of plaintext fails, with the count",
			answers: with(secureWindow(), map[string]string{"plaintext/canary": vectorBody("15"), "all/canary": vectorBody("120")}),
			want:    mtls(ptr(87.5), ptr(100), VerdictFail, "15 of 120 canary requests in the last 30s (12.5%) were not mutual TLS: "+plaintext),
		},
		{
			name:    "all plaintext: the two counts are the same series",
			answers: with(secureWindow(), map[string]string{"plaintext/canary": vectorBody("118.6"), "all/canary": vectorBody("118.6")}),
			want:    mtls(ptr(0), ptr(100), VerdictFail, "119 of 119 canary requests in the last 30s (100%) were not mutual TLS: "+plaintext),
		},
		{
			name:    "one plaintext request fails however few requests there were",
			answers: with(secureWindow(), map[string]string{"plaintext/canary": vectorBody("1.4"), "all/canary": vectorBody("3")}),
			want:    mtls(ptr(200.0/3), ptr(100), VerdictFail, "1 of 3 canary requests in the last 30s (33.3333%) were not mutual TLS: "+plaintext),
		},
		{
			name:    "the count of all requests a scrape behind the plaintext one",
			answers: with(secureWindow(), map[string]string{"plaintext/canary": vectorBody("5"), "all/canary": vectorBody("4")}),
			want:    mtls(ptr(0), ptr(100), VerdictFail, "5 of 5 canary requests in the last 30s (100%) were not mutual TLS: "+plaintext),
		},
		{
			name:    "no canary series: no-data, never a pass",
			answers: with(secureWindow(), map[string]string{"all/canary": vectorBody()}),
			want:    mtls(nil, ptr(100), VerdictNoData, `no requests recorded by the canary's proxy (reporter="destination") in the last 30s, so whether they came with mutual TLS is unknown`),
		},
		{
			name:    "canary series that did not grow: no-data",
			answers: with(secureWindow(), map[string]string{"all/canary": vectorBody("0")}),
			want:    mtls(nil, ptr(100), VerdictNoData, `no requests recorded by the canary's proxy (reporter="destination") in the last 30s, so whether they came with mutual TLS is unknown`),
		},
		{
			name:    "too few requests, all mutual TLS: no-data, the share kept for the record",
			answers: with(secureWindow(), map[string]string{"all/canary": vectorBody("7")}),
			want:    mtls(ptr(100), ptr(100), VerdictNoData, "the canary's proxy recorded 7 requests in the last 30s, fewer than the 20 needed to judge a window"),
		},
		{
			name:    "stable's share is shown, never judged",
			answers: with(secureWindow(), map[string]string{"plaintext/stable": vectorBody("50"), "all/stable": vectorBody("1000")}),
			want:    mtls(ptr(100), ptr(95), VerdictPass, ""),
		},
		{
			name:    "stable unavailable is a note",
			answers: with(secureWindow(), map[string]string{"all/stable": matrixBody("1000")}),
			want: mtls(ptr(100), nil, VerdictPass, "stable value unavailable: query "+stableAll+
				" returned a matrix where one instant-vector value is expected; aggregate it, e.g. sum(...) or vector(...): invalid query"),
		},
		{
			name:    "the plaintext count rejected: an error",
			answers: with(secureWindow(), map[string]string{"plaintext/canary": "reject"}),
			want:    mtls(nil, ptr(100), VerdictError, "failed to run query "+canaryNot+": Prometheus rejected it: parse error: unexpected character: invalid query"),
		},
		{
			name:    "all requests unknown, none plaintext: an error",
			answers: with(secureWindow(), map[string]string{"all/canary": scalarBody("120")}),
			want: mtls(nil, ptr(100), VerdictError, "query "+canaryAll+
				" returned a scalar where one instant-vector value is expected; aggregate it, e.g. sum(...) or vector(...): invalid query"),
		},
		{
			name:    "all requests unknown, some plaintext: still a failure",
			answers: with(secureWindow(), map[string]string{"all/canary": scalarBody("120"), "plaintext/canary": vectorBody("2")}),
			want: mtls(nil, ptr(100), VerdictFail, "2 canary requests in the last 30s were not mutual TLS: "+plaintext+
				"; the count of all its requests is unavailable: query "+canaryAll+
				" returned a scalar where one instant-vector value is expected; aggregate it, e.g. sum(...) or vector(...): invalid query"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prom := newFakeProm(t, func(_ *http.Request, q string, _ int) (int, string) {
				body, ok := tt.answers[mtlsKey(q)]
				switch {
				case body == "reject":
					return http.StatusBadRequest, errorBody("bad_data", "parse error: unexpected character")
				case !ok:
					return http.StatusOK, vectorBody()
				}
				return http.StatusOK, body
			})
			a, err := New(mtlsSettings(prom.URL))
			if err != nil {
				t.Fatal(err)
			}
			w, err := a.Evaluate(t.Context(), at)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range w.Results {
				names = append(names, r.Check)
			}
			// The guardrails' verdicts are TestEvaluate's; here only where mtls stands.
			if diff := cmp.Diff([]string{"request-volume", "success-rate", "latency-p99", "mtls"}, names); diff != "" {
				t.Fatalf("checks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, w.Results[3]); diff != "" {
				t.Errorf("mtls (-want +got):\n%s", diff)
			}
			failed := len(w.Failed()) > 0 && w.Failed()[0].Check == CheckMTLS
			if want := tt.want.Verdict == VerdictFail; failed != want {
				t.Errorf("mtls among the failed checks: %v, want %v", failed, want)
			}
		})
	}
}

// The preflight sends the mtls queries with the others, so that one Prometheus rejects stops
// the run before anything moves (ErrQuery: exit 2).
func TestPreflightMTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		reject string // a query substring answered with 400 bad_data
		want   []string
	}{
		{name: "accepted"},
		{
			name:   "the plaintext count rejected",
			reject: "connection_security_policy",
			want: []string{
				`failed to check the analysis queries: check mtls (canary): failed to run query sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2",connection_security_policy!="mutual_tls"}[30s])) or vector(0): Prometheus rejected it: 1:1: parse error: connection_security_policy: invalid query`,
				`check mtls (stable): failed to run query sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v1",connection_security_policy!="mutual_tls"}[30s])) or vector(0): Prometheus rejected it: 1:1: parse error: connection_security_policy: invalid query`,
			},
		},
		{
			name:   "the count of all requests rejected",
			reject: `reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2"}`,
			want: []string{
				`failed to check the analysis queries: check mtls (canary, all requests): failed to run query sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2"}[30s])): Prometheus rejected it: 1:1: parse error: connection_security_policy: invalid query`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prom := newFakeProm(t, func(_ *http.Request, q string, _ int) (int, string) {
				if tt.reject != "" && strings.Contains(q, tt.reject) {
					return http.StatusBadRequest, errorBody("bad_data", "1:1: parse error: connection_security_policy")
				}
				if body, ok := secureWindow()[mtlsKey(q)]; ok {
					return http.StatusOK, body
				}
				return http.StatusOK, vectorBody()
			})
			a, err := New(mtlsSettings(prom.URL))
			if err != nil {
				t.Fatal(err)
			}
			err = a.Preflight(t.Context())
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if !errors.Is(err, ErrQuery) {
					t.Fatalf("Preflight = %v, want ErrQuery", err)
				}
				if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
					t.Errorf("problems (-want +got):\n%s", diff)
				}
			}
			// Every query once: the 6 guardrail and volume queries, mtls's 4, the stable probe.
			if got := prom.requestCount(); got != 11 {
				t.Errorf("%d queries sent, want 11", got)
			}
		})
	}
}
