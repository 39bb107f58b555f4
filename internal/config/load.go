// Package config turns the MESHROLL_* environment into a validated Config.
//
// It does no I/O: the environment is a parameter (os.Environ() form), so tests
// run in parallel and the caller decides where the variables come from.
// Every problem is reported at once, each naming the variable, the bad value
// and the fix, and every returned error satisfies errors.Is(err, ErrInvalid)
// so the caller can map it to exit code 2.
//
// The way through: load.go reads the environment into input (strings only),
// defaults.go fills the blank variables that have a default, validate.go (and
// validate_analysis.go, parse.go, checks.go) turn the strings into the typed
// Config of types.go and collect every problem. Config is the only validator
// of input: what it returns is used as it is.
package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/caarlos0/env/v11"
)

// input is the environment as it arrives: strings only, so that parsing never
// stops at the first bad value and validate can report every problem.
// No envDefault tags: defaults are applied by applyDefaults, so that a variable
// set to "" (as CI systems do for unused inputs) behaves exactly like an unset one.
type input struct {
	Mode             string `env:"MESHROLL_MODE"`
	Namespace        string `env:"MESHROLL_NAMESPACE"`
	VirtualService   string `env:"MESHROLL_VIRTUAL_SERVICE"`
	HTTPRoute        string `env:"MESHROLL_HTTP_ROUTE"`
	Route            string `env:"MESHROLL_ROUTE"`
	StableSubset     string `env:"MESHROLL_STABLE_SUBSET"`
	CanarySubset     string `env:"MESHROLL_CANARY_SUBSET"`
	StableService    string `env:"MESHROLL_STABLE_SERVICE"`
	CanaryService    string `env:"MESHROLL_CANARY_SERVICE"`
	Match            string `env:"MESHROLL_MATCH"`
	MirrorPercent    string `env:"MESHROLL_MIRROR_PERCENT"`
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
	PrometheusSvc    string `env:"MESHROLL_PROMETHEUS_SERVICE"`
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
	Confidence       string `env:"MESHROLL_CONFIDENCE"`
	MinStepDuration  string `env:"MESHROLL_MIN_STEP_DURATION"`
	MarginFactor     string `env:"MESHROLL_MARGIN_FACTOR"`
	MarginPoints     string `env:"MESHROLL_MARGIN_POINTS"`
	OnInconclusive   string `env:"MESHROLL_ON_INCONCLUSIVE"`
	OnCancel         string `env:"MESHROLL_ON_CANCEL"`
	LeaseDuration    string `env:"MESHROLL_LEASE_DURATION"`
	ScaleDown        string `env:"MESHROLL_SCALE_DOWN"`
	ScaleDownDelay   string `env:"MESHROLL_SCALE_DOWN_DELAY"`
	Prune            string `env:"MESHROLL_PRUNE"`
	Webhooks         string `env:"MESHROLL_WEBHOOKS"`
	LoadURL          string `env:"MESHROLL_LOAD_URL"`
	LoadRPS          string `env:"MESHROLL_LOAD_RPS"`
	LoadHeaders      string `env:"MESHROLL_LOAD_HEADERS"`
	VerifySecurity   string `env:"MESHROLL_VERIFY_SECURITY"`
	IstioNamespace   string `env:"MESHROLL_ISTIO_NAMESPACE"`
	Kubeconfig       string `env:"KUBECONFIG"`
	Home             string `env:"HOME"`
	// Where the CI system says the run is (see runLink).
	GitHubServer     string `env:"GITHUB_SERVER_URL"`
	GitHubRepository string `env:"GITHUB_REPOSITORY"`
	GitHubRunID      string `env:"GITHUB_RUN_ID"`
	GitHubAttempt    string `env:"GITHUB_RUN_ATTEMPT"`
	GitLabJobURL     string `env:"CI_JOB_URL"`
	JenkinsBuildURL  string `env:"BUILD_URL"`
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

// Load reads the MESHROLL_* variables (and KUBECONFIG, HOME) from environ
// (os.Environ() form, "K=V") and validates them. The error lists every problem
// at once (errors.Join), each naming the variable, the bad value and the fix.
func Load(environ []string) (Config, error) {
	vars := env.ToMap(environ)
	in, err := read(vars)
	if err != nil {
		return Config{}, err
	}
	v := &validator{}
	cfg := in.validate(v)
	v.unknownVariables(vars)
	if err := v.err(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Reporting reads, however wrong the rest of environ is, what a report of the run needs:
// the CI system (auto when MESHROLL_CI is invalid), the output directory and the secrets
// (Secrets works on the result). Every other field is zero. It is for reporting a run that
// Load rejected; use Load for anything else.
func Reporting(environ []string) Config {
	in, _ := read(env.ToMap(environ)) // strings only: cannot fail
	cfg := in.validate(&validator{})
	return Config{
		CI:             cfg.CI,
		OutputDir:      cfg.OutputDir,
		KubeconfigData: cfg.KubeconfigData,
		// Taken as given: a token set without a Prometheus URL is invalid, and still secret.
		// The URL too: it may carry credentials (Secrets finds them however malformed it is).
		Analysis: Analysis{
			PrometheusURL: strings.TrimSpace(in.PrometheusURL), Token: strings.TrimSpace(in.Token),
			Username: strings.TrimSpace(in.Username), Password: in.Password, Headers: headers(&validator{}, "MESHROLL_PROMETHEUS_HEADERS", in.Headers, prometheusHeaderExample),
		},
		// Read leniently by validate, however wrong: every entry that is a mapping, its URL
		// and header values as given.
		Webhooks: cfg.Webhooks,
		// As given too: headers set without a URL are invalid, and still secret.
		Load: LoadGenerator{URL: strings.TrimSpace(in.LoadURL), Headers: headers(&validator{}, "MESHROLL_LOAD_HEADERS", in.LoadHeaders, loadHeaderExample)},
	}
}

// read takes the variables from vars (the environment as a parameter, never the process's)
// and applies the defaults.
func read(vars map[string]string) (input, error) {
	var in input
	if err := env.ParseWithOptions(&in, env.Options{Environment: vars}); err != nil {
		// Only string fields without options: this cannot fail on any input.
		return input{}, &problem{msg: fmt.Sprintf("failed to read the environment: %v", err)}
	}
	in.applyDefaults()
	return in, nil
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
		v.add(name + " is not a meshroll variable: " + fix)
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
