package config

import (
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// analysis validates the metric analysis variables. Without MESHROLL_PROMETHEUS_URL or
// MESHROLL_PROMETHEUS_SERVICE they must all be empty: a threshold set without a Prometheus to
// check it would be a gate that is not there.
func (in input) analysis(v *validator, cfg Config) Analysis {
	a := Analysis{
		PrometheusURL:  strings.TrimSpace(in.PrometheusURL),
		Token:          strings.TrimSpace(in.Token),
		Username:       strings.TrimSpace(in.Username),
		Password:       in.Password,
		CAFile:         strings.TrimSpace(in.CAFile),
		CanaryWorkload: strings.TrimSpace(in.CanaryWorkload),
		StableWorkload: strings.TrimSpace(in.StableWorkload),
	}
	if !in.prometheus() {
		in.analysisWithoutPrometheus(v)
		return in.webhookInterval(v)
	}
	if strings.TrimSpace(in.PrometheusSvc) != "" {
		in.prometheusService(v, &a)
	} else {
		in.prometheusAccess(v, &a)
		credentials(v, a)
	}
	in.thresholds(v, &a)
	a.Checks = customChecks(v, in.Checks)
	workloads(v, a)
	hold(v, cfg, a)
	return a
}

// prometheus reports whether metric analysis is asked for: a Prometheus URL or Service is set.
func (in input) prometheus() bool {
	return strings.TrimSpace(in.PrometheusURL) != "" || strings.TrimSpace(in.PrometheusSvc) != ""
}

// analysisWithoutPrometheus reports every analysis variable that is set although neither
// MESHROLL_PROMETHEUS_URL nor MESHROLL_PROMETHEUS_SERVICE is; the interval and the failure
// threshold only when there are no webhooks either.
func (in input) analysisWithoutPrometheus(v *validator) {
	for _, variable := range in.analysisOnly() {
		if (variable.name == "MESHROLL_ANALYSIS_INTERVAL" || variable.name == "MESHROLL_FAILURE_THRESHOLD") && strings.TrimSpace(in.Webhooks) != "" {
			continue
		}
		if strings.TrimSpace(variable.value) != "" {
			v.add(variable.name + " is set but MESHROLL_PROMETHEUS_URL is empty and so is MESHROLL_PROMETHEUS_SERVICE, so no metric analysis would run: " +
				"set one of them, or unset " + variable.name)
		}
	}
}

// analysisOnly are the variables that mean nothing without a Prometheus, in contract order.
func (in input) analysisOnly() []struct{ name, value string } {
	return []struct{ name, value string }{
		{"MESHROLL_PROMETHEUS_TOKEN", in.Token},
		{"MESHROLL_PROMETHEUS_USERNAME", in.Username},
		{"MESHROLL_PROMETHEUS_PASSWORD", in.Password},
		{"MESHROLL_PROMETHEUS_CA_FILE", in.CAFile},
		{"MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY", in.InsecureSkip},
		{"MESHROLL_PROMETHEUS_HEADERS", in.Headers},
		{"MESHROLL_ANALYSIS_INTERVAL", in.Interval},
		{"MESHROLL_MIN_SUCCESS_RATE", in.MinSuccessRate},
		{"MESHROLL_MAX_LATENCY_P99", in.MaxLatencyP99},
		{"MESHROLL_MIN_REQUESTS", in.MinRequests},
		{"MESHROLL_FAILURE_THRESHOLD", in.FailureThreshold},
		{"MESHROLL_CHECKS", in.Checks},
		{"MESHROLL_CANARY_WORKLOAD", in.CanaryWorkload},
		{"MESHROLL_STABLE_WORKLOAD", in.StableWorkload},
		{"MESHROLL_REPORTER", in.Reporter},
		{"MESHROLL_CONFIDENCE", in.Confidence},
		{"MESHROLL_MIN_STEP_DURATION", in.MinStepDuration},
		{"MESHROLL_MARGIN_FACTOR", in.MarginFactor},
		{"MESHROLL_MARGIN_POINTS", in.MarginPoints},
	}
}

// failureThreshold checks MESHROLL_FAILURE_THRESHOLD: how many windows with a failed check
// (a guardrail, a custom check, a rollout webhook) fail the canary.
func (in input) failureThreshold(v *validator) int {
	threshold := number(v, "MESHROLL_FAILURE_THRESHOLD", in.FailureThreshold, defaultFailureThreshold, 1, 1000, "a whole number of failed checks from 1 to 1000, e.g. 2")
	if threshold != math.Trunc(threshold) {
		v.invalid("MESHROLL_FAILURE_THRESHOLD", strings.TrimSpace(in.FailureThreshold), "must be a whole number; use e.g. 2")
	}
	return int(threshold)
}

// webhookInterval is the analysis without Prometheus: with webhooks, the interval and the
// failure threshold alone, as each hold is still split into windows judged by the rollout
// webhooks (a window with a failed one counts against the threshold), and the manual gates
// are polled every interval.
func (in input) webhookInterval(v *validator) Analysis {
	if strings.TrimSpace(in.Webhooks) == "" {
		return Analysis{}
	}
	return Analysis{Interval: interval(v, in.Interval), FailureThreshold: in.failureThreshold(v)}
}

// prometheusHeaderExample is the line MESHROLL_PROMETHEUS_HEADERS's messages show: the header
// a multi-tenant Prometheus (Mimir, Cortex, Thanos) needs most often.
const prometheusHeaderExample = "X-Scope-OrgID: tenant-1"

// prometheusAccess checks how Prometheus is reached: its URL, TLS and headers.
func (in input) prometheusAccess(v *validator, a *Analysis) {
	if u, err := url.Parse(a.PrometheusURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not echoed: the URL may carry a password.
		v.add("MESHROLL_PROMETHEUS_URL: not an absolute http(s) URL; use the Prometheus base URL, e.g. https://prometheus.example.com, " +
			"or set MESHROLL_PROMETHEUS_SERVICE instead (e.g. " + prometheusServiceExample + ") for a Prometheus inside the cluster")
	}
	if strings.TrimSpace(in.Password) == "" {
		a.Password = ""
	}
	if skip := strings.TrimSpace(in.InsecureSkip); skip != "" {
		b, err := strconv.ParseBool(skip)
		if err != nil {
			v.invalid("MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY", skip, "not a boolean; use true or false, or leave it empty for false (verify the certificate)")
		}
		a.InsecureSkipVerify = b
	}
	a.Headers = headers(v, "MESHROLL_PROMETHEUS_HEADERS", in.Headers, prometheusHeaderExample)
}

// credentials checks that Prometheus gets one kind of credentials: a bearer token, or a
// username and password, or an Authorization header. Values are secret and never echoed.
func credentials(v *validator, a Analysis) {
	if a.Token != "" && (a.Username != "" || a.Password != "") {
		v.add("MESHROLL_PROMETHEUS_TOKEN is set together with MESHROLL_PROMETHEUS_USERNAME or MESHROLL_PROMETHEUS_PASSWORD: " +
			"set either a bearer token or a username and password for Prometheus, not both")
	}
	if a.Password != "" && a.Username == "" {
		v.required("MESHROLL_PROMETHEUS_USERNAME", "MESHROLL_PROMETHEUS_PASSWORD is set, and basic auth needs a username too; set it, or unset MESHROLL_PROMETHEUS_PASSWORD")
	}
	if a.Token == "" && a.Username == "" {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(a.Headers)) {
		if strings.EqualFold(name, "Authorization") {
			v.add("MESHROLL_PROMETHEUS_HEADERS: sets " + name + ", which conflicts with MESHROLL_PROMETHEUS_TOKEN or MESHROLL_PROMETHEUS_USERNAME; " +
				"set the credentials one way only")
		}
	}
}

// thresholds checks how often the canary is judged and against what.
func (in input) thresholds(v *validator, a *Analysis) {
	a.Interval = interval(v, in.Interval)
	a.MinSuccessRate = number(v, "MESHROLL_MIN_SUCCESS_RATE", in.MinSuccessRate, 0, math.SmallestNonzeroFloat64, 100, "a percentage above 0 and at most 100, e.g. 99.5, or empty for no such guardrail")
	a.MaxLatencyP99 = number(v, "MESHROLL_MAX_LATENCY_P99", in.MaxLatencyP99, 0, math.SmallestNonzeroFloat64, math.Inf(1), "milliseconds greater than 0, e.g. 500, or empty for no such guardrail")
	a.MinRequests = number(v, "MESHROLL_MIN_REQUESTS", in.MinRequests, defaultMinRequests, 0, math.Inf(1), "a request count of 0 or more, e.g. 20")
	a.FailureThreshold = in.failureThreshold(v)

	a.Confidence = number(v, "MESHROLL_CONFIDENCE", in.Confidence, defaultConfidence, 50, 99.99, "a percentage from 50 to 99.99, e.g. 99")
	a.MinStepDuration = duration(v, "MESHROLL_MIN_STEP_DURATION", in.MinStepDuration, 0, false,
		"use a duration such as 2m, or leave it empty to hold every step for MESHROLL_STEP_DURATION")
	a.MarginFactor = number(v, "MESHROLL_MARGIN_FACTOR", in.MarginFactor, defaultMarginFactor, 1, 100, "a factor of 1 or more, e.g. 1.5")
	a.MarginPoints = number(v, "MESHROLL_MARGIN_POINTS", in.MarginPoints, defaultMarginPoints, 0, 100, "percentage points from 0 to 100, e.g. 0.2")

	a.Reporter = reporter(v, strings.TrimSpace(in.Reporter))
}

// reporters are the values of Istio's reporter label meshroll judges on.
var reporters = []string{"destination", "source", "waypoint"}

// reporter checks MESHROLL_REPORTER: one reporter, or several joined by "|" (each request is
// then counted where one of them reports it).
func reporter(v *validator, raw string) string {
	seen := map[string]bool{}
	for _, r := range strings.Split(raw, "|") {
		if !slices.Contains(reporters, r) || seen[r] {
			v.invalid("MESHROLL_REPORTER", raw, "use destination (sidecars), waypoint (ambient mode's waypoints), source (the client's proxy, an ingress gateway), or several joined by |, e.g. destination|waypoint; or leave it empty for destination (destination|waypoint with MESHROLL_HTTP_ROUTE)")
			return defaultReporter
		}
		seen[r] = true
	}
	return raw
}

// interval parses MESHROLL_ANALYSIS_INTERVAL.
func interval(v *validator, raw string) time.Duration {
	d := duration(v, "MESHROLL_ANALYSIS_INTERVAL", raw, defaultInterval, false,
		"use a duration of at least 1s such as 30s, or leave it empty for 30s")
	if d > 0 && d < time.Second {
		v.invalid("MESHROLL_ANALYSIS_INTERVAL", strings.TrimSpace(raw), "must be at least 1s (Prometheus windows are whole seconds); use e.g. 30s")
	}
	return d
}

// workloads checks the two workloads the analysis compares (their defaults are the
// Deployments).
func workloads(v *validator, a Analysis) {
	if a.CanaryWorkload == "" {
		v.required("MESHROLL_CANARY_WORKLOAD", "metric analysis needs the canary's destination_workload label value; set it, or MESHROLL_CANARY_DEPLOYMENT")
	}
	if a.StableWorkload == "" {
		v.required("MESHROLL_STABLE_WORKLOAD", "metric analysis compares the canary with the stable workload; set it to its destination_workload label value, or set MESHROLL_STABLE_DEPLOYMENT")
	}
	if a.CanaryWorkload != "" && a.CanaryWorkload == a.StableWorkload {
		v.invalid("MESHROLL_CANARY_WORKLOAD", a.CanaryWorkload, "same as the stable workload; the canary and stable versions must run as different workloads to be compared")
	}
}

// hold checks that each step is held long enough to be judged: a hold shorter than one
// window judges nothing, so every step would be inconclusive.
func hold(v *validator, cfg Config, a Analysis) {
	if !cfg.Mode.Progressive() && cfg.Mode != ModePhase {
		return
	}
	if m := a.MinStepDuration; m > 0 && (m < a.Interval || m >= cfg.StepDuration) {
		v.invalid("MESHROLL_MIN_STEP_DURATION", m.String(), "must be at least MESHROLL_ANALYSIS_INTERVAL (%s) and shorter than MESHROLL_STEP_DURATION (%s): a step ends early only after a judged window, and never later than its full hold", a.Interval, cfg.StepDuration)
	}
	if cfg.StepDuration > 0 && a.Interval > 0 && cfg.StepDuration < a.Interval {
		v.invalid("MESHROLL_STEP_DURATION", cfg.StepDuration.String(), "shorter than MESHROLL_ANALYSIS_INTERVAL=%s, so no analysis window could be judged; hold each step at least one interval", a.Interval)
	} else if cfg.StepDuration == 0 {
		v.invalid("MESHROLL_STEP_DURATION", "0", "with metric analysis each step must be held for at least one MESHROLL_ANALYSIS_INTERVAL (%s); use e.g. %s", a.Interval, 2*a.Interval)
	}
}
