// Package config turns the MESHROLL_* environment into a validated Config.
//
// It does no I/O: the environment is a parameter (os.Environ() form), so tests
// run in parallel and the caller decides where the variables come from.
// Every problem is reported at once, each naming the variable, the bad value
// and the fix, and every returned error satisfies errors.Is(err, ErrInvalid)
// so the caller can map it to exit code 2.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ErrInvalid is matched (errors.Is) by every error Load returns: the input is
// wrong and nothing may be written (exit code 2).
var ErrInvalid = errors.New("invalid configuration")

// Mode is what one run does.
type Mode string

// The modes of MESHROLL_MODE.
const (
	ModePhase    Mode = "phase"    // one step to MESHROLL_WEIGHT
	ModeProgress Mode = "progress" // every step in MESHROLL_STEPS
	ModePromote  Mode = "promote"  // all traffic to the canary
	ModeRollback Mode = "rollback" // all traffic to stable
	ModeStatus   Mode = "status"   // read-only
)

// modes is the order in which the allowed values are listed in messages.
var modes = []Mode{ModePhase, ModeProgress, ModePromote, ModeRollback, ModeStatus}

// Defaults for variables that are unset or empty.
const (
	defaultMode         = ModeProgress
	defaultSteps        = "10,25,50,100"
	defaultStepDuration = time.Minute
	defaultReadyTimeout = 5 * time.Minute

	defaultInterval         = 30 * time.Second
	defaultMinSuccessRate   = 99.0
	defaultMaxLatencyP99    = 500.0
	defaultMinRequests      = 20.0
	defaultFailureThreshold = 2
	defaultReporter         = "destination"
)

// Config is the validated input of one run.
type Config struct {
	Mode             Mode
	Namespace        string // "" = take the kubeconfig context's namespace (resolved elsewhere)
	VirtualService   string
	Route            string // "" = choose automatically (elsewhere)
	StableSubset     string
	CanarySubset     string
	Weight           int   // phase only
	Steps            []int // progress only
	StepDuration     time.Duration
	CanaryDeployment string // "" = none
	ReadyTimeout     time.Duration
	Timeout          time.Duration // 0 = none
	DryRun           bool
	KubeContext      string
	KubeconfigData   string   // MESHROLL_KUBECONFIG: kubeconfig contents (a secret); wins over Kubeconfig
	Kubeconfig       []string // KUBECONFIG split with filepath.SplitList, empty entries dropped
	Home             string   // HOME, for the default ~/.kube/config
	CI               CI
	OutputDir        string
	StableDeployment string // "" = none; when set it must be Available before any shift
	// Analysis configures the metric checks; Analysis.Enabled() is false without a Prometheus URL.
	Analysis       Analysis
	OnInconclusive Action // what an inconclusive step does with the traffic: rollback or hold
	OnCancel       Action // what a cancelled run does with the traffic: rollback or leave
}

// Action is what happens to the traffic when a run cannot finish normally.
type Action string

// The values of MESHROLL_ON_INCONCLUSIVE and MESHROLL_ON_CANCEL.
const (
	ActionRollback Action = "rollback" // all traffic back to stable
	ActionHold     Action = "hold"     // leave the weights where they are (MESHROLL_ON_INCONCLUSIVE)
	ActionLeave    Action = "leave"    // leave the weights where they are (MESHROLL_ON_CANCEL)
)

// Analysis is the metric analysis part of the input. Values are checked for syntax and range
// here; the custom checks and the Prometheus client are validated by the analysis package.
type Analysis struct {
	PrometheusURL      string
	Token              string // secret
	Username           string
	Password           string // secret
	CAFile             string
	InsecureSkipVerify bool
	Headers            map[string]string // values are secret
	Interval           time.Duration
	MinSuccessRate     float64 // percent
	MaxLatencyP99      float64 // milliseconds
	MinRequests        float64
	FailureThreshold   int
	Checks             string // MESHROLL_CHECKS as given: a YAML or JSON list
	CanaryWorkload     string
	StableWorkload     string
	Reporter           string // destination or source
}

// Enabled reports whether the steps are gated by metric analysis.
func (a Analysis) Enabled() bool { return a.PrometheusURL != "" }

