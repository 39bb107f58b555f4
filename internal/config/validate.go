package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ErrInvalid is matched (errors.Is) by every error Load returns: the input is
// wrong and nothing may be written (exit code 2).
var ErrInvalid = errors.New("invalid configuration")

// problem is one thing wrong with the input. It matches ErrInvalid so callers
// can branch on the kind of failure without comparing strings.
type problem struct{ msg string }

func (p *problem) Error() string        { return p.msg }
func (p *problem) Is(target error) bool { return target == ErrInvalid }

// validator collects problems in the order they are found.
type validator struct{ problems []error }

// add records a message as it is; it must start with the variable's name.
func (v *validator) add(msg string) {
	v.problems = append(v.problems, &problem{msg: msg})
}

// invalid records `NAME=value: what; fix`.
func (v *validator) invalid(name, value, format string, args ...any) {
	v.add(name + "=" + show(value) + ": " + fmt.Sprintf(format, args...))
}

// required records `NAME is required: fix`.
func (v *validator) required(name, fix string) {
	v.add(name + " is required: " + fix)
}

// err joins the problems, or is nil when there are none.
func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return errors.Join(v.problems...)
}

// validate converts the strings (their defaults already applied) to typed values and records
// every problem in v, in the order of the variables.
func (in input) validate(v *validator) Config {
	cfg := Config{
		Namespace:        strings.TrimSpace(in.Namespace),
		VirtualService:   strings.TrimSpace(in.VirtualService),
		HTTPRoute:        strings.TrimSpace(in.HTTPRoute),
		Route:            strings.TrimSpace(in.Route),
		StableSubset:     strings.TrimSpace(in.StableSubset),
		CanarySubset:     strings.TrimSpace(in.CanarySubset),
		StableService:    strings.TrimSpace(in.StableService),
		CanaryService:    strings.TrimSpace(in.CanaryService),
		CanaryDeployment: strings.TrimSpace(in.CanaryDeployment),
		OutputDir:        strings.TrimSpace(in.OutputDir),
		StableDeployment: strings.TrimSpace(in.StableDeployment),
	}
	in.kubeAccess(&cfg)
	modeKnown := in.mode(v, &cfg)
	target(v, cfg)
	in.steps(v, &cfg, modeKnown)
	in.shapes(v, &cfg)
	in.run(v, &cfg)
	in.reporting(v, &cfg)
	in.safety(v, &cfg)
	in.lock(v, &cfg)
	in.scaleDown(v, &cfg)
	in.prune(v, &cfg)
	cfg.Analysis = in.analysis(v, cfg)
	if cfg.MirrorPercent > 0 && cfg.Analysis.Enabled() && cfg.Analysis.Reporter == "source" {
		// Istio's client sidecar never reports the requests it mirrors: the mirror stage
		// would find no canary data and end inconclusive.
		v.invalid("MESHROLL_MIRROR_PERCENT", strings.TrimSpace(in.MirrorPercent), "a mirror stage is judged on what the canary's own sidecar reports, but MESHROLL_REPORTER=source never sees mirrored requests; use MESHROLL_REPORTER=destination, or unset MESHROLL_MIRROR_PERCENT")
	}
	in.gates(v, &cfg)
	return cfg
}

// kubeAccess takes the cluster's credentials. Nothing here can be checked without reading
// files or the kubeconfig, which is kube's business.
func (in input) kubeAccess(cfg *Config) {
	cfg.KubeContext = strings.TrimSpace(in.KubeContext)
	if strings.TrimSpace(in.KubeconfigData) != "" {
		cfg.KubeconfigData = in.KubeconfigData
	}
	// KUBECONFIG and HOME are standard variables: taken exactly as given.
	cfg.Kubeconfig = splitPaths(in.Kubeconfig)
	cfg.Home = in.Home
}

// mode checks MESHROLL_MODE and reports whether it is known: with an unknown mode nobody can
// tell which of MESHROLL_WEIGHT and MESHROLL_STEPS are needed.
func (in input) mode(v *validator, cfg *Config) bool {
	value := Mode(strings.TrimSpace(in.Mode))
	if !slices.Contains(modes, value) {
		v.invalid("MESHROLL_MODE", string(value), "unknown mode; use one of %s, or leave it empty for %s", modeList(), defaultMode)
		return false
	}
	cfg.Mode = value
	return true
}

