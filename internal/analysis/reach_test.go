package analysis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/config"
)

// proxyPath is where the API server serves the proxy to istio-system/prometheus:9090.
const proxyPath = "/api/v1/namespaces/istio-system/services/prometheus:9090/proxy"

// fakeAPIServer stands for the Kubernetes API server's service proxy: a request under
// proxyPath goes to prom (nil: answered by respond), as the API server forwards it, and every
// request is recorded.
type fakeAPIServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
}

func newFakeAPIServer(t *testing.T, prom http.Handler, respond func(w http.ResponseWriter)) *fakeAPIServer {
	t.Helper()
	f := &fakeAPIServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Clone(context.Background()))
		f.mu.Unlock()
		rest, ok := strings.CutPrefix(r.URL.Path, proxyPath)
		switch {
		case !ok:
			kubeStatus(w, http.StatusNotFound, "the server could not find the requested resource")
		case respond != nil:
			respond(w)
		default:
			r = r.Clone(r.Context())
			r.URL.Path = rest
			prom.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPIServer) seen() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.requests...)
}

// kubeStatus answers as the API server does: a Status object.
func kubeStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":"ServiceUnavailable","code":%d}`, msg, code)
}

// proxySettings reach Prometheus through the fake API server at server; open counts the
// times the proxy is opened.
func proxySettings(server string, open *int) Settings {
	s := testSettings("")
	s.PrometheusService = config.ServicePort{Namespace: "istio-system", Name: "prometheus", Port: "9090"}
	s.Proxy = &Proxy{Transport: http.DefaultTransport, Server: server, Open: func(context.Context) (string, error) {
		*open++
		return server + proxyPath, nil
	}}
	return s
}