// CI names the system whose conventions the report follows.
type CI string

// The values of MESHROLL_CI.
const (
	CIAuto    CI = "auto" // detect from the environment
	CIGitHub  CI = "github"
	CIGitLab  CI = "gitlab"
	CIJenkins CI = "jenkins"
	CIPlain   CI = "plain"
)

var cis = []CI{CIAuto, CIGitHub, CIGitLab, CIJenkins, CIPlain}

// input is the environment as it arrives: strings only, so that parsing never
// stops at the first bad value and validate can report every problem.
// No envDefault tags: defaults are applied in validate, so that a variable set
// to "" (as CI systems do for unused inputs) behaves exactly like an unset one.
type input struct {
	Mode             string `env:"MESHROLL_MODE"`
	Namespace        string `env:"MESHROLL_NAMESPACE"`
	VirtualService   string `env:"MESHROLL_VIRTUAL_SERVICE"`
	Route            string `env:"MESHROLL_ROUTE"`
	StableSubset     string `env:"MESHROLL_STABLE_SUBSET"`
	CanarySubset     string `env:"MESHROLL_CANARY_SUBSET"`
	Weight           string `env:"MESHROLL_WEIGHT"`
	Steps            string `env:"MESHROLL_STEPS"`
	StepDuration     string `env:"MESHROLL_STEP_DURATION"`
	CanaryDeployment string `env:"MESHROLL_CANARY_DEPLOYMENT"`
	ReadyTimeout     string `env:"MESHROLL_READY_TIMEOUT"`
	Timeout          string `env:"MESHROLL_TIMEOUT"`
	DryRun           string `env:"MESHROLL_DRY_RUN"`
	KubeContext      string `env:"MESHROLL_KUBE_CONTEXT"`
	KubeconfigData   string `env:"MESHROLL_KUBECONFIG"`
	CI               string `env:"MESHROLL_CI"`
	OutputDir        string `env:"MESHROLL_OUTPUT_DIR"`
	StableDeployment string `env:"MESHROLL_STABLE_DEPLOYMENT"`
	PrometheusURL    string `env:"MESHROLL_PROMETHEUS_URL"`
	Token            string `env:"MESHROLL_PROMETHEUS_TOKEN"`
	Username         string `env:"MESHROLL_PROMETHEUS_USERNAME"`
	Password         string `env:"MESHROLL_PROMETHEUS_PASSWORD"`
	CAFile           string `env:"MESHROLL_PROMETHEUS_CA_FILE"`
	InsecureSkip     string `env:"MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY"`
	Headers          string `env:"MESHROLL_PROMETHEUS_HEADERS"`
	Interval         string `env:"MESHROLL_ANALYSIS_INTERVAL"`
	MinSuccessRate   string `env:"MESHROLL_MIN_SUCCESS_RATE"`
	MaxLatencyP99    string `env:"MESHROLL_MAX_LATENCY_P99"`
	MinRequests      string `env:"MESHROLL_MIN_REQUESTS"`
	FailureThreshold string `env:"MESHROLL_FAILURE_THRESHOLD"`
	Checks           string `env:"MESHROLL_CHECKS"`
	CanaryWorkload   string `env:"MESHROLL_CANARY_WORKLOAD"`
	StableWorkload   string `env:"MESHROLL_STABLE_WORKLOAD"`
	Reporter         string `env:"MESHROLL_REPORTER"`
	OnInconclusive   string `env:"MESHROLL_ON_INCONCLUSIVE"`
	OnCancel         string `env:"MESHROLL_ON_CANCEL"`
	Kubeconfig       string `env:"KUBECONFIG"`
	Home             string `env:"HOME"`
}

// prefix marks the variables that belong to meshroll; any other variable in
// the environment is none of our business.
const prefix = "MESHROLL_"

// reserved are the names meshroll writes itself (outputs.env, read back by GitLab's dotenv
// report into a later job's environment): a job that runs meshroll again after one that did
// must not fail on them. They are never read.
var reserved = []string{
	"MESHROLL_RESULT",
	"MESHROLL_CANARY_WEIGHT",
	"MESHROLL_STABLE_WEIGHT",
	"MESHROLL_STEPS_COMPLETED",
	"MESHROLL_FAILED_CHECK",
	"MESHROLL_REASON",
	"MESHROLL_DURATION_SECONDS",
}

