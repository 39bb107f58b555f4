package config

import (
	"strconv"
	"strings"
	"time"
)

// Defaults for variables that are unset, empty or blank.
const (
	defaultMode         = ModeProgress
	defaultSteps        = "10,25,50,100"
	defaultStepDuration = time.Minute
	defaultReadyTimeout = 5 * time.Minute
	defaultCI           = CIAuto
	defaultOutputDir    = "meshroll-out"
	defaultAction       = ActionRollback // MESHROLL_ON_INCONCLUSIVE and MESHROLL_ON_CANCEL

	defaultInterval         = 30 * time.Second
	defaultMinRequests      = 20.0
	defaultConfidence       = 99.0
	defaultMarginFactor     = 1.5
	defaultMarginPoints     = 0.2
	defaultFailureThreshold = 2
	defaultReporter         = "destination"
	defaultGatewayReporter  = "destination|waypoint"

	defaultLeaseDuration = time.Minute
	minLeaseDuration     = 15 * time.Second

	defaultScaleDownDelay = 30 * time.Second

	defaultLoadRPS        = 10
	maxLoadRPS            = 10000 // beyond a smoke load: a load test is another tool's job
	defaultIstioNamespace = "istio-system"
)

// applyDefaults writes each default, spelt as a user would write it, into the variables that
// are blank. This happens on the text, before validation, rather than through envDefault tags:
// CI systems set unused inputs to "", and such a variable must behave exactly like an unset one.
//
// Some defaults depend on other variables: MESHROLL_STEPS has one only in progress mode (with
// an unknown mode nobody can tell whether steps are needed), MESHROLL_SCALE_DOWN_DELAY only
// with scale-down, MESHROLL_LOAD_RPS only with a load URL, and the analysis variables only
// with a Prometheus (its URL or its Service; without one they must stay empty: see
// analysisWithoutPrometheus),
// except the interval, which webhooks use too; the workloads default to the Deployments' names.
func (in *input) applyDefaults() {
	orDefault(&in.Mode, string(defaultMode))
	if Mode(strings.TrimSpace(in.Mode)).Progressive() {
		orDefault(&in.Steps, defaultSteps)
	}
	orDefault(&in.StepDuration, defaultStepDuration.String())
	orDefault(&in.ReadyTimeout, defaultReadyTimeout.String())
	orDefault(&in.CI, string(defaultCI))
	orDefault(&in.OutputDir, defaultOutputDir)
	orDefault(&in.OnInconclusive, string(defaultAction))
	orDefault(&in.OnCancel, string(defaultAction))
	if b, err := strconv.ParseBool(strings.TrimSpace(in.ScaleDown)); err == nil && b {
		// Only with scale-down: without it the delay must stay empty (see scaleDown).
		orDefault(&in.ScaleDownDelay, defaultScaleDownDelay.String())
	}
	if strings.TrimSpace(in.LoadURL) != "" {
		// Only with a load: without one the rate must stay empty (see loadGenerator).
		orDefault(&in.LoadRPS, strconv.Itoa(defaultLoadRPS))
	}
	orDefault(&in.IstioNamespace, defaultIstioNamespace)

	if in.prometheus() || strings.TrimSpace(in.Webhooks) != "" {
		// Webhooks are called, and manual gates polled, every interval, with or without
		// Prometheus (see webhookInterval).
		orDefault(&in.Interval, defaultInterval.String())
	}
	if !in.prometheus() {
		return
	}
	orDefault(&in.MinRequests, formatNumber(defaultMinRequests))
	orDefault(&in.Confidence, formatNumber(defaultConfidence))
	orDefault(&in.MarginFactor, formatNumber(defaultMarginFactor))
	orDefault(&in.MarginPoints, formatNumber(defaultMarginPoints))
	orDefault(&in.FailureThreshold, strconv.Itoa(defaultFailureThreshold))
	if strings.TrimSpace(in.HTTPRoute) != "" {
		// An HTTPRoute steers sidecars (reporter destination) or, in ambient mode, a
		// waypoint (reporter waypoint): each request is reported by one of them.
		orDefault(&in.Reporter, defaultGatewayReporter)
	}
	orDefault(&in.Reporter, defaultReporter)
	orDefault(&in.CanaryWorkload, in.CanaryDeployment)
	orDefault(&in.StableWorkload, in.StableDeployment)
}

// orDefault sets *value to def when it is blank.
func orDefault(value *string, def string) {
	if strings.TrimSpace(*value) == "" {
		*value = def
	}
}

// formatNumber spells a number the way number parses it back exactly.
func formatNumber(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