// target checks the names of the routing object and its subsets.
func target(v *validator, cfg Config) {
	if cfg.Namespace != "" {
		if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
			v.invalid("MESHROLL_NAMESPACE", cfg.Namespace, "not a valid namespace name (%s); use the namespace of the VirtualService, e.g. shop, or leave it empty for the kubeconfig context's namespace", strings.Join(errs, ", "))
		}
	}
	switch {
	case cfg.VirtualService != "" && cfg.HTTPRoute != "":
		v.add("MESHROLL_VIRTUAL_SERVICE and MESHROLL_HTTP_ROUTE are both set: a run steers one routing object; unset one of them")
	case cfg.HTTPRoute != "":
		httpRoute(v, cfg)
		return
	case cfg.VirtualService == "":
		v.required("MESHROLL_VIRTUAL_SERVICE", "set it to the name of the VirtualService to steer, e.g. reviews, or set MESHROLL_HTTP_ROUTE to steer a Gateway API HTTPRoute instead")
	default:
		if errs := validation.IsDNS1123Subdomain(cfg.VirtualService); len(errs) > 0 {
			v.invalid("MESHROLL_VIRTUAL_SERVICE", cfg.VirtualService, "not a valid VirtualService name (%s); use its metadata.name, e.g. reviews", strings.Join(errs, ", "))
		}
	}
	if cfg.Route != "" {
		if !utf8.ValidString(cfg.Route) || strings.ContainsFunc(cfg.Route, unicode.IsControl) {
			v.invalid("MESHROLL_ROUTE", cfg.Route, "contains a control character or invalid UTF-8; use the route's name exactly as in the VirtualService, or leave it empty to choose the route automatically")
		}
	}
	destinations(v, cfg)
}

// destinations checks how the stable and canary destinations are named: by DestinationRule
// subset, by Service (host-level split), or by both; each pair given for both versions, and
// the two versions different. status may name neither: it takes them from the run it finds.
func destinations(v *validator, cfg Config) {
	services := cfg.StableService != "" || cfg.CanaryService != ""
	if cfg.Mode == ModeStatus && !services && cfg.StableSubset == "" && cfg.CanarySubset == "" {
		return
	}
	servicesOK := true
	if services {
		stableOK := service(v, "MESHROLL_STABLE_SERVICE", "stable", cfg.StableService, "reviews-stable")
		canaryOK := service(v, "MESHROLL_CANARY_SERVICE", "canary", cfg.CanaryService, "reviews-canary")
		servicesOK = stableOK && canaryOK
	}
	subsetsOK := true
	if !services || cfg.StableSubset != "" || cfg.CanarySubset != "" {
		alternative := ", or name both versions by their Service instead (MESHROLL_STABLE_SERVICE and MESHROLL_CANARY_SERVICE)"
		if services {
			alternative = "; with Services given, subsets are optional: set both or neither"
		}
		stableOK := subset(v, "MESHROLL_STABLE_SUBSET", "stable", cfg.StableSubset, "v1", alternative)
		canaryOK := subset(v, "MESHROLL_CANARY_SUBSET", "canary", cfg.CanarySubset, "v2", alternative)
		subsetsOK = stableOK && canaryOK
	}
	if servicesOK && subsetsOK && cfg.StableSubset == cfg.CanarySubset && cfg.StableService == cfg.CanaryService {
		if services {
			v.invalid("MESHROLL_CANARY_SERVICE", cfg.CanaryService, "same Service and subset as the stable version; the canary must differ from the stable one in its Service or its subset")
		} else {
			v.invalid("MESHROLL_CANARY_SUBSET", cfg.CanarySubset, "same as MESHROLL_STABLE_SUBSET; the canary subset must differ from the stable one")
		}
	}
}

// service checks a Service name: name, name.namespace or a fully qualified name.
func service(v *validator, name, which, value, example string) bool {
	if value == "" {
		v.required(name, fmt.Sprintf("a host-level split names both versions by their Service; set it to the %s version's Service, e.g. %s, or unset both Service variables", which, example))
		return false
	}
	if errs := validation.IsDNS1123Subdomain(value); len(errs) > 0 {
		v.invalid(name, value, "not a valid Service name (%s); use the %s version's Service as the VirtualService's destination host names it, e.g. %s or %s.shop", strings.Join(errs, ", "), which, example, example)
		return false
	}
	return true
}

// steps checks the weights a run moves through and how long each is held. MESHROLL_WEIGHT
// belongs to phase, MESHROLL_STEPS to progress; with an unknown mode only their syntax is
// checked.
func (in input) steps(v *validator, cfg *Config, modeKnown bool) {
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
	case steps == "":
	case modeKnown && !cfg.Mode.Progressive():
		v.invalid("MESHROLL_STEPS", steps, "only used with MESHROLL_MODE=progress (and resume), but the mode is %s; unset it, or use MESHROLL_MODE=progress", cfg.Mode)
	default:
		s, what := parseSteps(steps)
		if what != "" {
			v.invalid("MESHROLL_STEPS", steps, "%s; use comma-separated integers from 0 to 100 in strictly ascending order, e.g. %s", what, defaultSteps)
		} else if cfg.Mode.Progressive() {
			cfg.Steps = s
		}
	}

	cfg.StepDuration = duration(v, "MESHROLL_STEP_DURATION", in.StepDuration, defaultStepDuration, true,
		"use 0 to move on at once, or a duration such as 30s or 5m")
}