// known is every MESHROLL_* name this version accepts: the input tags (read
// from the struct, so the two cannot drift apart) plus reserved.
var known = append(slices.Clone(reserved), Variables()...)

// problem is one thing wrong with the input. It matches ErrInvalid so callers
// can branch on the kind of failure without comparing strings.
type problem struct{ msg string }

func (p *problem) Error() string        { return p.msg }
func (p *problem) Is(target error) bool { return target == ErrInvalid }

// Load reads the MESHROLL_* variables (and KUBECONFIG, HOME) from environ
// (os.Environ() form, "K=V") and validates them. The error lists every problem
// at once (errors.Join), each naming the variable, the bad value and the fix.
func Load(environ []string) (Config, error) {
	vars := env.ToMap(environ)
	var in input
	if err := env.ParseWithOptions(&in, env.Options{Environment: vars}); err != nil {
		// Only string fields without options: this cannot fail on any input.
		return Config{}, &problem{msg: fmt.Sprintf("failed to read the environment: %v", err)}
	}
	v := &validator{}
	cfg := in.validate(v)
	v.unknownVariables(vars)
	if len(v.problems) > 0 {
		return Config{}, errors.Join(v.problems...)
	}
	return cfg, nil
}

// validator collects problems in the order they are found.
type validator struct{ problems []error }

// invalid records `NAME=value: what; fix`.
func (v *validator) invalid(name, value, format string, args ...any) {
	v.problems = append(v.problems, &problem{msg: name + "=" + show(value) + ": " + fmt.Sprintf(format, args...)})
}

// required records `NAME is required: fix`.
func (v *validator) required(name, fix string) {
	v.problems = append(v.problems, &problem{msg: name + " is required: " + fix})
}

