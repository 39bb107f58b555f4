package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// prometheusServiceExample is the value MESHROLL_PROMETHEUS_SERVICE's messages show: the
// Prometheus of Istio's addons.
const prometheusServiceExample = "istio-system/prometheus:9090"

// urlOnly are the variables that say how to reach Prometheus at a URL: the API server's service
// proxy is reached with the cluster's credentials and TLS instead.
func (in input) urlOnly() []struct{ name, value string } {
	return []struct{ name, value string }{
		{"MESHROLL_PROMETHEUS_TOKEN", in.Token},
		{"MESHROLL_PROMETHEUS_USERNAME", in.Username},
		{"MESHROLL_PROMETHEUS_PASSWORD", in.Password},
		{"MESHROLL_PROMETHEUS_CA_FILE", in.CAFile},
		{"MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY", in.InsecureSkip},
	}
}

// prometheusService checks MESHROLL_PROMETHEUS_SERVICE, a Prometheus inside the cluster reached
// through the Kubernetes API server's service proxy, and what goes with it: not a URL too, none
// of the URL's credentials or TLS settings, and headers the API server passes on.
func (in input) prometheusService(v *validator, a *Analysis) {
	raw := strings.TrimSpace(in.PrometheusSvc)
	if strings.TrimSpace(in.PrometheusURL) != "" {
		v.add("MESHROLL_PROMETHEUS_URL and MESHROLL_PROMETHEUS_SERVICE are both set: Prometheus is reached one way; " +
			"set MESHROLL_PROMETHEUS_SERVICE for a Prometheus inside the cluster (through the Kubernetes API server), " +
			"or MESHROLL_PROMETHEUS_URL for one the runner reaches directly, and unset the other")
	}
	if svc, problem := parseServicePort(raw); problem != "" {
		v.invalid("MESHROLL_PROMETHEUS_SERVICE", raw, "%s; use namespace/name:port of Prometheus's Service, e.g. %s (the port is a number or a name, and may be left out when the Service has one port)", problem, prometheusServiceExample)
	} else {
		a.PrometheusService = svc
	}
	for _, variable := range in.urlOnly() {
		if strings.TrimSpace(variable.value) != "" {
			// Not echoed: most of them are secrets.
			v.add(variable.name + " does not apply with MESHROLL_PROMETHEUS_SERVICE: the API server's service proxy is reached with the " +
				"cluster's credentials and certificates (the kubeconfig); unset it, or set MESHROLL_PROMETHEUS_URL instead of MESHROLL_PROMETHEUS_SERVICE")
		}
	}
	a.Headers = headers(v, "MESHROLL_PROMETHEUS_HEADERS", in.Headers, prometheusHeaderExample)
	for _, name := range slices.Sorted(maps.Keys(a.Headers)) {
		if proxyHeader(name) {
			v.add("MESHROLL_PROMETHEUS_HEADERS: sets " + name + ", which the Kubernetes API server would read as the cluster credentials " +
				"rather than pass on to Prometheus; with MESHROLL_PROMETHEUS_SERVICE, headers are for Prometheus only (e.g. " + prometheusHeaderExample + ")")
		}
	}
}

// proxyHeader reports whether the API server takes a request header for itself: the
// credentials (Authorization) and impersonation (Impersonate-User, Impersonate-Group, ...).
func proxyHeader(name string) bool {
	lower := strings.ToLower(name)
	return lower == "authorization" || strings.HasPrefix(lower, "impersonate-")
}

// parseServicePort reads namespace/name[:port]. The problem it returns says what is wrong,
// without the value.
func parseServicePort(raw string) (ServicePort, string) {
	ns, rest, ok := strings.Cut(raw, "/")
	if !ok || ns == "" || rest == "" {
		return ServicePort{}, "not namespace/name[:port]"
	}
	name, port, hasPort := strings.Cut(rest, ":")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return ServicePort{}, fmt.Sprintf("the namespace %q is not a namespace name (%s)", ns, strings.Join(errs, ", "))
	}
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		return ServicePort{}, fmt.Sprintf("the Service name %q is not a Service name (%s)", name, strings.Join(errs, ", "))
	}
	if hasPort {
		if problem := servicePortProblem(port); problem != "" {
			return ServicePort{}, problem
		}
	}
	return ServicePort{Namespace: ns, Name: name, Port: port}, ""
}

// servicePortProblem checks a Service's port as a number from 1 to 65535 or as a port name.
func servicePortProblem(port string) string {
	if port == "" {
		return "the port after \":\" is empty (leave the \":\" out for the Service's only port)"
	}
	if strings.Trim(port, "0123456789") == "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("the port %s is not from 1 to 65535", port)
		}
		return ""
	}
	if errs := validation.IsValidPortName(port); len(errs) > 0 {
		return fmt.Sprintf("the port %q is neither a number nor a port name (%s)", port, strings.Join(errs, ", "))
	}
	return ""
}
