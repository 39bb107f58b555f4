// Package analysis decides, between two traffic steps, whether the canary is
// healthy: it runs PromQL checks on Istio's standard metrics (and custom
// checks) against Prometheus and turns each answer into a verdict.
//
// Its input is config.Analysis, which config has validated (config is the only
// validator of input); the only other internal package it imports is config.
// The rollout declares the small interface it needs and app wires an
// *Analyzer into it.
package analysis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/meshroll/meshroll/internal/config"
)

// Sentinel errors, for callers that branch on the kind of failure.
var (
	// ErrNoData means a query answered with nothing to judge: an empty
	// vector, NaN, ±Inf (a division by zero), or too few canary requests.
	ErrNoData = errors.New("no data")
	// ErrQuery means Prometheus rejected a query (bad_data) or a query can
	// never yield one value (it returns several series, a matrix, a scalar or
	// a string): the user's input is wrong, so it is worth exit code 2.
	ErrQuery = errors.New("invalid query")
	// ErrUnavailable means Prometheus could not be reached, or kept answering
	// with server errors, after every retry.
	ErrUnavailable = errors.New("prometheus unavailable")
	// ErrUnauthorized means Prometheus (or a proxy in front of it) refused the
	// credentials with 401 or 403: the token, username/password or headers
	// are wrong, which retrying cannot fix.
	ErrUnauthorized = errors.New("prometheus refused the credentials")
)

// Defaults for the retry bounds of one query.
const (
	DefaultRetries = 3
	DefaultBackoff = 500 * time.Millisecond
	// preflightWindow is the least look-back over which the stable workload
	// must have served requests before anything moves.
	preflightWindow = 5 * time.Minute
)

// Check is a custom check, parsed and validated by config from MESHROLL_CHECKS.
type Check = config.Check

// Names of the built-in checks, which a custom check may not take.
const (
	CheckRequestVolume = config.CheckRequestVolume
	CheckSuccessRate   = config.CheckSuccessRate
	CheckLatencyP99    = config.CheckLatencyP99
	// CheckMTLS runs with Analysis.MTLS: every request the canary served in a window came
	// over mutual TLS.
	CheckMTLS = config.CheckMTLS
)

// Settings configure an Analyzer: the validated analysis input plus what is
// known only once the run has started. Secrets (Token, Password, the values of
// Headers) never appear in an error or a Result.
type Settings struct {
	config.Analysis
	// Namespace is the destination_workload_namespace of both workloads:
	// MESHROLL_NAMESPACE, or else the kubeconfig context's namespace.
	Namespace string
	// Proxy, when set, is how Prometheus is reached instead of PrometheusURL: through the
	// Kubernetes API server's service proxy (MESHROLL_PROMETHEUS_SERVICE).
	Proxy *Proxy

	// Retries is the number of attempts one query gets inside an interval
	// (default 3: one try and two retries); Backoff is the wait before the
	// first retry (default 500ms), doubled before each next one. Together
	// they never take more than half the Interval. Tests shorten them.
	Retries int
	Backoff time.Duration
}

// Analyzer runs the checks of one rollout against Prometheus. It is safe for
// concurrent use.
type Analyzer struct {
	mu       sync.Mutex
	api      v1.API // nil through a proxy until open
	where    string // names Prometheus in messages
	settings Settings
	window   string        // the Interval as PromQL, e.g. "30s"
	budget   time.Duration // the most one query may take, retries included
	checks   []check       // every check, built-ins first, with rendered queries
	// stableProbe is Preflight's query: did the stable workload serve requests lately?
	stableProbe string
	secrets     []string
}

// New builds the Prometheus client and renders the queries. It does no network
// I/O (reading CAFile is its only I/O); through a proxy, the client is built
// when the proxy opens, before the first query. s.Analysis is taken as config
// validated it; New checks only what config cannot know: the namespace
// (resolved after loading), the CA file's contents and the retry bounds.
// Every problem is reported at once.
func New(s Settings) (*Analyzer, error) {
	if s.Retries == 0 {
		s.Retries = DefaultRetries
	}
	if s.Backoff == 0 {
		s.Backoff = DefaultBackoff
	}
	secrets := secretsOf(s)

	var errs []error
	if s.Namespace == "" {
		errs = append(errs, errors.New("the namespace of the workloads is required (destination_workload_namespace)"))
	}
	if s.Retries < 0 || s.Backoff < 0 {
		errs = append(errs, fmt.Errorf("the retry bounds (%d attempts, backoff %s) must not be negative", s.Retries, s.Backoff))
	}
	if s.Proxy != nil && (s.Proxy.Transport == nil || s.Proxy.Open == nil) {
		errs = append(errs, errors.New("the service proxy to Prometheus needs a transport and a way to open it"))
	}
	tlsConfig, err := tlsConfigOf(s.Analysis)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, redactErr(fmt.Errorf("invalid analysis settings: %w", errors.Join(errs...)), secrets)
	}
	var prom v1.API
	if s.Proxy == nil {
		if prom, err = newAPI(s.Analysis, tlsConfig); err != nil {
			return nil, redactErr(err, secrets)
		}
	}

	a := &Analyzer{
		api:      prom,
		where:    where(s),
		settings: s,
		window:   promDuration(s.Interval),
		budget:   s.Interval / 2,
		secrets:  secrets,
	}
	q := a.labels()
	a.checks = builtinChecks(q, a.window, s.Analysis)
	data := config.QueryData{Namespace: q.namespace, CanaryWorkload: q.canary, StableWorkload: q.stable, Reporter: q.reporter, Interval: a.window}
	for _, c := range s.Checks {
		rendered, err := c.Render(data)
		if err != nil { // cannot happen: config rendered it with the same keys
			return nil, fmt.Errorf("failed to render check %q: %w", c.Name, err)
		}
		a.checks = append(a.checks, check{name: c.Name, kind: kindCustom, canary: rendered, min: c.Min, max: c.Max})
	}
	a.stableProbe = volumeQuery(q.reporter, q.namespace, q.stable, promDuration(max(s.Interval, preflightWindow)))
	return a, nil
}