// validate converts the strings to typed values, applying defaults to empty
// variables, and records every problem in v.
func (in input) validate(v *validator) Config {
	cfg := Config{
		Namespace:        strings.TrimSpace(in.Namespace),
		VirtualService:   strings.TrimSpace(in.VirtualService),
		Route:            strings.TrimSpace(in.Route),
		StableSubset:     strings.TrimSpace(in.StableSubset),
		CanarySubset:     strings.TrimSpace(in.CanarySubset),
		CanaryDeployment: strings.TrimSpace(in.CanaryDeployment),
		KubeContext:      strings.TrimSpace(in.KubeContext),
		KubeconfigData:   in.KubeconfigData,
		OutputDir:        strings.TrimSpace(in.OutputDir),
		// KUBECONFIG and HOME are standard variables: taken exactly as given.
		Kubeconfig: splitPaths(in.Kubeconfig),
		Home:       in.Home,
	}

	modeValue := strings.TrimSpace(in.Mode)
	modeKnown := true
	switch {
	case modeValue == "":
		cfg.Mode = defaultMode
	case slices.Contains(modes, Mode(modeValue)):
		cfg.Mode = Mode(modeValue)
	default:
		modeKnown = false
		v.invalid("MESHROLL_MODE", modeValue, "unknown mode; use one of %s, or leave it empty for %s", modeList(), defaultMode)
	}

	if cfg.Namespace != "" {
		if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
			v.invalid("MESHROLL_NAMESPACE", cfg.Namespace, "not a valid namespace name (%s); use the namespace of the VirtualService, e.g. shop, or leave it empty for the kubeconfig context's namespace", strings.Join(errs, ", "))
		}
	}

	if cfg.VirtualService == "" {
		v.required("MESHROLL_VIRTUAL_SERVICE", "set it to the name of the VirtualService to steer, e.g. reviews")
	} else if errs := validation.IsDNS1123Subdomain(cfg.VirtualService); len(errs) > 0 {
		v.invalid("MESHROLL_VIRTUAL_SERVICE", cfg.VirtualService, "not a valid VirtualService name (%s); use its metadata.name, e.g. reviews", strings.Join(errs, ", "))
	}

	if cfg.Route != "" {
		if !utf8.ValidString(cfg.Route) || strings.ContainsFunc(cfg.Route, unicode.IsControl) {
			v.invalid("MESHROLL_ROUTE", cfg.Route, "contains a control character or invalid UTF-8; use the route's name exactly as in the VirtualService, or leave it empty to choose the route automatically")
		}
	}

	stableOK := subset(v, "MESHROLL_STABLE_SUBSET", "stable", cfg.StableSubset, "v1")
	canaryOK := subset(v, "MESHROLL_CANARY_SUBSET", "canary", cfg.CanarySubset, "v2")
	if stableOK && canaryOK && cfg.StableSubset == cfg.CanarySubset {
		v.invalid("MESHROLL_CANARY_SUBSET", cfg.CanarySubset, "same as MESHROLL_STABLE_SUBSET; the canary subset must differ from the stable one")
	}

	// WEIGHT belongs to phase, STEPS to progress. With an unknown mode we
	// cannot tell whether they are needed, so only their syntax is checked.
	weight := strings.TrimSpace(in.Weight)
	switch {
	case weight == "" && cfg.Mode == ModePhase:
		v.required("MESHROLL_WEIGHT", "MESHROLL_MODE=phase needs the canary weight, an integer from 0 to 100")
	case weight == "":
	case modeKnown && cfg.Mode != ModePhase:
		v.invalid("MESHROLL_WEIGHT", weight, "only used with MESHROLL_MODE=phase, but the mode is %s; unset it, or use MESHROLL_MODE=phase", cfg.Mode)
	default:
		w, ok := parseWeight(weight)
		if !ok {
			v.invalid("MESHROLL_WEIGHT", weight, "must be an integer from 0 to 100")
		} else if cfg.Mode == ModePhase {
			cfg.Weight = w
		}
	}

	steps := strings.TrimSpace(in.Steps)
	switch {
	case steps != "" && modeKnown && cfg.Mode != ModeProgress:
		v.invalid("MESHROLL_STEPS", steps, "only used with MESHROLL_MODE=progress, but the mode is %s; unset it, or use MESHROLL_MODE=progress", cfg.Mode)
	case steps != "" || cfg.Mode == ModeProgress:
		if steps == "" {
			steps = defaultSteps
		}
		s, what := parseSteps(steps)
		if what != "" {
			v.invalid("MESHROLL_STEPS", steps, "%s; use comma-separated integers from 0 to 100 in strictly ascending order, e.g. %s", what, defaultSteps)
		} else if cfg.Mode == ModeProgress {
			cfg.Steps = s
		}
	}

	cfg.StepDuration = duration(v, "MESHROLL_STEP_DURATION", in.StepDuration, defaultStepDuration, true,
		"use 0 to move on at once, or a duration such as 30s or 5m")

	if cfg.CanaryDeployment != "" {
		if errs := validation.IsDNS1123Subdomain(cfg.CanaryDeployment); len(errs) > 0 {
			v.invalid("MESHROLL_CANARY_DEPLOYMENT", cfg.CanaryDeployment, "not a valid Deployment name (%s); use the canary Deployment's metadata.name, or leave it empty to skip the readiness check", strings.Join(errs, ", "))
		}
	}

	cfg.ReadyTimeout = duration(v, "MESHROLL_READY_TIMEOUT", in.ReadyTimeout, defaultReadyTimeout, false,
		"use a duration such as 2m, or leave it empty for 5m")
	cfg.Timeout = duration(v, "MESHROLL_TIMEOUT", in.Timeout, 0, false,
		"use a duration such as 30m, or leave it empty for no deadline")

	if dry := strings.TrimSpace(in.DryRun); dry != "" {
		b, err := strconv.ParseBool(dry)
		if err != nil {
			v.invalid("MESHROLL_DRY_RUN", dry, "not a boolean; use true or false, or leave it empty for false")
		}
		cfg.DryRun = b
	}

	switch ci := CI(strings.TrimSpace(in.CI)); {
	case ci == "":
		cfg.CI = CIAuto
	case slices.Contains(cis, ci):
		cfg.CI = ci
	default:
		v.invalid("MESHROLL_CI", string(ci), "unknown CI system; use one of auto, github, gitlab, jenkins, plain")
	}
	if cfg.OutputDir == "" {
		cfg.OutputDir = "meshroll-out"
	}
	if strings.TrimSpace(cfg.KubeconfigData) == "" {
		cfg.KubeconfigData = ""
	}
	cfg.StableDeployment = strings.TrimSpace(in.StableDeployment)
	if cfg.StableDeployment != "" {
		if errs := validation.IsDNS1123Subdomain(cfg.StableDeployment); len(errs) > 0 {
			v.invalid("MESHROLL_STABLE_DEPLOYMENT", cfg.StableDeployment, "not a valid Deployment name (%s); use the stable Deployment's metadata.name, or leave it empty to skip the check", strings.Join(errs, ", "))
		}
	}
	cfg.OnInconclusive = action(v, "MESHROLL_ON_INCONCLUSIVE", in.OnInconclusive, ActionHold)
	cfg.OnCancel = action(v, "MESHROLL_ON_CANCEL", in.OnCancel, ActionLeave)
	cfg.Analysis = in.analysis(v, cfg)
	return cfg
}