// closedPort is a loopback address nothing listens on: a connection to it is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// When Prometheus cannot be reached, or refuses the credentials, the first line of the
// preflight's and the window's message says so and names where Prometheus was looked for
// (its URL, or its Service through the API server); the query follows on the next line.
func TestUnreachableSaysWhereFirst(t *testing.T) {
	t.Parallel()
	refused := "http://" + closedPort(t)
	status := func(code int, body string) string {
		return newFakeProm(t, func(*http.Request, string, int) (int, string) { return code, body }).URL
	}
	unavailable503, unauthorized, forbidden := status(http.StatusServiceUnavailable, "upstream connect error"),
		status(http.StatusUnauthorized, "bad token"), status(http.StatusForbidden, "tenant not allowed")
	hanging := newHangingProm(t).URL
	noEndpoints := newFakeAPIServer(t, nil, func(w http.ResponseWriter) {
		kubeStatus(w, http.StatusServiceUnavailable, `no endpoints available for service "prometheus"`)
	})
	unreachableEndpoint := newFakeAPIServer(t, nil, func(w http.ResponseWriter) {
		kubeStatus(w, http.StatusServiceUnavailable, "error trying to reach service: dial tcp 198.51.100.7:9090: connect: connection refused")
	})
	rbac := newFakeAPIServer(t, nil, func(w http.ResponseWriter) {
		kubeStatus(w, http.StatusForbidden, `services "prometheus" is forbidden: User "system:serviceaccount:shop:meshroll" cannot get resource "services/proxy" in API group "" in the namespace "istio-system"`)
	})
	promRefuses := newFakeAPIServer(t, newFakeProm(t, func(*http.Request, string, int) (int, string) {
		return http.StatusUnauthorized, "no tenant"
	}), nil)
	apiServerDown := "http://" + closedPort(t)

	const via = " (through the Kubernetes API server's service proxy at "
	tests := []struct {
		name     string
		settings Settings
		want     string // the first line, after "failed to …: "
		wantIs   error
	}{
		{"connection refused", testSettings(refused),
			"Prometheus at " + refused + " cannot be reached after 3 attempts: dial tcp " + strings.TrimPrefix(refused, "http://") + ": connect: connection refused", ErrUnavailable},
		{"a path after the host, credentials left out", testSettings(strings.Replace(refused, "http://", "http://ops:s3cret-pass@", 1) + "/prometheus/?access_token=t0ken-in-url"),
			"Prometheus at " + refused + "/prometheus cannot be reached after 3 attempts: dial tcp " + strings.TrimPrefix(refused, "http://") + ": connect: connection refused", ErrUnavailable},
		{"503 after every retry", testSettings(unavailable503),
			"Prometheus at " + unavailable503 + " cannot be reached after 3 attempts: Prometheus answered 503 Service Unavailable: upstream connect error", ErrUnavailable},
		{"401", testSettings(unauthorized),
			"Prometheus at " + unauthorized + " refused the credentials: Prometheus answered 401 Unauthorized: bad token; check MESHROLL_PROMETHEUS_TOKEN, MESHROLL_PROMETHEUS_USERNAME and MESHROLL_PROMETHEUS_PASSWORD, and MESHROLL_PROMETHEUS_HEADERS", ErrUnauthorized},
		{"403", testSettings(forbidden),
			"Prometheus at " + forbidden + " refused the credentials: Prometheus answered 403 Forbidden: tenant not allowed; check MESHROLL_PROMETHEUS_TOKEN", ErrUnauthorized},
		// The window's budget is half of the 2s interval (the preflight waits 10s an attempt,
		// see TestPreflightWaitsForASlowAnswer).
		{"no answer in time", func() Settings { s := testSettings(hanging); s.Interval = 2 * time.Second; s.Retries = 1; return s }(),
			"Prometheus at " + hanging + " cannot be reached after 1 attempt in ", ErrUnavailable},
		{"proxy: no endpoints", proxySettings(noEndpoints.URL, new(int)),
			"Prometheus Service istio-system/prometheus:9090" + via + noEndpoints.URL + ") cannot be reached after 3 attempts: the API server answered 503 Service Unavailable: no endpoints available for service \"prometheus\"", ErrUnavailable},
		{"proxy: the endpoint refuses", proxySettings(unreachableEndpoint.URL, new(int)),
			"Prometheus Service istio-system/prometheus:9090" + via + unreachableEndpoint.URL + ") cannot be reached after 3 attempts: the API server answered 503 Service Unavailable: error trying to reach service: dial tcp 198.51.100.7:9090: connect: connection refused", ErrUnavailable},
		{"proxy: the API server refuses", proxySettings(rbac.URL, new(int)),
			"Prometheus Service istio-system/prometheus:9090" + via + rbac.URL + `) refused the credentials: the API server answered 403 Forbidden: services "prometheus" is forbidden: User "system:serviceaccount:shop:meshroll" cannot get resource "services/proxy" in API group "" in the namespace "istio-system"; the cluster's credentials need get on services/proxy for that Service in its namespace (see examples/rbac.yaml)`, ErrUnauthorized},
		{"proxy: Prometheus refuses", proxySettings(promRefuses.URL, new(int)),
			"Prometheus Service istio-system/prometheus:9090" + via + promRefuses.URL + ") refused the credentials: Prometheus answered 401 Unauthorized: no tenant; check MESHROLL_PROMETHEUS_HEADERS (the API server passes them on)", ErrUnauthorized},
		{"proxy: the API server is down", proxySettings(apiServerDown, new(int)),
			"Prometheus Service istio-system/prometheus:9090" + via + apiServerDown + ") cannot be reached after 3 attempts: dial tcp " + strings.TrimPrefix(apiServerDown, "http://") + ": connect: connection refused", ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := New(tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			for _, run := range []struct {
				prefix string
				err    func() error
			}{
				{"failed to check the analysis queries: ", func() error { return a.Preflight(t.Context()) }},
				{"failed to evaluate the canary: ", func() error { _, err := a.Evaluate(t.Context(), at); return err }},
			} {
				if tt.settings.PrometheusURL == hanging && run.prefix != "failed to evaluate the canary: " {
					continue
				}
				err := run.err()
				if !errors.Is(err, tt.wantIs) {
					t.Fatalf("error %v, want one matching %v", err, tt.wantIs)
				}
				lines := strings.Split(err.Error(), "\n")
				if !strings.HasPrefix(lines[0], run.prefix+tt.want) {
					t.Errorf("first line:\n%s\nwant it to start with:\n%s", lines[0], run.prefix+tt.want)
				}
				if strings.Contains(lines[0], "istio_requests_total") || len(lines) != 2 || !strings.HasPrefix(lines[1], "query: ") {
					t.Errorf("want the query alone on the second line:\n%s", err)
				}
				for _, secret := range []string{"s3cret-pass", "t0ken-in-url", "ops:"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the message shows %q:\n%s", secret, err)
					}
				}
			}
		})
	}
}

