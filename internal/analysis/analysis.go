// Package analysis decides, between two traffic steps, whether the canary is
// healthy: it runs PromQL checks on Istio's standard metrics (and custom
// checks) against Prometheus and turns each answer into a verdict.
//
// It imports no other internal package; the rollout declares the small
// interface it needs and app wires an *Analyzer into it.
package analysis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
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
	// DefaultReporter is Istio's reporter label used when Settings.Reporter
	// is empty: the server-side proxy sees every request to the workload,
	// whoever sent it (including callers outside the mesh).
	DefaultReporter = "destination"
	// preflightWindow is the least look-back over which the stable workload
	// must have served requests before anything moves.
	preflightWindow = 5 * time.Minute
)

// Settings configure an Analyzer. Secrets (Token, Password, the values of
// Headers) never appear in an error or a Result.
type Settings struct {
	URL                string            // Prometheus base URL, e.g. http://prometheus.istio-system:9090
	Token              string            // bearer token (secret)
	Username, Password string            // basic auth (password secret)
	CAFile             string            // PEM bundle; when set, it is the only trust anchor
	InsecureSkipVerify bool              // do not verify Prometheus's certificate
	Headers            map[string]string // extra headers on every request (e.g. X-Scope-OrgID); values are secret
	Interval           time.Duration     // how often checks run; also the query window (whole seconds, rounded up)
	MinSuccessRate     float64           // percent of non-5xx responses the canary needs, 0–100
	MaxLatencyP99      float64           // milliseconds the canary's p99 may take, > 0
	MinRequests        float64           // canary requests a window needs to be judged, ≥ 0
	Checks             []Check           // custom checks
	Namespace          string            // destination_workload_namespace of both workloads
	CanaryWorkload     string            // destination_workload of the canary
	StableWorkload     string            // destination_workload of the stable version
	Reporter           string            // Istio's reporter label: "destination" (default) or "source"

	// Retries is the number of attempts one query gets inside an interval
	// (default 3: one try and two retries); Backoff is the wait before the
	// first retry (default 500ms), doubled before each next one. Together
	// they never take more than half the Interval.
	Retries int
	Backoff time.Duration
}

// Analyzer runs the checks of one rollout against Prometheus. It is safe for
// concurrent use.
type Analyzer struct {
	api      v1.API
	settings Settings
	window   string        // the Interval as PromQL, e.g. "30s"
	budget   time.Duration // the most one query may take, retries included
	checks   []check       // every check, built-ins first, with rendered queries
	// stableProbe is Preflight's query: did the stable workload serve requests lately?
	stableProbe string
	secrets     []string
}