// analysis validates the metric analysis variables. Without MESHROLL_PROMETHEUS_URL they must
// all be empty: a threshold set without a Prometheus to check it would be a gate that is not
// there.
func (in input) analysis(v *validator, cfg Config) Analysis {
	a := Analysis{
		PrometheusURL:  strings.TrimSpace(in.PrometheusURL),
		Token:          strings.TrimSpace(in.Token),
		Username:       strings.TrimSpace(in.Username),
		Password:       in.Password,
		CAFile:         strings.TrimSpace(in.CAFile),
		Checks:         in.Checks,
		CanaryWorkload: strings.TrimSpace(in.CanaryWorkload),
		StableWorkload: strings.TrimSpace(in.StableWorkload),
	}
	if a.PrometheusURL == "" {
		for name, value := range in.analysisOnly() {
			if strings.TrimSpace(value) != "" {
				v.problems = append(v.problems, &problem{msg: name + " is set but MESHROLL_PROMETHEUS_URL is empty, so no metric analysis would run: set MESHROLL_PROMETHEUS_URL, or unset " + name})
			}
		}
		return Analysis{}
	}
	if u, err := url.Parse(a.PrometheusURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not echoed: the URL may carry a password.
		v.problems = append(v.problems, &problem{msg: "MESHROLL_PROMETHEUS_URL: not an absolute http(s) URL; use the Prometheus base URL, e.g. http://prometheus.istio-system:9090"})
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
	a.Headers = headers(v, in.Headers)
	a.Interval = duration(v, "MESHROLL_ANALYSIS_INTERVAL", in.Interval, defaultInterval, false,
		"use a duration of at least 1s such as 30s, or leave it empty for 30s")
	if a.Interval > 0 && a.Interval < time.Second {
		v.invalid("MESHROLL_ANALYSIS_INTERVAL", strings.TrimSpace(in.Interval), "must be at least 1s (Prometheus windows are whole seconds); use e.g. 30s")
	}
	a.MinSuccessRate = number(v, "MESHROLL_MIN_SUCCESS_RATE", in.MinSuccessRate, defaultMinSuccessRate, 0, 100, "a percentage from 0 to 100, e.g. 99.5")
	a.MaxLatencyP99 = number(v, "MESHROLL_MAX_LATENCY_P99", in.MaxLatencyP99, defaultMaxLatencyP99, math.SmallestNonzeroFloat64, math.Inf(1), "milliseconds greater than 0, e.g. 500")
	a.MinRequests = number(v, "MESHROLL_MIN_REQUESTS", in.MinRequests, defaultMinRequests, 0, math.Inf(1), "a request count of 0 or more, e.g. 20")
	threshold := number(v, "MESHROLL_FAILURE_THRESHOLD", in.FailureThreshold, defaultFailureThreshold, 1, 1000, "a whole number of failed checks from 1 to 1000, e.g. 2")
	if threshold != math.Trunc(threshold) {
		v.invalid("MESHROLL_FAILURE_THRESHOLD", strings.TrimSpace(in.FailureThreshold), "must be a whole number; use e.g. 2")
	}
	a.FailureThreshold = int(threshold)

	switch r := strings.TrimSpace(in.Reporter); r {
	case "":
		a.Reporter = defaultReporter
	case "destination", "source":
		a.Reporter = r
	default:
		v.invalid("MESHROLL_REPORTER", r, "use destination (sidecars) or source (Gateway API, ambient), or leave it empty for destination")
	}
	if a.CanaryWorkload == "" {
		a.CanaryWorkload = cfg.CanaryDeployment
	}
	if a.StableWorkload == "" {
		a.StableWorkload = cfg.StableDeployment
	}
	if a.CanaryWorkload == "" {
		v.required("MESHROLL_CANARY_WORKLOAD", "metric analysis needs the canary's destination_workload label value; set it, or MESHROLL_CANARY_DEPLOYMENT")
	}
	if a.StableWorkload == "" {
		v.required("MESHROLL_STABLE_WORKLOAD", "metric analysis compares the canary with the stable workload; set it to its destination_workload label value, or set MESHROLL_STABLE_DEPLOYMENT")
	}
	if a.CanaryWorkload != "" && a.CanaryWorkload == a.StableWorkload {
		v.invalid("MESHROLL_CANARY_WORKLOAD", a.CanaryWorkload, "same as the stable workload; the canary and stable versions must run as different workloads to be compared")
	}
	// A hold shorter than one window judges nothing: every step would be inconclusive.
	if cfg.Mode == ModeProgress || cfg.Mode == ModePhase {
		if cfg.StepDuration > 0 && a.Interval > 0 && cfg.StepDuration < a.Interval {
			v.invalid("MESHROLL_STEP_DURATION", cfg.StepDuration.String(), "shorter than MESHROLL_ANALYSIS_INTERVAL=%s, so no analysis window could be judged; hold each step at least one interval", a.Interval)
		} else if cfg.StepDuration == 0 {
			v.invalid("MESHROLL_STEP_DURATION", "0", "with metric analysis each step must be held for at least one MESHROLL_ANALYSIS_INTERVAL (%s); use e.g. %s", a.Interval, 2*a.Interval)
		}
	}
	return a
}

// analysisOnly are the variables that mean nothing without MESHROLL_PROMETHEUS_URL, by name.
func (in input) analysisOnly() map[string]string {
	return map[string]string{
		"MESHROLL_PROMETHEUS_TOKEN":                in.Token,
		"MESHROLL_PROMETHEUS_USERNAME":             in.Username,
		"MESHROLL_PROMETHEUS_PASSWORD":             in.Password,
		"MESHROLL_PROMETHEUS_CA_FILE":              in.CAFile,
		"MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY": in.InsecureSkip,
		"MESHROLL_PROMETHEUS_HEADERS":              in.Headers,
		"MESHROLL_ANALYSIS_INTERVAL":               in.Interval,
		"MESHROLL_MIN_SUCCESS_RATE":                in.MinSuccessRate,
		"MESHROLL_MAX_LATENCY_P99":                 in.MaxLatencyP99,
		"MESHROLL_MIN_REQUESTS":                    in.MinRequests,
		"MESHROLL_FAILURE_THRESHOLD":               in.FailureThreshold,
		"MESHROLL_CHECKS":                          in.Checks,
		"MESHROLL_CANARY_WORKLOAD":                 in.CanaryWorkload,
		"MESHROLL_STABLE_WORKLOAD":                 in.StableWorkload,
		"MESHROLL_REPORTER":                        in.Reporter,
	}
}

// action parses MESHROLL_ON_INCONCLUSIVE / MESHROLL_ON_CANCEL: rollback (the default) or
// the one value that leaves the weights alone.
func action(v *validator, name, raw string, keep Action) Action {
	switch a := Action(strings.TrimSpace(raw)); a {
	case "":
		return ActionRollback
	case ActionRollback, keep:
		return a
	default:
		v.invalid(name, string(a), "use rollback (all traffic back to stable) or %s (leave the weights as they are), or leave it empty for rollback", keep)
		return ActionRollback
	}
}

// number parses a decimal number in [lo, hi]; empty means def.
func number(v *validator, name, raw string, def, lo, hi float64, want string) float64 {
	value := strings.TrimSpace(raw)
	if value == "" {
		return def
	}
	f, err := strconv.ParseFloat(value, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < lo || f > hi {
		v.invalid(name, value, "must be %s", want)
		return def
	}
	return f
}

// headers parses MESHROLL_PROMETHEUS_HEADERS: one "Name: value" per line. Values are secret
// (a tenant token, say) and never echoed.
func headers(v *validator, raw string) map[string]string {
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	out := map[string]string{}
	for i, line := range strings.Split(raw, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			v.problems = append(v.problems, &problem{msg: fmt.Sprintf("MESHROLL_PROMETHEUS_HEADERS: line %d is not \"Name: value\"; write one header per line, e.g. X-Scope-OrgID: tenant-1", i+1)})
			continue
		}
		out[name] = strings.TrimSpace(value)
	}
	return out
}

// Reporting reads, however wrong the rest of environ is, what a report of the run needs:
// the CI system (auto when MESHROLL_CI is invalid), the output directory and the secrets
// (Secrets works on the result). Every other field is zero. It is for reporting a run that
// Load rejected; use Load for anything else.
func Reporting(environ []string) Config {
	var in input
	_ = env.ParseWithOptions(&in, env.Options{Environment: env.ToMap(environ)}) // strings only: cannot fail
	cfg := in.validate(&validator{})
	return Config{
		CI:             cfg.CI,
		OutputDir:      cfg.OutputDir,
		KubeconfigData: cfg.KubeconfigData,
		// Taken as given: a token set without a Prometheus URL is invalid, and still secret.
		Analysis: Analysis{Token: strings.TrimSpace(in.Token), Password: in.Password, Headers: headers(&validator{}, in.Headers)},
	}
}

// Secrets are the values that must never be printed or written anywhere.
func (c Config) Secrets() []string {
	var out []string
	kubeconfig := []string{c.KubeconfigData}
	if decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(c.KubeconfigData)); err == nil && len(decoded) > 0 {
		kubeconfig = append(kubeconfig, string(decoded)) // MESHROLL_KUBECONFIG may be base64
	}
	for _, s := range append(kubeconfig, c.Analysis.Token, c.Analysis.Password) {
		if s != "" {
			out = append(out, s)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Analysis.Headers)) {
		if value := c.Analysis.Headers[name]; value != "" {
			out = append(out, value)
		}
	}
	return out
}

