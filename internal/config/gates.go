package config

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// gates checks the inputs of the checks around the traffic steps that are not metric
// analysis: the webhooks, the built-in load generator, security verification and Istio's
// root namespace. It runs after analysis: security verification adds a check to it.
func (in input) gates(v *validator, cfg *Config) {
	hooks, problems := parseWebhooks(in.Webhooks)
	for _, p := range problems {
		v.add("MESHROLL_WEBHOOKS: " + p)
	}
	cfg.Webhooks = hooks // even when invalid: Reporting takes their header values as secrets
	webhookHold(v, *cfg)
	cfg.Load = in.loadGenerator(v)
	in.verifySecurity(v, cfg)
	cfg.IstioNamespace = strings.TrimSpace(in.IstioNamespace)
	if errs := validation.IsDNS1123Label(cfg.IstioNamespace); len(errs) > 0 {
		v.invalid("MESHROLL_ISTIO_NAMESPACE", cfg.IstioNamespace, "not a valid namespace name (%s); use the namespace istiod runs in and mesh-wide policies live in, or leave it empty for %s", strings.Join(errs, ", "), defaultIstioNamespace)
	}
}

// webhookHold checks that rollout webhooks get to judge the held steps without Prometheus:
// each hold is split into windows of the interval, and a hold shorter than one has none, so
// the webhooks would never be called (with Prometheus, hold checks the same).
func webhookHold(v *validator, cfg Config) {
	held := cfg.Mode.Progressive() || cfg.Mode == ModePhase
	if cfg.Analysis.Enabled() || !held || cfg.Analysis.Interval <= 0 || cfg.StepDuration >= cfg.Analysis.Interval {
		return
	}
	if slices.ContainsFunc(cfg.Webhooks, func(w Webhook) bool { return w.Type == WebhookRollout }) {
		v.invalid("MESHROLL_STEP_DURATION", cfg.StepDuration.String(), "shorter than MESHROLL_ANALYSIS_INTERVAL=%s, so the rollout webhooks, called once an interval, would never judge a step; hold each step at least one interval, e.g. %s", cfg.Analysis.Interval, 2*cfg.Analysis.Interval)
	}
}

// loadHeaderExample is the line MESHROLL_LOAD_HEADERS's messages show: the header a load sent
// through an ingress gateway needs most often.
const loadHeaderExample = "Host: reviews.example.com"

// loadGenerator checks MESHROLL_LOAD_*. The rate and the headers mean nothing without a URL:
// set alone they would be a load that is not there.
func (in input) loadGenerator(v *validator) LoadGenerator {
	l := LoadGenerator{URL: strings.TrimSpace(in.LoadURL)}
	rate := strings.TrimSpace(in.LoadRPS)
	if l.URL == "" {
		if rate != "" {
			v.invalid("MESHROLL_LOAD_RPS", rate, "only used with MESHROLL_LOAD_URL; set MESHROLL_LOAD_URL, or unset MESHROLL_LOAD_RPS")
		}
		if strings.TrimSpace(in.LoadHeaders) != "" { // not echoed: the values are secrets
			v.add("MESHROLL_LOAD_HEADERS is set but only used with MESHROLL_LOAD_URL; set MESHROLL_LOAD_URL, or unset MESHROLL_LOAD_HEADERS")
		}
		return LoadGenerator{}
	}
	if what := notHTTPURL(l.URL); what != "" {
		// Not echoed: the URL may carry credentials.
		v.add("MESHROLL_LOAD_URL: not an absolute http or https URL (" + what + "); use the address the load is sent to, e.g. http://reviews.shop:9080/, or leave it empty for no load")
	}
	l.RPS = defaultLoadRPS
	if n, ok := parseCount(rate, maxLoadRPS); ok && n > 0 {
		l.RPS = n
	} else {
		v.invalid("MESHROLL_LOAD_RPS", rate, "must be a whole number of requests per second from 1 to %d, e.g. %d, or empty for %d", maxLoadRPS, defaultLoadRPS, defaultLoadRPS)
	}
	l.Headers = headers(v, "MESHROLL_LOAD_HEADERS", in.LoadHeaders, loadHeaderExample)
	return l
}

// verifySecurity checks MESHROLL_VERIFY_SECURITY. The security checks compare the pods of the
// two versions, whose labels come from both Deployments' pod templates, so both are named.
func (in input) verifySecurity(v *validator, cfg *Config) {
	raw := strings.TrimSpace(in.VerifySecurity)
	if raw == "" {
		return
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		v.invalid("MESHROLL_VERIFY_SECURITY", raw, "not a boolean; use true or false, or leave it empty for false")
		return
	}
	cfg.VerifySecurity = b
	if !b {
		return
	}
	if cfg.StableDeployment == "" {
		v.required("MESHROLL_STABLE_DEPLOYMENT", "MESHROLL_VERIFY_SECURITY=true checks that every policy protecting the stable pods protects the canary's too, and takes the stable pods' labels from this Deployment's pod template; set it to the stable version's Deployment, e.g. reviews-v1, or unset MESHROLL_VERIFY_SECURITY")
	}
	if cfg.CanaryDeployment == "" {
		v.required("MESHROLL_CANARY_DEPLOYMENT", "MESHROLL_VERIFY_SECURITY=true checks the canary's mTLS mode and policies by the labels of this Deployment's pod template; set it to the canary version's Deployment, e.g. reviews-v2, or unset MESHROLL_VERIFY_SECURITY")
	}
	// With metric analysis, the canary's own traffic says whether mTLS is really in use.
	cfg.Analysis.MTLS = cfg.Analysis.Enabled()
}

// notHTTPURL says what keeps raw from being an absolute http or https URL with a host, ""
// when nothing does. It never quotes raw, nor url.Parse's error, which does: a URL may carry
// credentials (a password, a token in the query, a secret path such as a chat hook's).
func notHTTPURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "it does not parse: a space, a bad %-escape or a bad port?"
	case u.Scheme == "":
		return "no scheme: start it with http:// or https://"
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("the scheme is %q", u.Scheme) // letters, digits, + - . only: never a secret
	case u.Hostname() == "":
		return "no host"
	}
	return ""
}

// parseCount accepts a plain decimal integer from 0 to hi (no sign, no unit).
func parseCount(s string, hi int) (int, bool) {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > hi {
		return 0, false
	}
	return n, true
}