// newAPI builds the Prometheus client: TLS, then the credentials and headers.
func newAPI(s config.Analysis, tlsConfig *tls.Config) (v1.API, error) {
	base, err := url.Parse(s.PrometheusURL)
	if err != nil {
		// The parse error echoes the URL, which may carry a password: not wrapped.
		return nil, errors.New("failed to build the Prometheus client: MESHROLL_PROMETHEUS_URL is not a URL")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConfig != nil {
		transport.TLSClientConfig = tlsConfig
	}
	client, err := api.NewClient(api.Config{
		Address:      s.PrometheusURL,
		RoundTripper: newAuthTransport(transport, base, s),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to build the Prometheus client: %w", err)
	}
	return v1.NewAPI(client), nil
}

// tlsConfigOf builds the TLS settings for Prometheus, or nil for Go's defaults.
func tlsConfigOf(s config.Analysis) (*tls.Config, error) {
	if s.CAFile == "" && !s.InsecureSkipVerify {
		return nil, nil
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: s.InsecureSkipVerify} //nolint:gosec // the user asked for it
	if s.CAFile == "" {
		return tlsConfig, nil
	}
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, fmt.Errorf("failed to read the Prometheus CA file (MESHROLL_PROMETHEUS_CA_FILE): %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the Prometheus CA file %s holds no PEM certificate", s.CAFile)
	}
	tlsConfig.RootCAs = pool
	return tlsConfig, nil
}

// Queries returns every rendered query a window runs, in the order of the
// results (canary before stable for the built-ins; mtls's counts of all
// requests after its canary and stable), for logs and the summary.
func (a *Analyzer) Queries() []string {
	var out []string
	for _, c := range a.checks {
		for _, q := range c.queries() {
			if q != "" {
				out = append(out, q)
			}
		}
	}
	return out
}

// labels are the escaped label values that go into every query.
type labels struct{ reporter, namespace, canary, stable string }

func (a *Analyzer) labels() labels {
	return labels{
		reporter:  escapeLabelValue(a.settings.Reporter),
		namespace: escapeLabelValue(a.settings.Namespace),
		canary:    escapeLabelValue(a.settings.CanaryWorkload),
		stable:    escapeLabelValue(a.settings.StableWorkload),
	}
}

// promDuration writes d as whole seconds, rounded up, the way PromQL reads
// a range ("30s"): one spelling whatever the Go duration looked like.
func promDuration(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return fmt.Sprintf("%ds", secs)
}

// authTransport adds the credentials and extra headers to every request for
// Prometheus's own scheme and host, and to no other: a redirect elsewhere
// must not carry the token away.
type authTransport struct {
	base          http.RoundTripper
	scheme, host  string
	authorization string
	headers       map[string]string
}

func newAuthTransport(base http.RoundTripper, u *url.URL, s config.Analysis) *authTransport {
	t := &authTransport{base: base, scheme: u.Scheme, host: u.Host, headers: s.Headers}
	switch {
	case s.Token != "":
		t.authorization = "Bearer " + s.Token
	case s.Username != "":
		t.authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte(s.Username+":"+s.Password))
	}
	return t
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == t.scheme && req.URL.Host == t.host && (t.authorization != "" || len(t.headers) > 0) {
		req = req.Clone(req.Context())
		for name, value := range t.headers {
			req.Header.Set(name, value)
		}
		if t.authorization != "" {
			req.Header.Set("Authorization", t.authorization)
		}
	}
	resp, err := t.base.RoundTrip(req)
	if resp != nil {
		if seen, ok := req.Context().Value(statusKey{}).(*int); ok {
			*seen = resp.StatusCode
		}
	}
	return resp, err
}

// secretsOf lists the values that must never be printed, in every form they
// travel in.
func secretsOf(s Settings) []string {
	var out []string
	add := func(v string) {
		// Very short values are no real secret, and scrubbing them would
		// mangle every message that happens to contain those characters.
		if len(v) >= 4 {
			out = append(out, v)
		}
	}
	add(s.Token)
	add(s.Password)
	if s.Username != "" || s.Password != "" {
		add(base64.StdEncoding.EncodeToString([]byte(s.Username + ":" + s.Password)))
	}
	for _, v := range s.Headers {
		add(v)
	}
	if u, err := url.Parse(s.PrometheusURL); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
			add(url.QueryEscape(p))
		}
	}
	return out
}

// redact replaces every secret in text.
func redact(text string, secrets []string) string {
	for _, s := range secrets {
		text = strings.ReplaceAll(text, s, "[REDACTED]")
	}
	return text
}

// redactErr keeps err's chain (for errors.Is) while scrubbing its text.
func redactErr(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	if clean := redact(text, secrets); clean != text {
		return &redactedError{msg: clean, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// statusKey carries a *int in a request's context, into which authTransport
// writes the HTTP status: client_golang folds 401, 404 and 429 into one error
// type, and the retry decision needs the difference.
type statusKey struct{}

// withStatus returns a context whose requests report their HTTP status
// into the returned int.
func withStatus(ctx context.Context) (context.Context, *int) {
	seen := new(int)
	return context.WithValue(ctx, statusKey{}, seen), seen
}