// Variables lists the MESHROLL_* inputs this version reads, in contract order.
func Variables() []string {
	params, err := env.GetFieldParams(&input{})
	if err != nil {
		panic(err)
	}
	var names []string
	for _, p := range params {
		if strings.HasPrefix(p.Key, prefix) {
			names = append(names, p.Key)
		}
	}
	return names
}

// subset checks a required DestinationRule subset name and reports whether it
// is usable (so that the "must differ" check does not pile on).
func subset(v *validator, name, which, value, example string) bool {
	if value == "" {
		v.required(name, fmt.Sprintf("set it to the DestinationRule subset of the %s version, e.g. %s", which, example))
		return false
	}
	// Istio validates subset names as DNS-1123 labels.
	if errs := validation.IsDNS1123Label(value); len(errs) > 0 {
		v.invalid(name, value, "not a valid subset name (%s); use the %s subset's name from the DestinationRule, e.g. %s", strings.Join(errs, ", "), which, example)
		return false
	}
	return true
}

// duration parses a Go duration; empty means def. zeroOK says whether 0 is a
// meaningful value; negative durations never are.
func duration(v *validator, name, raw string, def time.Duration, zeroOK bool, fix string) time.Duration {
	value := strings.TrimSpace(raw)
	if value == "" {
		return def
	}
	d, err := time.ParseDuration(value)
	switch {
	case err != nil:
		v.invalid(name, value, "not a Go duration (a number with a unit: s, m or h); %s", fix)
	case d < 0:
		v.invalid(name, value, "must not be negative; %s", fix)
	case d == 0 && !zeroOK:
		v.invalid(name, value, "must be greater than 0; %s", fix)
	default:
		return d
	}
	return def
}

