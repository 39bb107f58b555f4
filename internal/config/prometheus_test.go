package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// serviceAnalysis returns minimal with metric analysis through the API server's service proxy,
// plus vars.
func serviceAnalysis(vars ...string) []string {
	return with(append([]string{"MESHROLL_PROMETHEUS_SERVICE=istio-system/prometheus:9090", "MESHROLL_CANARY_WORKLOAD=reviews-v2",
		"MESHROLL_STABLE_WORKLOAD=reviews-v1"}, vars...)...)
}

func TestPrometheusService(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		value   string
		want    ServicePort
		headers string
	}{
		{name: "port number", value: "istio-system/prometheus:9090", want: ServicePort{Namespace: "istio-system", Name: "prometheus", Port: "9090"}},
		{name: "port name", value: "monitoring/prometheus-server:http-web", want: ServicePort{Namespace: "monitoring", Name: "prometheus-server", Port: "http-web"}},
		{name: "the Service's only port", value: " istio-system/prometheus ", want: ServicePort{Namespace: "istio-system", Name: "prometheus"}},
		{name: "highest port", value: "o11y/thanos-query:65535", want: ServicePort{Namespace: "o11y", Name: "thanos-query", Port: "65535"}},
		{name: "with a tenant header", value: "mimir/gateway:8080", want: ServicePort{Namespace: "mimir", Name: "gateway", Port: "8080"}, headers: "X-Scope-OrgID: tenant-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			environ := serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE="+tt.value, "MESHROLL_PROMETHEUS_HEADERS="+tt.headers)
			cfg, err := Load(environ)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Analysis.PrometheusService); diff != "" {
				t.Errorf("PrometheusService (-want +got):\n%s", diff)
			}
			if !cfg.Analysis.Enabled() || cfg.Analysis.PrometheusURL != "" {
				t.Errorf("Enabled() = %v with URL %q, want analysis on without a URL", cfg.Analysis.Enabled(), cfg.Analysis.PrometheusURL)
			}
			// The analysis defaults apply as with a URL.
			if cfg.Analysis.Interval != defaultInterval || cfg.Analysis.Reporter != defaultReporter || cfg.Analysis.FailureThreshold != defaultFailureThreshold {
				t.Errorf("analysis defaults not applied: %+v", cfg.Analysis)
			}
			if tt.headers != "" && cfg.Analysis.Headers["X-Scope-OrgID"] != "tenant-1" {
				t.Errorf("headers = %v, want the tenant header", cfg.Analysis.Headers)
			}
		})
	}
}