// run checks what bounds a run: the canary's readiness, the deadline, and whether to write.
func (in input) run(v *validator, cfg *Config) {
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
}

// reporting checks where the run's report goes.
func (in input) reporting(v *validator, cfg *Config) {
	if ci := CI(strings.TrimSpace(in.CI)); slices.Contains(cis, ci) {
		cfg.CI = ci
	} else {
		v.invalid("MESHROLL_CI", string(ci), "unknown CI system; use one of auto, github, gitlab, jenkins, plain")
	}
}

// safety checks what keeps the traffic safe: the stable Deployment and what to do with the
// weights when a run cannot finish.
func (in input) safety(v *validator, cfg *Config) {
	if cfg.StableDeployment != "" {
		if errs := validation.IsDNS1123Subdomain(cfg.StableDeployment); len(errs) > 0 {
			v.invalid("MESHROLL_STABLE_DEPLOYMENT", cfg.StableDeployment, "not a valid Deployment name (%s); use the stable Deployment's metadata.name, or leave it empty to skip the check", strings.Join(errs, ", "))
		}
	}
	cfg.OnInconclusive = action(v, "MESHROLL_ON_INCONCLUSIVE", in.OnInconclusive, ActionHold)
	cfg.OnCancel = action(v, "MESHROLL_ON_CANCEL", in.OnCancel, ActionLeave)
}

// lock checks how long the run's lock outlives it, and takes the CI run's address.
func (in input) lock(v *validator, cfg *Config) {
	cfg.LeaseDuration = duration(v, "MESHROLL_LEASE_DURATION", in.LeaseDuration, defaultLeaseDuration, false,
		"use a duration such as 2m, or leave it empty for 1m")
	switch d := cfg.LeaseDuration; {
	case d < minLeaseDuration:
		v.invalid("MESHROLL_LEASE_DURATION", strings.TrimSpace(in.LeaseDuration), "shorter than %s: the lock is renewed every third of it, and a slow API server would let it lapse; use e.g. 1m, or leave it empty for 1m", minLeaseDuration)
		cfg.LeaseDuration = defaultLeaseDuration
	case d%time.Second != 0:
		v.invalid("MESHROLL_LEASE_DURATION", strings.TrimSpace(in.LeaseDuration), "a Lease counts whole seconds; use e.g. 90s, or leave it empty for 1m")
		cfg.LeaseDuration = defaultLeaseDuration
	}
	cfg.RunLink = in.runLink()
}

// runLink is the address of the CI run, job or build that runs meshroll, "" outside CI.
func (in input) runLink() string {
	trim := strings.TrimSpace
	switch {
	case trim(in.GitHubServer) != "" && trim(in.GitHubRepository) != "" && trim(in.GitHubRunID) != "":
		link := strings.TrimSuffix(trim(in.GitHubServer), "/") + "/" + trim(in.GitHubRepository) + "/actions/runs/" + trim(in.GitHubRunID)
		if a := trim(in.GitHubAttempt); a != "" && a != "1" {
			link += "/attempts/" + a
		}
		return link
	case trim(in.GitLabJobURL) != "":
		return trim(in.GitLabJobURL)
	}
	return trim(in.JenkinsBuildURL)
}

// action parses MESHROLL_ON_INCONCLUSIVE / MESHROLL_ON_CANCEL: rollback (the default) or
// the one value that leaves the weights alone.
func action(v *validator, name, raw string, keep Action) Action {
	switch a := Action(strings.TrimSpace(raw)); a {
	case ActionRollback, keep:
		return a
	default:
		v.invalid(name, string(a), "use rollback (all traffic back to stable) or %s (leave the weights as they are), or leave it empty for rollback", keep)
		return defaultAction
	}
}

// subset checks a required DestinationRule subset name and reports whether it
// is usable (so that the "must differ" check does not pile on).
func subset(v *validator, name, which, value, example, alternative string) bool {
	if value == "" {
		v.required(name, fmt.Sprintf("set it to the DestinationRule subset of the %s version, e.g. %s%s", which, example, alternative))
		return false
	}
	// Istio validates subset names as DNS-1123 labels.
	if errs := validation.IsDNS1123Label(value); len(errs) > 0 {
		v.invalid(name, value, "not a valid subset name (%s); use the %s subset's name from the DestinationRule, e.g. %s", strings.Join(errs, ", "), which, example)
		return false
	}
	return true
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