// parseWeight accepts a plain decimal integer from 0 to 100 (no sign, so "-0"
// and "+5" are rejected as surprising spellings).
func parseWeight(s string) (int, bool) {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 100 {
		return 0, false
	}
	return n, true
}

// parseSteps parses comma-separated weights. It returns the steps, or a
// description of everything wrong with them.
func parseSteps(s string) ([]int, string) {
	items := strings.Split(s, ",")
	steps := make([]int, 0, len(items))
	var wrong []string
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			wrong = append(wrong, fmt.Sprintf("item %d is empty", i+1))
			continue
		}
		w, ok := parseWeight(item)
		if !ok {
			wrong = append(wrong, fmt.Sprintf("item %d (%s) is not an integer from 0 to 100", i+1, show(item)))
			continue
		}
		steps = append(steps, w)
	}
	// Order is only meaningful once every item is a weight.
	if len(wrong) == 0 {
		for i := 1; i < len(steps); i++ {
			switch prev, cur := steps[i-1], steps[i]; {
			case cur == prev:
				wrong = append(wrong, fmt.Sprintf("%d is repeated (items %d and %d)", cur, i, i+1))
			case cur < prev:
				wrong = append(wrong, fmt.Sprintf("%d comes after %d (items %d and %d)", cur, prev, i, i+1))
			}
		}
	}
	if len(steps) == 0 && len(wrong) == 0 {
		wrong = append(wrong, "no steps")
	}
	if len(wrong) > 0 {
		return nil, strings.Join(wrong, ", ")
	}
	return steps, ""
}