func TestPrometheusServiceString(t *testing.T) {
	t.Parallel()
	for want, s := range map[string]ServicePort{
		"istio-system/prometheus:9090": {Namespace: "istio-system", Name: "prometheus", Port: "9090"},
		"istio-system/prometheus":      {Namespace: "istio-system", Name: "prometheus"},
	} {
		if got := s.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

func TestPrometheusServiceRejected(t *testing.T) {
	t.Parallel()
	const fix = "use namespace/name:port of Prometheus's Service, e.g. istio-system/prometheus:9090"
	tests := []struct {
		name     string
		environ  []string
		problems []string
	}{
		{"both URL and Service", serviceAnalysis("MESHROLL_PROMETHEUS_URL=http://prometheus:9090"),
			[]string{"MESHROLL_PROMETHEUS_URL and MESHROLL_PROMETHEUS_SERVICE are both set: Prometheus is reached one way; set MESHROLL_PROMETHEUS_SERVICE for a Prometheus inside the cluster (through the Kubernetes API server), or MESHROLL_PROMETHEUS_URL for one the runner reaches directly, and unset the other"}},
		{"no namespace", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=prometheus:9090"),
			[]string{"MESHROLL_PROMETHEUS_SERVICE=prometheus:9090: not namespace/name[:port]; " + fix}},
		{"a URL", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=http://prometheus.istio-system:9090"),
			[]string{`MESHROLL_PROMETHEUS_SERVICE=http://prometheus.istio-system:9090: the namespace "http:" is not a namespace name`}},
		{"a DNS name", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=istio-system/prometheus.istio-system:9090"),
			[]string{`the Service name "prometheus.istio-system" is not a Service name`, fix}},
		{"upper case namespace", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=Istio/prometheus"),
			[]string{`MESHROLL_PROMETHEUS_SERVICE=Istio/prometheus: the namespace "Istio" is not a namespace name`}},
		{"Service name starting with a digit", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=istio-system/9prom"),
			[]string{`the Service name "9prom" is not a Service name`}},
		{"empty name", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=istio-system/"), []string{"not namespace/name[:port]"}},
		{"port zero", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=istio-system/prometheus:0"),
			[]string{"MESHROLL_PROMETHEUS_SERVICE=istio-system/prometheus:0: the port 0 is not from 1 to 65535; " + fix}},
		{"port too high", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=istio-system/prometheus:65536"), []string{"the port 65536 is not from 1 to 65535"}},
		{"empty port", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=istio-system/prometheus:"),
			[]string{`the port after ":" is empty (leave the ":" out for the Service's only port)`}},
		{"port name too long", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=istio-system/prometheus:http-prometheus-web"),
			[]string{`the port "http-prometheus-web" is neither a number nor a port name`}},
		{"two ports", serviceAnalysis("MESHROLL_PROMETHEUS_SERVICE=istio-system/prometheus:9090:9091"),
			[]string{`the port "9090:9091" is neither a number nor a port name`}},
		{"a token", serviceAnalysis("MESHROLL_PROMETHEUS_TOKEN=t0ken-value"),
			[]string{"MESHROLL_PROMETHEUS_TOKEN does not apply with MESHROLL_PROMETHEUS_SERVICE: the API server's service proxy is reached with the cluster's credentials and certificates (the kubeconfig); unset it, or set MESHROLL_PROMETHEUS_URL instead of MESHROLL_PROMETHEUS_SERVICE"}},
		{"basic auth, a CA and no verification", serviceAnalysis("MESHROLL_PROMETHEUS_USERNAME=ops", "MESHROLL_PROMETHEUS_PASSWORD=pa55word",
			"MESHROLL_PROMETHEUS_CA_FILE=/ca.pem", "MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY=true"),
			[]string{"MESHROLL_PROMETHEUS_USERNAME does not apply with MESHROLL_PROMETHEUS_SERVICE", "MESHROLL_PROMETHEUS_PASSWORD does not apply with MESHROLL_PROMETHEUS_SERVICE",
				"MESHROLL_PROMETHEUS_CA_FILE does not apply with MESHROLL_PROMETHEUS_SERVICE", "MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY does not apply with MESHROLL_PROMETHEUS_SERVICE"}},
		{"an Authorization header", serviceAnalysis("MESHROLL_PROMETHEUS_HEADERS=Authorization: Bearer abc"),
			[]string{"MESHROLL_PROMETHEUS_HEADERS: sets Authorization, which the Kubernetes API server would read as the cluster credentials rather than pass on to Prometheus; with MESHROLL_PROMETHEUS_SERVICE, headers are for Prometheus only (e.g. X-Scope-OrgID: tenant-1)"}},
		{"an impersonation header", serviceAnalysis("MESHROLL_PROMETHEUS_HEADERS=Impersonate-User: admin"),
			[]string{"MESHROLL_PROMETHEUS_HEADERS: sets Impersonate-User, which the Kubernetes API server would read as the cluster credentials"}},
		{"workloads still needed", with("MESHROLL_PROMETHEUS_SERVICE=istio-system/prometheus:9090"),
			[]string{"MESHROLL_CANARY_WORKLOAD is required", "MESHROLL_STABLE_WORKLOAD is required"}},
		{"threshold without Prometheus names both ways", with("MESHROLL_CONFIDENCE=99"),
			[]string{"MESHROLL_CONFIDENCE is set but MESHROLL_PROMETHEUS_URL is empty and so is MESHROLL_PROMETHEUS_SERVICE, so no metric analysis would run: set one of them, or unset MESHROLL_CONFIDENCE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(tt.environ)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load error = %v, want one matching ErrInvalid", err)
			}
			for _, p := range tt.problems {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error lacks %q:\n%s", p, err)
				}
			}
			for _, secret := range []string{"t0ken-value", "pa55word", "Bearer abc"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows the secret %q:\n%s", secret, err)
				}
			}
		})
	}
}
