package analysis

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/config"
)

func TestQueries(t *testing.T) {
	t.Parallel()
	const (
		canary = `reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2"`
		stable = `reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v1"`
	)
	tests := []struct {
		name   string
		change func(*Settings)
		want   []string
	}{
		{
			name: "built-ins for canary and stable",
			want: []string{
				`sum(increase(istio_requests_total{` + canary + `}[30s]))`,
				`sum(increase(istio_requests_total{` + stable + `}[30s]))`,
				`100 * (sum(rate(istio_requests_total{` + canary + `,response_code!~"5.."}[30s])) or vector(0)) / sum(rate(istio_requests_total{` + canary + `}[30s]))`,
				`100 * (sum(rate(istio_requests_total{` + stable + `,response_code!~"5.."}[30s])) or vector(0)) / sum(rate(istio_requests_total{` + stable + `}[30s]))`,
				`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{` + canary + `}[30s])))`,
				`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{` + stable + `}[30s])))`,
			},
		},
		{
			name: "interval in whole seconds, rounded up; source reporter; custom check rendered",
			change: func(s *Settings) {
				s.Interval = 90*time.Second + 300*time.Millisecond
				s.Reporter = "source"
				s.Checks = []Check{{
					Name:  "errors-5xx",
					Query: `sum(rate(istio_requests_total{reporter="{{.Reporter}}",destination_workload_namespace="{{.Namespace}}",destination_workload="{{.CanaryWorkload}}",response_code=~"5.."}[{{.Interval}}])) - 0*count(up{job="{{.StableWorkload}}"})`,
					Max:   ptr(1),
				}}
			},
			want: []string{
				`sum(increase(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v2"}[91s]))`,
				`sum(increase(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v1"}[91s]))`,
				`100 * (sum(rate(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v2",response_code!~"5.."}[91s])) or vector(0)) / sum(rate(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v2"}[91s]))`,
				`100 * (sum(rate(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v1",response_code!~"5.."}[91s])) or vector(0)) / sum(rate(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v1"}[91s]))`,
				`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v2"}[91s])))`,
				`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v1"}[91s])))`,
				`sum(rate(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v2",response_code=~"5.."}[91s])) - 0*count(up{job="cart-v1"})`,
			},
		},
		{
			name: "mtls after the guardrails, on the destination reporter whatever MESHROLL_REPORTER says",
			change: func(s *Settings) {
				s.Reporter = "source"
				s.MinSuccessRate, s.MaxLatencyP99 = 0, 0
				s.MTLS = true
				s.Checks = []Check{{Name: "custom", Query: `sum(up)`, Min: ptr(1)}}
			},
			want: []string{
				`sum(increase(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v2"}[30s]))`,
				`sum(increase(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v1"}[30s]))`,
				`sum(increase(istio_requests_total{` + canary + `,connection_security_policy!="mutual_tls"}[30s])) or vector(0)`,
				`sum(increase(istio_requests_total{` + stable + `,connection_security_policy!="mutual_tls"}[30s])) or vector(0)`,
				`sum(increase(istio_requests_total{` + canary + `}[30s]))`,
				`sum(increase(istio_requests_total{` + stable + `}[30s]))`,
				`sum(up)`,
			},
		},
		{
			name: "sidecars or an ambient waypoint: either reporter, mtls on both",
			change: func(s *Settings) {
				s.Reporter = "destination|waypoint"
				s.MinSuccessRate, s.MaxLatencyP99 = 0, 0
				s.MTLS = true
			},
			want: []string{
				`sum(increase(istio_requests_total{reporter=~"destination|waypoint",destination_workload_namespace="shop",destination_workload="cart-v2"}[30s]))`,
				`sum(increase(istio_requests_total{reporter=~"destination|waypoint",destination_workload_namespace="shop",destination_workload="cart-v1"}[30s]))`,
				`sum(increase(istio_requests_total{reporter=~"destination|waypoint",destination_workload_namespace="shop",destination_workload="cart-v2",connection_security_policy!="mutual_tls"}[30s])) or vector(0)`,
				`sum(increase(istio_requests_total{reporter=~"destination|waypoint",destination_workload_namespace="shop",destination_workload="cart-v1",connection_security_policy!="mutual_tls"}[30s])) or vector(0)`,
				`sum(increase(istio_requests_total{reporter=~"destination|waypoint",destination_workload_namespace="shop",destination_workload="cart-v2"}[30s]))`,
				`sum(increase(istio_requests_total{reporter=~"destination|waypoint",destination_workload_namespace="shop",destination_workload="cart-v1"}[30s]))`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testSettings("http://prometheus.invalid:9090")
			if tt.change != nil {
				tt.change(&s)
			}
			a, err := New(s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, a.Queries()); diff != "" {
				t.Errorf("Queries() (-want +got):\n%s", diff)
			}
		})
	}
}