// splitPaths splits KUBECONFIG like kubectl does, dropping empty entries.
func splitPaths(s string) []string {
	var paths []string
	for _, p := range filepath.SplitList(s) {
		if p != "" {
			paths = append(paths, p)
		}
	}
	return paths
}

// unknownVariables reports MESHROLL_* variables this version does not know,
// because a misspelt name (MESHROLL_WIEGHT) would otherwise be silently
// ignored and the run would use a default the user did not ask for.
// The prefix is matched case-insensitively to catch meshroll_weight too.
// Values are not echoed: a misspelt MESHROLL_PROMETHEUS_PASSWORD is a secret.
// Empty ones are ignored, like every other empty variable.
func (v *validator) unknownVariables(vars map[string]string) {
	var names []string
	for name, value := range vars {
		if len(name) < len(prefix) || !strings.EqualFold(name[:len(prefix)], prefix) {
			continue
		}
		if strings.TrimSpace(value) == "" || slices.Contains(known, name) {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names) // map order is random; messages must not be
	for _, name := range names {
		fix := "remove it, or fix the name (see the variables in README.md)"
		if s := suggest(name); s != "" {
			fix = "did you mean " + s + "?"
		}
		v.problems = append(v.problems, &problem{msg: name + " is not a meshroll variable: " + fix})
	}
}

// suggest returns the known name closest to name, if it is close enough to be
// a typo: edit distance (transpositions counting once) at most 2, and at most
// half the part after the prefix, so that MESHROLL_ is not "almost" MESHROLL_CI.
func suggest(name string) string {
	upper := strings.ToUpper(name)
	best, bestDist := "", 3
	for _, k := range known {
		limit := min(bestDist-1, (len(k)-len(prefix))/2)
		if abs(len(k)-len(upper)) > limit {
			continue
		}
		if d := editDistance(upper, k); d <= limit {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance (Levenshtein plus
// adjacent transpositions) over bytes; names are ASCII.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// show echoes a value in a message: bare when that is unambiguous
// (MESHROLL_WEIGHT=150), quoted when it holds spaces, quotes or anything
// unprintable (MESHROLL_STEPS="10, 25,,50").
func show(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r == ' ' || r == '"' || r == '\\' || r == utf8.RuneError || !unicode.IsPrint(r)
	}) {
		return strconv.Quote(s)
	}
	return s
}

func modeList() string {
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}
