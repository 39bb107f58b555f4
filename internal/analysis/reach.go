package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// Proxy is the way to a Prometheus inside the cluster through the Kubernetes API server's
// service proxy (MESHROLL_PROMETHEUS_SERVICE): a CI runner reaches it with the cluster's
// credentials where its in-cluster name does not resolve. app builds it from the cluster
// access; analysis knows nothing of Kubernetes.
type Proxy struct {
	// Transport carries every request to the API server, with the cluster's credentials and
	// TLS. MESHROLL_PROMETHEUS_HEADERS are added to the requests, which the API server passes
	// on to Prometheus.
	Transport http.RoundTripper
	// Server is the API server's address, for messages.
	Server string
	// Open runs before the first query (Preflight's, or else the first window's) and returns
	// the base URL of Prometheus's API through the proxy. It is where the caller checks, without
	// querying, that the credentials may use the proxy and that the Service has the port. Its
	// error is returned as it is (wrapped): it says what the user has to fix. After an error,
	// the next query calls it again.
	Open func(ctx context.Context) (string, error)
}

// open builds the client through the proxy on first use; without a proxy it does nothing.
func (a *Analyzer) open(ctx context.Context) error {
	p := a.settings.Proxy
	if p == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.api != nil {
		return nil
	}
	base, err := p.Open(ctx)
	if err != nil {
		return err
	}
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("failed to build the Prometheus client through the API server: %w", err)
	}
	client, err := api.NewClient(api.Config{Address: base, RoundTripper: newAuthTransport(getOnly{p.Transport}, u, a.settings.Analysis)})
	if err != nil {
		return fmt.Errorf("failed to build the Prometheus client through the API server: %w", err)
	}
	a.api = v1.NewAPI(client)
	return nil
}

// errNotOpen is a query sent through a proxy that was never opened: a caller that skipped
// open. It cannot reach the user.
var errNotOpen = errors.New("the service proxy to Prometheus is not open")

// prometheus is the client queries go through: nil through a proxy not open yet.
func (a *Analyzer) prometheus() v1.API {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.api
}

// getOnly sends the queries client_golang POSTs as GET requests with the same parameters. The
// API server authorizes a request through its proxy by the HTTP method, a POST as create on
// services/proxy: meshroll only reads, and asks for get alone. (client_golang falls back to
// GET by itself, but only after a 403 for every query, which the API server would log as
// a refusal each time.)
type getOnly struct{ base http.RoundTripper }

func (t getOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		return t.base.RoundTrip(req)
	}
	var body []byte
	var err error
	if req.Body != nil {
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("failed to read the query's form: %w", err)
		}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("failed to read the query's form: %w", err)
	}
	params := req.URL.Query()
	for name, values := range form {
		params[name] = append(params[name], values...)
	}
	get := req.Clone(req.Context())
	get.Method = http.MethodGet
	get.URL.RawQuery = params.Encode()
	get.Body, get.GetBody, get.ContentLength = http.NoBody, nil, 0
	get.Header.Del("Content-Type")
	return t.base.RoundTrip(get)
}

// where names Prometheus in messages: the scheme, host and path of its URL (never its
// credentials), or its Service and the API server that proxies to it.
func where(s Settings) string {
	if s.Proxy != nil {
		return fmt.Sprintf("Prometheus Service %s (through the Kubernetes API server's service proxy at %s)", s.PrometheusService, s.Proxy.Server)
	}
	u, err := url.Parse(s.PrometheusURL)
	if err != nil {
		return "Prometheus (MESHROLL_PROMETHEUS_URL)"
	}
	return "Prometheus at " + strings.TrimSuffix((&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(), "/")
}

// reachError is a query that got no answer worth having from Prometheus: unreachable (the
// network, server errors, no answer in time, after every retry) or refusing the credentials.
// The same holds for every query, so its first line says so and names where Prometheus was
// looked for, which is what the user has to fix; the query follows on the next line.
type reachError struct {
	where string // "Prometheus at http://…"
	what  string // "cannot be reached after 3 attempts"
	cause string
	query string
	kind  error // ErrUnavailable or ErrUnauthorized
}

func (e *reachError) Error() string {
	return fmt.Sprintf("%s %s: %s\nquery: %s", e.where, e.what, e.cause, e.query)
}

func (e *reachError) Unwrap() error { return e.kind }

// unreachable is the error of a query that got no answer after the retries.
func (a *Analyzer) unreachable(q, gaveUp string, last error) error {
	return &reachError{where: a.where, what: "cannot be reached " + gaveUp, cause: last.Error() + a.dnsHint(last), query: q, kind: ErrUnavailable}
}

// refused is the error of a query answered 401 or 403, with what to check: the credentials
// meshroll sends to Prometheus, or, through the proxy, what the cluster's credentials may do.
func (a *Analyzer) refused(q string, why error, byAPIServer bool) error {
	check := "check MESHROLL_PROMETHEUS_TOKEN, MESHROLL_PROMETHEUS_USERNAME and MESHROLL_PROMETHEUS_PASSWORD, and MESHROLL_PROMETHEUS_HEADERS"
	switch {
	case byAPIServer:
		check = "the cluster's credentials need get on services/proxy for that Service in its namespace (see examples/rbac.yaml)"
	case a.settings.Proxy != nil:
		check = "check MESHROLL_PROMETHEUS_HEADERS (the API server passes them on)"
	}
	return &reachError{where: a.where, what: "refused the credentials", cause: why.Error() + "; " + check, query: q, kind: ErrUnauthorized}
}

// dnsHint is what to do when the host of MESHROLL_PROMETHEUS_URL does not resolve: from a CI
// runner, a name that resolves only inside the cluster (prometheus.istio-system) never does.
func (a *Analyzer) dnsHint(err error) string {
	var dnsErr *net.DNSError
	if a.settings.Proxy != nil || !errors.As(err, &dnsErr) {
		return ""
	}
	return "; a name inside the cluster does not resolve outside it: to reach Prometheus through the Kubernetes API server, " +
		"set MESHROLL_PROMETHEUS_SERVICE=" + serviceOf(a.settings.PrometheusURL) + " instead of MESHROLL_PROMETHEUS_URL"
}

// serviceOf guesses the namespace/name:port of a Service from a URL in the cluster's DNS
// (http://prometheus.istio-system:9090, http://prometheus.istio-system.svc.cluster.local:9090),
// else gives Istio's addon as the example.
func serviceOf(raw string) string {
	const example = "istio-system/prometheus:9090"
	u, err := url.Parse(raw)
	if err != nil {
		return example
	}
	labels := strings.Split(u.Hostname(), ".")
	if len(labels) < 2 || (len(labels) > 2 && labels[2] != "svc") || labels[0] == "" || labels[1] == "" {
		return example
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return labels[1] + "/" + labels[0] + ":" + port
}

// answeredBy says who answered an HTTP error and what it said: the Kubernetes API server, whose
// answers through its proxy (no such Service, no endpoints, an endpoint it could not reach, a
// permission refused) are Status objects, else Prometheus (or whatever stands in front of it).
func answeredBy(body string) (who, detail string) {
	var status struct{ Kind, Message string }
	if json.Unmarshal([]byte(body), &status) == nil && status.Kind == "Status" && status.Message != "" {
		return apiServer, status.Message
	}
	return "Prometheus", body
}

// apiServer is who answered an error through the service proxy, when it was not Prometheus.
const apiServer = "the API server"

// plural writes a count of things: "1 attempt", "3 attempts".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
