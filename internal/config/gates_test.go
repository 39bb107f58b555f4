package config

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadGenerator(t *testing.T) {
	t.Parallel()
	const rate = "must be a whole number of requests per second from 1 to 10000, e.g. 10, or empty for 10"
	const address = "use the address the load is sent to, e.g. http://reviews.shop:9080/, or leave it empty for no load"
	tests := []struct {
		name     string
		environ  []string
		want     LoadGenerator
		problems []string
	}{
		{name: "off by default"},
		{name: "a URL, the default rate", environ: []string{"MESHROLL_LOAD_URL= http://reviews.shop:9080/health "},
			want: LoadGenerator{URL: "http://reviews.shop:9080/health", RPS: 10}},
		{name: "an empty rate is the default", environ: []string{"MESHROLL_LOAD_URL=https://reviews.example.com/", "MESHROLL_LOAD_RPS= "},
			want: LoadGenerator{URL: "https://reviews.example.com/", RPS: 10}},
		{name: "every variable", environ: []string{"MESHROLL_LOAD_URL=http://istio-ingressgateway.istio-system/", "MESHROLL_LOAD_RPS=10000",
			"MESHROLL_LOAD_HEADERS=Host: reviews.example.com\n\nAuthorization: Bearer tok-0123 "},
			want: LoadGenerator{URL: "http://istio-ingressgateway.istio-system/", RPS: 10000,
				Headers: map[string]string{"Host": "reviews.example.com", "Authorization": "Bearer tok-0123"}}},
		{name: "the lowest rate", environ: []string{"MESHROLL_LOAD_URL=http://reviews/", "MESHROLL_LOAD_RPS=1"},
			want: LoadGenerator{URL: "http://reviews/", RPS: 1}},
		{name: "rates out of range or not whole numbers", environ: []string{"MESHROLL_LOAD_URL=http://reviews/", "MESHROLL_LOAD_RPS=0"},
			problems: []string{"MESHROLL_LOAD_RPS=0: " + rate}},
		{name: "above the highest rate", environ: []string{"MESHROLL_LOAD_URL=http://reviews/", "MESHROLL_LOAD_RPS=10001"},
			problems: []string{"MESHROLL_LOAD_RPS=10001: " + rate}},
		{name: "a rate with a unit", environ: []string{"MESHROLL_LOAD_URL=http://reviews/", "MESHROLL_LOAD_RPS=20/s"},
			problems: []string{"MESHROLL_LOAD_RPS=20/s: " + rate}},
		{name: "a fractional rate", environ: []string{"MESHROLL_LOAD_URL=http://reviews/", "MESHROLL_LOAD_RPS=2.5"},
			problems: []string{"MESHROLL_LOAD_RPS=2.5: " + rate}},
		{name: "a signed rate", environ: []string{"MESHROLL_LOAD_URL=http://reviews/", "MESHROLL_LOAD_RPS=+5"},
			problems: []string{"MESHROLL_LOAD_RPS=+5: " + rate}},
		{name: "a URL without a scheme", environ: []string{"MESHROLL_LOAD_URL=reviews.shop/health"},
			problems: []string{"MESHROLL_LOAD_URL: not an absolute http or https URL (no scheme: start it with http:// or https://); " + address}},
		{name: "a URL with another scheme, its credentials not shown", environ: []string{"MESHROLL_LOAD_URL=ftp://ci:pa55w0rd@reviews/"},
			problems: []string{`MESHROLL_LOAD_URL: not an absolute http or https URL (the scheme is "ftp"); ` + address}},
		{name: "a URL that does not parse", environ: []string{"MESHROLL_LOAD_URL=http://reviews/%zz?token=t0k3n-in-query"},
			problems: []string{"MESHROLL_LOAD_URL: not an absolute http or https URL (it does not parse: a space, a bad %-escape or a bad port?); " + address}},
		{name: "a rate and headers without a URL", environ: []string{"MESHROLL_LOAD_RPS=20", "MESHROLL_LOAD_HEADERS=X-Key: s3cr3t-value"},
			problems: []string{
				"MESHROLL_LOAD_RPS=20: only used with MESHROLL_LOAD_URL; set MESHROLL_LOAD_URL, or unset MESHROLL_LOAD_RPS",
				"MESHROLL_LOAD_HEADERS is set but only used with MESHROLL_LOAD_URL; set MESHROLL_LOAD_URL, or unset MESHROLL_LOAD_HEADERS",
			}},
		{name: "headers written wrong, as MESHROLL_PROMETHEUS_HEADERS's would be", environ: []string{"MESHROLL_LOAD_URL=http://reviews/",
			"MESHROLL_LOAD_HEADERS=X-Key s3cr3t-value\nX(Key): s3cr3t-value\nX-Key: s3cr3t-value\r"},
			problems: []string{
				`MESHROLL_LOAD_HEADERS: line 1 is not "Name: value"; write one header per line, e.g. Host: reviews.example.com`,
				`MESHROLL_LOAD_HEADERS: line 2: "X(Key)" is not a valid HTTP header name; use letters, digits and '-', e.g. Host: reviews.example.com`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(with(tt.environ...))
			if len(tt.problems) > 0 {
				got := problems(t, err)
				if diff := cmp.Diff(tt.problems, got); diff != "" {
					t.Errorf("problems (-want +got):\n%s", diff)
				}
				for _, secret := range webhookCredentials {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("a message shows the credential %q:\n%v", secret, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Load); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerifySecurity(t *testing.T) {
	t.Parallel()
	both := []string{"MESHROLL_STABLE_DEPLOYMENT=reviews-v1", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2"}
	type want struct{ Verify, MTLS bool }
	tests := []struct {
		name     string
		environ  []string
		want     want
		problems []string
	}{
		{name: "off by default", environ: with()},
		{name: "off, Deployments not needed", environ: with("MESHROLL_VERIFY_SECURITY=false")},
		{name: "on without metric analysis: no mTLS check", environ: with(append(both, "MESHROLL_VERIFY_SECURITY=true")...), want: want{Verify: true}},
		{name: "on with metric analysis: the mTLS check", environ: analysis(append(both, "MESHROLL_VERIFY_SECURITY=TRUE")...), want: want{Verify: true, MTLS: true}},
		{name: "off with metric analysis: no mTLS check", environ: analysis(append(both, "MESHROLL_VERIFY_SECURITY=0")...)},
		{name: "not a boolean", environ: with(append(both, "MESHROLL_VERIFY_SECURITY=yes")...), problems: []string{
			"MESHROLL_VERIFY_SECURITY=yes: not a boolean; use true or false, or leave it empty for false"}},
		{name: "no Deployments", environ: with("MESHROLL_VERIFY_SECURITY=true"), problems: []string{
			"MESHROLL_STABLE_DEPLOYMENT is required: MESHROLL_VERIFY_SECURITY=true checks that every policy protecting the stable pods protects the canary's too, and takes the stable pods' labels from this Deployment's pod template; set it to the stable version's Deployment, e.g. reviews-v1, or unset MESHROLL_VERIFY_SECURITY",
			"MESHROLL_CANARY_DEPLOYMENT is required: MESHROLL_VERIFY_SECURITY=true checks the canary's mTLS mode and policies by the labels of this Deployment's pod template; set it to the canary version's Deployment, e.g. reviews-v2, or unset MESHROLL_VERIFY_SECURITY"}},
		{name: "no canary Deployment", environ: with("MESHROLL_VERIFY_SECURITY=true", "MESHROLL_STABLE_DEPLOYMENT=reviews-v1"), problems: []string{
			"MESHROLL_CANARY_DEPLOYMENT is required: MESHROLL_VERIFY_SECURITY=true checks the canary's mTLS mode and policies by the labels of this Deployment's pod template; set it to the canary version's Deployment, e.g. reviews-v2, or unset MESHROLL_VERIFY_SECURITY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(tt.environ)
			if len(tt.problems) > 0 {
				if diff := cmp.Diff(tt.problems, problems(t, err)); diff != "" {
					t.Errorf("problems (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, want{cfg.VerifySecurity, cfg.Analysis.MTLS}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestIstioNamespace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value, want string
		problem           string
	}{
		{name: "default", want: "istio-system"},
		{name: "blank is the default", value: " ", want: "istio-system"},
		{name: "another root namespace, trimmed", value: " mesh-root ", want: "mesh-root"},
		{name: "not a label", value: "Istio_System", problem: "MESHROLL_ISTIO_NAMESPACE=Istio_System: not a valid namespace name ("},
		{name: "a dot", value: "istio.system", problem: "MESHROLL_ISTIO_NAMESPACE=istio.system: not a valid namespace name (must not contain dots); use the namespace istiod runs in and mesh-wide policies live in, or leave it empty for istio-system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(with("MESHROLL_ISTIO_NAMESPACE=" + tt.value))
			if tt.problem != "" {
				if got := problems(t, err); len(got) != 1 || !strings.HasPrefix(got[0], tt.problem) {
					t.Errorf("problems %q, want one starting with %q", got, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.IstioNamespace); diff != "" {
				t.Errorf("IstioNamespace (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeaderSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		headers map[string]string
		want    []string
	}{
		{name: "none"},
		{name: "every value, an authorization's credential alone too, each once", headers: map[string]string{
			"X-Token": "abc123", "Authorization": "Bearer tok-xyz", "X-Api-Key": "abc123", "Proxy-Authorization": "Basic dTpw"},
			want: []string{"Bearer tok-xyz", "tok-xyz", "Basic dTpw", "dTpw", "abc123"}},
		{name: "as written and as sent", headers: map[string]string{"X-Key": " padded "}, want: []string{" padded ", "padded"}},
		{name: "a scheme in any case, spaces around the credential", headers: map[string]string{"authorization": " bearer   tok-xyz "},
			want: []string{" bearer   tok-xyz ", "bearer   tok-xyz", "tok-xyz"}},
		{name: "an authorization without a scheme", headers: map[string]string{"Authorization": "tok-xyz"}, want: []string{"tok-xyz"}},
		{name: "empty values are no secret", headers: map[string]string{"X-Empty": "", "X-Blank": " "}, want: []string{" "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, headerSecrets(tt.headers)); diff != "" {
				t.Errorf("headerSecrets (-want +got):\n%s", diff)
			}
		})
	}
}

// The gates' secrets: the webhooks' header values and URL credentials, the load's, from a
// valid input and from rejected ones; and nothing of the gates that is no secret.
func TestGateSecrets(t *testing.T) {
	t.Parallel()
	hooks := `[{name: smoke, type: pre-rollout, url: "https://ci:hook-pa55w0rd@hooks.example/smoke?team=shop&access_token=hook-query-t0k3n",` +
		` metadata: {cmd: "hey http://reviews.shop/"}, headers: {Authorization: "Bearer hook-bearer-t0k3n", X-Api-Key: " hook-api-k3y "}},` +
		` {name: chat, type: post-rollout, url: "https://hook-user-t0k3n@chat.example/x#key=hook-fragment-k3y"}]`
	load := []string{"MESHROLL_LOAD_URL=http://reviews.shop:9080/?api_key=load-query-k3y", "MESHROLL_LOAD_HEADERS=Authorization: Basic bG9hZDpwYXNz\nX-Tenant: load-tenant-secret"}
	secret := []string{"Bearer hook-bearer-t0k3n", "hook-bearer-t0k3n", " hook-api-k3y ", "hook-api-k3y", "hook-pa55w0rd",
		"hook-query-t0k3n", "hook-user-t0k3n", base64.StdEncoding.EncodeToString([]byte("hook-user-t0k3n:")), "hook-fragment-k3y",
		"Basic bG9hZDpwYXNz", "bG9hZDpwYXNz", "load-tenant-secret", "load-query-k3y"}
	public := []string{"hooks.example", "chat.example", "shop", "smoke", "hey", "reviews", "ci"}

	cfg, err := Load(with(append(load, "MESHROLL_WEBHOOKS="+hooks)...))
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, secret []string) {
		t.Helper()
		for _, s := range secret {
			if !slices.Contains(got, s) {
				t.Errorf("%s: Secrets() lacks %q: %q", what, s, got)
			}
		}
		for _, p := range public {
			if slices.Contains(got, p) {
				t.Errorf("%s: Secrets() holds %q, which is no secret: %q", what, p, got)
			}
		}
	}
	check("Load", cfg.Secrets(), secret)

	loadHeaders := []string{"Basic bG9hZDpwYXNz", "bG9hZDpwYXNz", "load-tenant-secret"}
	rejected := []struct {
		name    string
		environ []string
		secret  []string
	}{
		{"an unknown variable", with(append(load, "MESHROLL_WEBHOOKS="+hooks, "MESHROLL_TYPO=1")...), secret},
		{"an invalid webhook beside them", with(append(load, "MESHROLL_WEBHOOKS="+strings.Replace(hooks, "type: post-rollout", "type: event, bogus: 1", 1))...), secret},
		{"a key twice: the list is read leniently", with(append(load, "MESHROLL_WEBHOOKS="+strings.Replace(hooks, "X-Api-Key:", "X-Dup: 1, X-Dup: 2, X-Api-Key:", 1))...), secret},
		{"load headers without a URL", with(load[1]), loadHeaders},
		{"a load URL that does not parse", with("MESHROLL_LOAD_URL=http://reviews/%zz?api_key=load-query-k3y", load[1]), append(loadHeaders, "load-query-k3y")},
	}
	for _, tt := range rejected {
		check(tt.name, Reporting(tt.environ).Secrets(), tt.secret)
	}
}

// The credentials a webhook's URL may carry are secrets, as the app's writer redacts them in
// every line that shows the URL (a call's, a connection error's): the password, the user name
// standing alone as a token, a credential in the query or the fragment, and the function key
// of an Azure Functions URL. Not the rest of the URL, which says which hook it is.
func TestWebhookURLSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url string
		secret    []string
	}{
		{"nothing to hide", "https://loadtester.test/gate/check?team=shop", nil},
		{"a password", "https://ci:pa55w0rd@hooks.test/x", []string{"pa55w0rd", base64.StdEncoding.EncodeToString([]byte("ci:pa55w0rd"))}},
		{"a token as the user name", "https://t0ken-as-user@hooks.test/x", []string{"t0ken-as-user"}},
		{"a token in the query", "https://hooks.test/x?team=a&access_token=query-t0ken", []string{"query-t0ken"}},
		{"a key in the fragment", "https://hooks.test/x#key=fragment-k3y", []string{"fragment-k3y"}},
		{"an Azure function key", "https://app.azurewebsites.net/api/canary?code=function-k3y==", []string{"function-k3y==", "function-k3y%3D%3D"}},
		{"a chat service's token in the path", "https://hooks.slack.test/services/T0001/B0002/a1B2c3D4e5F6g7H8i9J0k1L2", []string{"a1B2c3D4e5F6g7H8i9J0k1L2"}},
		{"words and short ids in the path are no token", "https://loadtester.test/gate/confirm-promotion/v2/12345", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text := "[{name: hook, url: '" + tt.url + "'}]"
			cfg, err := Load(with("MESHROLL_WEBHOOKS=" + text))
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Secrets()
			if len(tt.secret) == 0 && len(got) > 0 {
				t.Errorf("Secrets() = %q, want none", got)
			}
			for _, s := range tt.secret {
				if !slices.Contains(got, s) {
					t.Errorf("Secrets() lacks %q: %q", s, got)
				}
			}
		})
	}
	// A URL Load rejects keeps its credentials secret for the report of the rejected run.
	text := "[{name: hook, url: 'https://ci:pa55w0rd@hooks.test/%zz?token=query-t0ken'}]"
	got := Reporting(with("MESHROLL_WEBHOOKS=" + text)).Secrets()
	for _, s := range []string{"pa55w0rd", "query-t0ken"} {
		if !slices.Contains(got, s) {
			t.Errorf("Reporting(a URL that does not parse).Secrets() lacks %q: %q", s, got)
		}
	}
}

// Without Prometheus the webhooks still have an interval: rollout webhooks judge each window
// of a hold, and the manual gates are polled every interval.
func TestWebhookInterval(t *testing.T) {
	t.Parallel()
	const rollout = "MESHROLL_WEBHOOKS=[{name: judge, url: 'http://hooks.example/'}]"
	const gate = "MESHROLL_WEBHOOKS=[{name: approve, type: confirm-promotion, url: 'http://hooks.example/'}]"
	tests := []struct {
		name     string
		environ  []string
		want     Analysis
		problems []string
	}{
		{name: "no webhooks, no Prometheus: no interval", environ: with()},
		{name: "rollout webhooks: the default interval", environ: with(rollout), want: Analysis{Interval: 30 * time.Second, FailureThreshold: 2}},
		{name: "a manual gate: the interval given", environ: with(gate, "MESHROLL_ANALYSIS_INTERVAL=10s"), want: Analysis{Interval: 10 * time.Second, FailureThreshold: 2}},
		{name: "a step as long as the interval", environ: with(rollout, "MESHROLL_STEP_DURATION=30s"), want: Analysis{Interval: 30 * time.Second, FailureThreshold: 2}},
		{name: "a short step without rollout webhooks", environ: with(gate, "MESHROLL_STEP_DURATION=0"), want: Analysis{Interval: 30 * time.Second, FailureThreshold: 2}},
		{name: "promote holds nothing", environ: with(rollout, "MESHROLL_MODE=promote", "MESHROLL_STEP_DURATION=0"),
			want: Analysis{Interval: 30 * time.Second, FailureThreshold: 2}},
		{name: "a failure threshold for the rollout webhooks", environ: with(rollout, "MESHROLL_FAILURE_THRESHOLD=1"), want: Analysis{Interval: 30 * time.Second, FailureThreshold: 1}},
		{name: "a failure threshold without webhooks or Prometheus", environ: with("MESHROLL_FAILURE_THRESHOLD=3"), problems: []string{
			"MESHROLL_FAILURE_THRESHOLD is set but MESHROLL_PROMETHEUS_URL is empty and so is MESHROLL_PROMETHEUS_SERVICE, so no metric analysis would run: set one of them, or unset MESHROLL_FAILURE_THRESHOLD"}},
		{name: "an interval without webhooks or Prometheus", environ: with("MESHROLL_ANALYSIS_INTERVAL=10s"), problems: []string{
			"MESHROLL_ANALYSIS_INTERVAL is set but MESHROLL_PROMETHEUS_URL is empty and so is MESHROLL_PROMETHEUS_SERVICE, so no metric analysis would run: set one of them, or unset MESHROLL_ANALYSIS_INTERVAL"}},
		{name: "an interval below a second", environ: with(gate, "MESHROLL_ANALYSIS_INTERVAL=500ms"), problems: []string{
			"MESHROLL_ANALYSIS_INTERVAL=500ms: must be at least 1s (Prometheus windows are whole seconds); use e.g. 30s"}},
		{name: "a step shorter than the interval: rollout webhooks never called", environ: with(rollout, "MESHROLL_STEP_DURATION=10s"), problems: []string{
			"MESHROLL_STEP_DURATION=10s: shorter than MESHROLL_ANALYSIS_INTERVAL=30s, so the rollout webhooks, called once an interval, would never judge a step; hold each step at least one interval, e.g. 1m0s"}},
		{name: "a phase not held", environ: with(rollout, "MESHROLL_MODE=phase", "MESHROLL_WEIGHT=20", "MESHROLL_STEP_DURATION=0"), problems: []string{
			"MESHROLL_STEP_DURATION=0s: shorter than MESHROLL_ANALYSIS_INTERVAL=30s, so the rollout webhooks, called once an interval, would never judge a step; hold each step at least one interval, e.g. 1m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(tt.environ)
			if len(tt.problems) > 0 {
				if diff := cmp.Diff(tt.problems, problems(t, err)); diff != "" {
					t.Errorf("problems (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Analysis); diff != "" {
				t.Errorf("Analysis (-want +got):\n%s", diff)
			}
		})
	}
}