// New validates the settings and builds the Prometheus client. It does no
// network I/O (reading CAFile is its only I/O); every problem is reported at
// once.
func New(s Settings) (*Analyzer, error) {
	if s.Reporter == "" {
		s.Reporter = DefaultReporter
	}
	if s.Retries == 0 {
		s.Retries = DefaultRetries
	}
	if s.Backoff == 0 {
		s.Backoff = DefaultBackoff
	}
	secrets := secretsOf(s)

	var errs []error
	problem := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	base, err := url.Parse(s.URL)
	switch {
	case s.URL == "":
		problem("the Prometheus URL is required (MESHROLL_PROMETHEUS_URL), e.g. http://prometheus.istio-system:9090")
	case err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "":
		// The parse error echoes the URL, which may carry a password: not wrapped.
		problem("the Prometheus URL %q is not an absolute http(s) URL, e.g. http://prometheus.istio-system:9090", redactURL(s.URL))
	}
	if s.Token != "" && (s.Username != "" || s.Password != "") {
		problem("set either a bearer token or a username and password for Prometheus, not both")
	}
	if s.Password != "" && s.Username == "" {
		problem("a Prometheus password needs a username")
	}
	for _, name := range slices.Sorted(maps.Keys(s.Headers)) {
		value := s.Headers[name]
		switch {
		case !validHeaderName(name):
			problem("the Prometheus header name %q is not a valid HTTP header name", name)
		case strings.EqualFold(name, "Authorization") && (s.Token != "" || s.Username != ""):
			problem("the Prometheus header %q conflicts with the token or username/password; set only one", name)
		case strings.ContainsAny(value, "\r\n\x00"):
			problem("the value of the Prometheus header %q contains a line break or NUL", name) // the value itself is secret
		}
	}
	if s.Interval < time.Second {
		problem("the analysis interval %s is too short; it is also the query window and needs at least 1s, e.g. 1m", s.Interval)
	}
	if math.IsNaN(s.MinSuccessRate) || s.MinSuccessRate < 0 || s.MinSuccessRate > 100 {
		problem("the minimum success rate %v is not a percentage between 0 and 100", s.MinSuccessRate)
	}
	if math.IsNaN(s.MaxLatencyP99) || math.IsInf(s.MaxLatencyP99, 0) || s.MaxLatencyP99 <= 0 {
		problem("the maximum p99 latency %v is not a positive number of milliseconds", s.MaxLatencyP99)
	}
	if math.IsNaN(s.MinRequests) || math.IsInf(s.MinRequests, 0) || s.MinRequests < 0 {
		problem("the minimum request count %v is not a number ≥ 0", s.MinRequests)
	}
	if s.Namespace == "" {
		problem("the namespace of the workloads is required (destination_workload_namespace)")
	}
	if s.CanaryWorkload == "" {
		problem("the canary workload is required (its destination_workload label, MESHROLL_CANARY_WORKLOAD)")
	}
	if s.StableWorkload == "" {
		problem("the stable workload is required (its destination_workload label, MESHROLL_STABLE_WORKLOAD)")
	}
	if s.CanaryWorkload != "" && s.CanaryWorkload == s.StableWorkload {
		problem("the canary and stable workloads are both %q; they must differ to compare the two versions", s.CanaryWorkload)
	}
	if s.Reporter != "destination" && s.Reporter != "source" {
		problem("the reporter %q is neither \"destination\" nor \"source\" (MESHROLL_REPORTER)", s.Reporter)
	}
	if s.Retries < 0 || s.Backoff < 0 {
		problem("the retry bounds (%d attempts, backoff %s) must not be negative", s.Retries, s.Backoff)
	}
	var checkErrs []error
	templates := make([]*queryTemplate, len(s.Checks))
	names := map[string]int{}
	for i, c := range s.Checks {
		var errs []error
		templates[i], errs = validateCheck(i, c, names, nil)
		checkErrs = append(checkErrs, errs...)
	}
	errs = append(errs, checkErrs...)

	var tlsConfig *tls.Config
	if s.CAFile != "" || s.InsecureSkipVerify {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: s.InsecureSkipVerify} //nolint:gosec // the user asked for it
	}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			problem("failed to read the Prometheus CA file (MESHROLL_PROMETHEUS_CA_FILE): %w", err)
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				problem("the Prometheus CA file %s holds no PEM certificate", s.CAFile)
			}
			tlsConfig.RootCAs = pool
		}
	}
	if len(errs) > 0 {
		return nil, redactErr(fmt.Errorf("invalid analysis settings: %w", errors.Join(errs...)), secrets)
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConfig != nil {
		transport.TLSClientConfig = tlsConfig
	}
	client, err := api.NewClient(api.Config{
		Address:      s.URL,
		RoundTripper: newAuthTransport(transport, base, s),
	})
	if err != nil {
		return nil, redactErr(fmt.Errorf("failed to build the Prometheus client: %w", err), secrets)
	}

	a := &Analyzer{
		api:      v1.NewAPI(client),
		settings: s,
		window:   promDuration(s.Interval),
		budget:   s.Interval / 2,
		secrets:  secrets,
	}
	q := a.labels()
	a.checks = builtinChecks(q, a.window)
	data := templateData(q, a.window)
	for i, c := range s.Checks {
		rendered, err := templates[i].render(data)
		if err != nil { // cannot happen: validateCheck rendered it with the same keys
			return nil, fmt.Errorf("failed to render check %q: %w", c.Name, err)
		}
		a.checks = append(a.checks, check{name: c.Name, kind: kindCustom, canary: rendered, min: c.Min, max: c.Max})
	}
	a.stableProbe = volumeQuery(q.reporter, q.namespace, q.stable, promDuration(max(s.Interval, preflightWindow)))
	return a, nil
}

// Queries returns every rendered query a window runs, in the order of the
// results (canary before stable for the built-ins), for logs and the summary.
func (a *Analyzer) Queries() []string {
	var out []string
	for _, c := range a.checks {
		out = append(out, c.canary)
		if c.stable != "" {
			out = append(out, c.stable)
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

func newAuthTransport(base http.RoundTripper, u *url.URL, s Settings) *authTransport {
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

// validHeaderName reports whether name is an HTTP token (RFC 9110).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
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
	if u, err := url.Parse(s.URL); err == nil && u.User != nil {
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

// redactURL hides the password of a URL that failed to parse as well as one
// that did not.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		if scheme := strings.Index(raw, "://"); scheme >= 0 && scheme < at {
			return raw[:scheme+3] + "[REDACTED]" + raw[at:]
		}
		return "[REDACTED]" + raw[at:]
	}
	return raw
}

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