// A label value that tries to close the string and the selector must stay one
// string literal holding exactly that value, in built-ins and custom checks.
func TestEscaping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		workload string
		escaped  string
	}{
		{name: "injection", workload: `x"} or vector(1) #`, escaped: `x\"} or vector(1) #`},
		{name: "backslash before quote", workload: `a\"} or vector(1) #`, escaped: `a\\\"} or vector(1) #`},
		{name: "newline ends a PromQL string", workload: "a\n\"} or vector(1)", escaped: `a\n\"} or vector(1)`},
		{name: "plain", workload: "reviews-v2", escaped: "reviews-v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testSettings("http://prometheus.invalid:9090")
			s.CanaryWorkload = tt.workload
			s.Checks = []Check{{Name: "custom", Query: `sum(up{workload="{{.CanaryWorkload}}"})`, Min: ptr(1)}}
			a, err := New(s)
			if err != nil {
				t.Fatal(err)
			}
			queries := a.Queries()
			wantVolume := `sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="` + tt.escaped + `"}[30s]))`
			if diff := cmp.Diff(wantVolume, queries[0]); diff != "" {
				t.Errorf("volume query (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(`sum(up{workload="`+tt.escaped+`"})`, queries[len(queries)-1]); diff != "" {
				t.Errorf("custom query (-want +got):\n%s", diff)
			}
			// Read each query the way PromQL's lexer reads a double-quoted
			// string (Go escapes, ends at the first unescaped quote): the
			// whole value, and nothing else, is the literal.
			canaryQueries := []string{queries[0], queries[2], queries[4], queries[6]}
			for _, q := range canaryQueries {
				for _, prefix := range []string{`destination_workload="`, `workload="`} {
					rest := q
					for {
						i := strings.Index(rest, prefix)
						if i < 0 {
							break
						}
						rest = rest[i+len(prefix)-1:]
						lit, err := strconv.QuotedPrefix(rest)
						if err != nil {
							t.Fatalf("%s: no string literal after %s: %v", q, prefix, err)
						}
						got, _ := strconv.Unquote(lit)
						if got != tt.workload {
							t.Errorf("%s: literal holds %q, want %q", q, got, tt.workload)
						}
						rest = rest[len(lit):]
						if !strings.HasPrefix(rest, "}") && !strings.HasPrefix(rest, ",") {
							t.Errorf("%s: after the literal comes %q, want the selector to go on", q, rest)
						}
					}
				}
			}
		})
	}
}

func TestTemplateData(t *testing.T) {
	t.Parallel()
	s := testSettings("http://prometheus.invalid:9090")
	s.Namespace = `team "a"`
	s.StableWorkload = `v1\old`
	s.Checks = []Check{{Name: "all-keys", Query: `{{.Namespace}}|{{.CanaryWorkload}}|{{.StableWorkload}}|{{.Reporter}}|{{.Interval}}`, Min: ptr(0)}}
	a, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	queries := a.Queries()
	want := `team \"a\"|cart-v2|v1\\old|destination|30s`
	if diff := cmp.Diff(want, queries[len(queries)-1]); diff != "" {
		t.Errorf("rendered template (-want +got):\n%s", diff)
	}
}

// What config.Load returns is what New takes, custom checks included: nothing is copied or
// parsed again on the way.
func TestNewFromConfig(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load([]string{
		"MESHROLL_VIRTUAL_SERVICE=cart", "MESHROLL_STABLE_SUBSET=v1", "MESHROLL_CANARY_SUBSET=v2",
		"MESHROLL_PROMETHEUS_URL=http://prometheus.invalid:9090", "MESHROLL_CANARY_WORKLOAD=cart-v2", "MESHROLL_STABLE_WORKLOAD=cart-v1",
		"MESHROLL_ANALYSIS_INTERVAL=1m", "MESHROLL_STEP_DURATION=2m", "MESHROLL_REPORTER=source",
		`MESHROLL_CHECKS=[{name: errors, query: 'sum(rate(errors{ns="{{.Namespace}}",workload="{{.CanaryWorkload}}"}[{{.Interval}}]))', max: 1}]`,
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Settings{Analysis: cfg.Analysis, Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	queries := a.Queries()
	want := []string{
		`sum(increase(istio_requests_total{reporter="source",destination_workload_namespace="shop",destination_workload="cart-v2"}[60s]))`,
		`sum(rate(errors{ns="shop",workload="cart-v2"}[60s]))`,
	}
	if diff := cmp.Diff(want, []string{queries[0], queries[len(queries)-1]}); diff != "" {
		t.Errorf("first and last query (-want +got):\n%s", diff)
	}
}