// A host name that does not resolve, as a name inside the cluster does not on a CI runner:
// the message says which Service to name instead.
func TestUnresolvedHostNamesTheService(t *testing.T) {
	t.Parallel()
	tests := []struct{ url, service string }{
		{"http://prometheus.istio-system:9090", "istio-system/prometheus:9090"},
		{"http://prometheus-server.monitoring.svc.cluster.local", "monitoring/prometheus-server:80"},
		{"https://thanos.o11y.svc:10902/", "o11y/thanos:10902"},
		{"https://prometheus.example.com", "istio-system/prometheus:9090"},
		{"http://prometheus:9090", "istio-system/prometheus:9090"},
	}
	for _, tt := range tests {
		a, err := New(testSettings(tt.url))
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(tt.url)
		lookup := &url.Error{Op: "Post", URL: tt.url + "/api/v1/query", Err: &net.OpError{Op: "dial", Net: "tcp",
			Err: &net.DNSError{Err: "no such host", Name: u.Hostname(), Server: "127.0.0.53:53", IsNotFound: true}}}
		_, cause := classify(lookup, 0)
		got := a.unreachable("vector(1)", "after 3 attempts", cause).Error()
		want := "Prometheus at " + strings.TrimSuffix(tt.url, "/") + " cannot be reached after 3 attempts: dial tcp: lookup " + u.Hostname() + " on 127.0.0.53:53: no such host; " +
			"a name inside the cluster does not resolve outside it: to reach Prometheus through the Kubernetes API server, set MESHROLL_PROMETHEUS_SERVICE=" + tt.service +
			" instead of MESHROLL_PROMETHEUS_URL\nquery: vector(1)"
		if got != want {
			t.Errorf("%s:\n%s\nwant\n%s", tt.url, got, want)
		}
	}
}

// Through the API server's service proxy, the queries are GET requests (the API server
// authorizes a POST as create on services/proxy) to Prometheus's API under the proxy's path,
// carrying MESHROLL_PROMETHEUS_HEADERS; the proxy is opened once, before the first query.
func TestThroughTheServiceProxy(t *testing.T) {
	t.Parallel()
	prom := newFakeProm(t, answers(healthy()))
	apiServer := newFakeAPIServer(t, prom, nil)
	opened := 0
	s := proxySettings(apiServer.URL, &opened)
	s.Headers = map[string]string{"X-Scope-OrgID": "tenant-1"}
	a, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	if opened != 0 {
		t.Errorf("New opened the proxy")
	}
	if err := a.Preflight(t.Context()); err != nil {
		t.Fatal(err)
	}
	w, err := a.Evaluate(t.Context(), at)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(w.Failed()) + len(w.Errored()); got != 0 || !w.Judged() {
		t.Errorf("window through the proxy: %+v", w.Results)
	}
	if _, err := a.Snapshot(t.Context(), at); err != nil {
		t.Fatal(err)
	}
	if opened != 1 {
		t.Errorf("the proxy was opened %d times, want once", opened)
	}
	seen := apiServer.seen()
	if len(seen) != prom.requestCount() || len(seen) < 13 {
		t.Errorf("%d requests to the API server, %d reached Prometheus", len(seen), prom.requestCount())
	}
	for _, r := range seen {
		got := []string{r.Method, r.URL.Path, r.Header.Get("X-Scope-OrgID"), r.Header.Get("Content-Type")}
		if diff := cmp.Diff([]string{http.MethodGet, proxyPath + "/api/v1/query", "tenant-1", ""}, got); diff != "" || r.URL.Query().Get("query") == "" {
			t.Errorf("request %s (-want +got):\n%s", r.URL, diff)
		}
	}
}

// What opening the proxy says (a missing permission, a Service that does not exist) ends the
// preflight before any query, as it is; the next use tries again.
func TestProxyOpenFails(t *testing.T) {
	t.Parallel()
	apiServer := newFakeAPIServer(t, newFakeProm(t, answers(healthy())), nil)
	errForbidden := errors.New("forbidden: the credentials in use cannot get services/proxy named prometheus in namespace istio-system")
	calls := 0
	s := proxySettings(apiServer.URL, new(int))
	s.Proxy.Open = func(context.Context) (string, error) {
		calls++
		if calls == 1 {
			return "", errForbidden
		}
		return apiServer.URL + proxyPath, nil
	}
	a, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Preflight(t.Context())
	if !errors.Is(err, errForbidden) || err.Error() != "failed to check the analysis queries: "+errForbidden.Error() {
		t.Errorf("Preflight = %v, want the proxy's error", err)
	}
	if n := len(apiServer.seen()); n != 0 {
		t.Errorf("%d queries sent after the proxy failed to open", n)
	}
	if err := a.Preflight(t.Context()); err != nil {
		t.Errorf("Preflight after the proxy opened: %v", err)
	}
}

// Without a transport or a way to open it, a proxy is a programming error New reports.
func TestNewRejectsAnIncompleteProxy(t *testing.T) {
	t.Parallel()
	s := testSettings("")
	s.Proxy = &Proxy{Server: "https://127.0.0.1:6443"}
	if _, err := New(s); err == nil || !strings.Contains(err.Error(), "the service proxy to Prometheus needs a transport and a way to open it") {
		t.Errorf("New = %v", err)
	}
}
