package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// minimal is the smallest valid environment.
var minimal = []string{
	"MESHROLL_VIRTUAL_SERVICE=reviews",
	"MESHROLL_STABLE_SUBSET=v1",
	"MESHROLL_CANARY_SUBSET=v2",
}

// with returns minimal plus vars (a later entry for the same name wins).
func with(vars ...string) []string {
	return append(slices.Clone(minimal), vars...)
}

// analysis returns minimal with metric analysis on, plus vars.
func analysis(vars ...string) []string {
	return with(append([]string{"MESHROLL_PROMETHEUS_URL=http://prometheus:9090", "MESHROLL_CANARY_WORKLOAD=reviews-v2",
		"MESHROLL_STABLE_WORKLOAD=reviews-v1"}, vars...)...)
}

// defaults is what Load returns for minimal.
func defaults() Config {
	return Config{
		Mode:           ModeProgress,
		VirtualService: "reviews",
		StableSubset:   "v1",
		CanarySubset:   "v2",
		Steps:          []int{10, 25, 50, 100},
		StepDuration:   time.Minute,
		ReadyTimeout:   5 * time.Minute,
		CI:             CIAuto,
		OutputDir:      "meshroll-out",
		OnInconclusive: ActionRollback,
		OnCancel:       ActionRollback,
		LeaseDuration:  time.Minute,
		IstioNamespace: "istio-system",
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ []string
		change  func(*Config) // applied to defaults() to get the wanted Config
	}{
		{
			name:    "defaults",
			environ: minimal,
			change:  func(*Config) {},
		},
		{
			name:    "host-level split: services instead of subsets",
			environ: []string{"MESHROLL_VIRTUAL_SERVICE=reviews", "MESHROLL_STABLE_SERVICE= reviews-stable ", "MESHROLL_CANARY_SERVICE=reviews-canary.shop.svc.cluster.local"},
			change: func(c *Config) {
				c.StableSubset, c.CanarySubset = "", ""
				c.StableService, c.CanaryService = "reviews-stable", "reviews-canary.shop.svc.cluster.local"
			},
		},
		{
			name:    "A/B by header, cookie or JWT claim; one object alone is a list of one",
			environ: with(`MESHROLL_MATCH={headers: {"@request.auth.claims.group": {exact: beta}}}`, "MESHROLL_MIRROR_PERCENT=12.5"),
			change: func(c *Config) {
				c.Match = []map[string]any{{"headers": map[string]any{"@request.auth.claims.group": map[string]any{"exact": "beta"}}}}
				c.MirrorPercent = 12.5
			},
		},
		{
			name:    "A/B conditions in JSON, Istio's field names kept",
			environ: with(`MESHROLL_MATCH=[{"headers":{"region":{"exact":"india"}}},{"queryParams":{"beta":{"exact":"1"}},"uri":{"prefix":"/api"}}]`),
			change: func(c *Config) {
				c.Match = []map[string]any{
					{"headers": map[string]any{"region": map[string]any{"exact": "india"}}},
					{"queryParams": map[string]any{"beta": map[string]any{"exact": "1"}}, "uri": map[string]any{"prefix": "/api"}},
				}
			},
		},
		{
			name:    "same Service, different subsets",
			environ: with("MESHROLL_STABLE_SERVICE=reviews", "MESHROLL_CANARY_SERVICE=reviews"),
			change:  func(c *Config) { c.StableService, c.CanaryService = "reviews", "reviews" },
		},
		{
			name: "set but empty behaves like unset",
			environ: with("MESHROLL_MODE=", "MESHROLL_NAMESPACE=", "MESHROLL_ROUTE=", "MESHROLL_WEIGHT=", "MESHROLL_STEPS=",
				"MESHROLL_STEP_DURATION=", "MESHROLL_CANARY_DEPLOYMENT=", "MESHROLL_READY_TIMEOUT=", "MESHROLL_TIMEOUT=",
				"MESHROLL_DRY_RUN=", "MESHROLL_KUBE_CONTEXT=", "KUBECONFIG=", "HOME=", "MESHROLL_WIEGHT="),
			change: func(*Config) {},
		},
		{
			name:    "blank behaves like unset",
			environ: with("MESHROLL_MODE=  ", "MESHROLL_WEIGHT= ", "MESHROLL_STEPS=\t", "MESHROLL_TIMEOUT= ", "MESHROLL_DRY_RUN= "),
			change:  func(*Config) {},
		},
		{
			name:    "phase",
			environ: with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=20"),
			change:  func(c *Config) { c.Mode, c.Weight, c.Steps = ModePhase, 20, nil },
		},
		{
			name:    "phase to 0 with spaces",
			environ: with("MESHROLL_MODE= phase ", "MESHROLL_WEIGHT= 0 "),
			change:  func(c *Config) { c.Mode, c.Weight, c.Steps = ModePhase, 0, nil },
		},
		{
			name:    "phase to 100 with a leading zero",
			environ: with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=0100"),
			change:  func(c *Config) { c.Mode, c.Weight, c.Steps = ModePhase, 100, nil },
		},
		{
			name:    "progress explicit",
			environ: with("MESHROLL_MODE=progress"),
			change:  func(*Config) {},
		},
		{
			name:    "progress with custom steps and spaces",
			environ: with("MESHROLL_STEPS= 5, 20 ,100 ", "MESHROLL_STEP_DURATION=90s"),
			change:  func(c *Config) { c.Steps, c.StepDuration = []int{5, 20, 100}, 90*time.Second },
		},
		{
			name:    "progress with one step",
			environ: with("MESHROLL_STEPS=100"),
			change:  func(c *Config) { c.Steps = []int{100} },
		},
		{
			name:    "progress ending below 100 without holding",
			environ: with("MESHROLL_STEPS=0,30", "MESHROLL_STEP_DURATION=0"),
			change:  func(c *Config) { c.Steps, c.StepDuration = []int{0, 30}, 0 },
		},
		{
			name:    "promote",
			environ: with("MESHROLL_MODE=promote"),
			change:  func(c *Config) { c.Mode, c.Steps = ModePromote, nil },
		},
		{
			name:    "rollback",
			environ: with("MESHROLL_MODE=rollback"),
			change:  func(c *Config) { c.Mode, c.Steps = ModeRollback, nil },
		},
		{
			name:    "status",
			environ: with("MESHROLL_MODE=status"),
			change:  func(c *Config) { c.Mode, c.Steps = ModeStatus, nil },
		},
		{
			name: "every other variable",
			environ: with(
				"MESHROLL_NAMESPACE=prod", "MESHROLL_ROUTE=  Default Route  ", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2.web",
				"MESHROLL_READY_TIMEOUT=2m", "MESHROLL_TIMEOUT=1h30m", "MESHROLL_DRY_RUN=TRUE", "MESHROLL_KUBE_CONTEXT= prod-eu ",
				"HOME=/home/ci"),
			change: func(c *Config) {
				c.Namespace, c.Route, c.CanaryDeployment = "prod", "Default Route", "reviews-v2.web"
				c.ReadyTimeout, c.Timeout, c.DryRun = 2*time.Minute, 90*time.Minute, true
				c.KubeContext, c.Home = "prod-eu", "/home/ci"
			},
		},
		{
			name:    "spaces around names",
			environ: []string{"MESHROLL_VIRTUAL_SERVICE= reviews ", "MESHROLL_STABLE_SUBSET=\tv1", "MESHROLL_CANARY_SUBSET=v2 "},
			change:  func(*Config) {},
		},
		{
			name:    "dry run false spelt 0",
			environ: with("MESHROLL_DRY_RUN=0"),
			change:  func(*Config) {},
		},
		{
			name:    "KUBECONFIG with two files and empty entries",
			environ: with("KUBECONFIG=a:b::c:"),
			change:  func(c *Config) { c.Kubeconfig = []string{"a", "b", "c"} },
		},
		{
			name:    "KUBECONFIG and HOME taken as they are",
			environ: with("KUBECONFIG= /my configs/a ", "HOME= /home/with space"),
			change:  func(c *Config) { c.Kubeconfig, c.Home = []string{" /my configs/a "}, " /home/with space" },
		},
		{
			name:    "outputs of an earlier run are accepted and ignored",
			environ: with("MESHROLL_RESULT=promoted", "MESHROLL_CANARY_WEIGHT=100", "MESHROLL_REASON=x y"),
			change:  func(*Config) {},
		},
		{
			name: "analysis defaults, workloads from the Deployments",
			environ: with("MESHROLL_PROMETHEUS_URL= http://prometheus:9090 ", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2",
				"MESHROLL_STABLE_DEPLOYMENT=reviews-v1"),
			change: func(c *Config) {
				c.CanaryDeployment, c.StableDeployment = "reviews-v2", "reviews-v1"
				c.Analysis = Analysis{
					PrometheusURL: "http://prometheus:9090", Interval: 30 * time.Second,
					MinRequests: 20, FailureThreshold: 2, CanaryWorkload: "reviews-v2",
					StableWorkload: "reviews-v1", Reporter: "destination", Confidence: 99, MarginFactor: 1.5, MarginPoints: 0.2,
				}
			},
		},
		{
			name: "analysis, every variable",
			environ: with("MESHROLL_PROMETHEUS_URL=https://prom.example:9443/prefix", "MESHROLL_PROMETHEUS_USERNAME=ops",
				"MESHROLL_PROMETHEUS_PASSWORD=s3cret pass", "MESHROLL_PROMETHEUS_CA_FILE=/etc/ca.pem",
				"MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY=false", "MESHROLL_PROMETHEUS_HEADERS=X-Scope-OrgID: tenant-1\n\nX-Other:a:b ",
				"MESHROLL_ANALYSIS_INTERVAL=15s", "MESHROLL_MIN_SUCCESS_RATE=99.5", "MESHROLL_MAX_LATENCY_P99=250",
				"MESHROLL_MIN_REQUESTS=0", "MESHROLL_FAILURE_THRESHOLD=1", "MESHROLL_CHECKS=- {name: x, query: 'sum(y)', max: 1}",
				"MESHROLL_CANARY_WORKLOAD=reviews-canary", "MESHROLL_STABLE_WORKLOAD=reviews-primary", "MESHROLL_REPORTER=source",
				"MESHROLL_ON_INCONCLUSIVE=hold", "MESHROLL_ON_CANCEL=leave", "MESHROLL_CONFIDENCE=95", "MESHROLL_MIN_STEP_DURATION=30s",
				"MESHROLL_STEP_DURATION=2m", "MESHROLL_MARGIN_FACTOR=2", "MESHROLL_MARGIN_POINTS=0.5"),
			change: func(c *Config) {
				c.OnInconclusive, c.OnCancel, c.StepDuration = ActionHold, ActionLeave, 2*time.Minute
				c.Analysis = Analysis{
					PrometheusURL: "https://prom.example:9443/prefix", Username: "ops", Password: "s3cret pass",
					CAFile: "/etc/ca.pem", Headers: map[string]string{"X-Scope-OrgID": "tenant-1", "X-Other": "a:b"},
					Interval: 15 * time.Second, MinSuccessRate: 99.5, MaxLatencyP99: 250, MinRequests: 0, FailureThreshold: 1,
					Checks: []Check{{Name: "x", Query: "sum(y)", Max: ptr(1)}}, CanaryWorkload: "reviews-canary",
					StableWorkload: "reviews-primary", Reporter: "source", Confidence: 95, MinStepDuration: 30 * time.Second,
					MarginFactor: 2, MarginPoints: 0.5,
				}
			},
		},
		{
			name:    "reporting and kubeconfig contents",
			environ: with("MESHROLL_CI= gitlab ", "MESHROLL_OUTPUT_DIR=out/run 1", "MESHROLL_KUBECONFIG=apiVersion: v1\nkind: Config\n"),
			change: func(c *Config) {
				c.CI, c.OutputDir, c.KubeconfigData = CIGitLab, "out/run 1", "apiVersion: v1\nkind: Config\n"
			},
		},
		{
			name:    "other variables are none of our business",
			environ: with("PATH=/usr/bin", "CI=true", "GITHUB_ACTIONS=true", "MESHROLLX=1", "NOT_MESHROLL_WEIGHT=1", "no-equals-sign"),
			change:  func(*Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Load(tt.environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := defaults()
			tt.change(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ []string
		want    []string // fragments that must all appear in the error
	}{
		// mode
		{"unknown mode", with("MESHROLL_MODE=canary"),
			[]string{"MESHROLL_MODE=canary: unknown mode; use one of phase, progress, promote, rollback, status"}},
		{"mode is case-sensitive", with("MESHROLL_MODE=Phase"), []string{"MESHROLL_MODE=Phase: unknown mode"}},
		{"unknown CI system", with("MESHROLL_CI=circleci"), []string{"MESHROLL_CI=circleci: unknown CI system; use one of auto, github"}},
		{"mode with a space inside", with("MESHROLL_MODE=pro gress"), []string{`MESHROLL_MODE="pro gress": unknown mode`}},

		// required names
		{"nothing set", nil, []string{"MESHROLL_VIRTUAL_SERVICE is required", "MESHROLL_STABLE_SUBSET is required", "MESHROLL_CANARY_SUBSET is required"}},
		{"virtual service blank", []string{"MESHROLL_VIRTUAL_SERVICE= ", "MESHROLL_STABLE_SUBSET=v1", "MESHROLL_CANARY_SUBSET=v2"},
			[]string{"MESHROLL_VIRTUAL_SERVICE is required: set it to the name of the VirtualService"}},
		{"virtual service not a name", with("MESHROLL_VIRTUAL_SERVICE=Reviews!"),
			[]string{"MESHROLL_VIRTUAL_SERVICE=Reviews!: not a valid VirtualService name", "use its metadata.name"}},
		{"namespace not a label", with("MESHROLL_NAMESPACE=Prod_EU"),
			[]string{"MESHROLL_NAMESPACE=Prod_EU: not a valid namespace name", "leave it empty for the kubeconfig context's namespace"}},
		{"namespace with a dot", with("MESHROLL_NAMESPACE=prod.eu"), []string{"MESHROLL_NAMESPACE=prod.eu: not a valid namespace name (must not contain dots)"}},
		{"namespace too long", with("MESHROLL_NAMESPACE=" + strings.Repeat("a", 64)), []string{"MESHROLL_NAMESPACE=aaaa", "must be no more than 63"}},
		{"subset not a label", with("MESHROLL_CANARY_SUBSET=v2.beta"),
			[]string{"MESHROLL_CANARY_SUBSET=v2.beta: not a valid subset name", "from the DestinationRule"}},
		{"stable subset missing", []string{"MESHROLL_VIRTUAL_SERVICE=reviews", "MESHROLL_CANARY_SUBSET=v2"},
			[]string{"MESHROLL_STABLE_SUBSET is required: set it to the DestinationRule subset of the stable version"}},
		{"stable equals canary", with("MESHROLL_CANARY_SUBSET=v1"),
			[]string{"MESHROLL_CANARY_SUBSET=v1: same as MESHROLL_STABLE_SUBSET; the canary subset must differ"}},
		{"canary deployment not a name", with("MESHROLL_CANARY_DEPLOYMENT=reviews_v2"),
			[]string{"MESHROLL_CANARY_DEPLOYMENT=reviews_v2: not a valid Deployment name"}},
		{"route with a newline", with("MESHROLL_ROUTE=a\nb"), []string{`MESHROLL_ROUTE="a\nb": contains a control character`}},
		{"route with invalid UTF-8", with("MESHROLL_ROUTE=a\xffb"), []string{`MESHROLL_ROUTE="a\xffb": contains a control character or invalid UTF-8`}},

		// weight
		{"weight above 100", with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=150"), []string{"MESHROLL_WEIGHT=150: must be an integer from 0 to 100"}},
		{"weight negative", with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=-1"), []string{"MESHROLL_WEIGHT=-1: must be an integer from 0 to 100"}},
		{"weight with a sign", with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=+5"), []string{"MESHROLL_WEIGHT=+5: must be"}},
		{"weight a word", with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=twenty"), []string{"MESHROLL_WEIGHT=twenty: must be"}},
		{"weight fractional", with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=2.5"), []string{"MESHROLL_WEIGHT=2.5: must be"}},
		{"weight with percent sign", with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=20%"), []string{"MESHROLL_WEIGHT=20%: must be"}},
		{"weight overflowing int", with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=99999999999999999999999"), []string{"MESHROLL_WEIGHT=99999999999999999999999: must be"}},
		{"weight missing in phase", with("MESHROLL_MODE=phase"), []string{"MESHROLL_WEIGHT is required: MESHROLL_MODE=phase needs the canary weight"}},
		{"weight in progress", with("MESHROLL_WEIGHT=20"),
			[]string{"MESHROLL_WEIGHT=20: only used with MESHROLL_MODE=phase, but the mode is progress; unset it, or use MESHROLL_MODE=phase"}},
		{"weight in status", with("MESHROLL_MODE=status", "MESHROLL_WEIGHT=20"), []string{"MESHROLL_WEIGHT=20: only used with MESHROLL_MODE=phase, but the mode is status"}},

		// steps
		{"steps in phase", with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=20", "MESHROLL_STEPS=10,20"),
			[]string{"MESHROLL_STEPS=10,20: only used with MESHROLL_MODE=progress (and resume), but the mode is phase; unset it, or use MESHROLL_MODE=progress"}},
		{"steps in promote", with("MESHROLL_MODE=promote", "MESHROLL_STEPS=10"), []string{"MESHROLL_STEPS=10: only used with MESHROLL_MODE=progress"}},
		{"steps descending", with("MESHROLL_STEPS=10,50,25"), []string{"MESHROLL_STEPS=10,50,25: 25 comes after 50 (items 2 and 3)", "strictly ascending"}},
		{"steps duplicated", with("MESHROLL_STEPS=10, 25, 25"), []string{`MESHROLL_STEPS="10, 25, 25": 25 is repeated (items 2 and 3)`}},
		{"steps empty item", with("MESHROLL_STEPS=10,,50"), []string{"MESHROLL_STEPS=10,,50: item 2 is empty"}},
		{"steps trailing comma", with("MESHROLL_STEPS=10,50,"), []string{"MESHROLL_STEPS=10,50,: item 3 is empty"}},
		{"steps only commas", with("MESHROLL_STEPS= , "), []string{"MESHROLL_STEPS=,: item 1 is empty, item 2 is empty"}},
		{"steps out of range", with("MESHROLL_STEPS=10,101"), []string{"MESHROLL_STEPS=10,101: item 2 (101) is not an integer from 0 to 100"}},
		{"steps separated by spaces", with("MESHROLL_STEPS=10 25"), []string{`MESHROLL_STEPS="10 25": item 1 ("10 25") is not an integer`}},
		{"steps with every item problem listed", with("MESHROLL_STEPS=x,,200"),
			[]string{"item 1 (x) is not an integer", "item 2 is empty", "item 3 (200) is not an integer", "e.g. 10,25,50,100"}},

		// host-level splits
		{"one service only", with("MESHROLL_STABLE_SERVICE=reviews-stable"), []string{"MESHROLL_CANARY_SERVICE is required: a host-level split names both versions by their Service"}},
		{"service not a name", with("MESHROLL_STABLE_SERVICE=Reviews_Stable", "MESHROLL_CANARY_SERVICE=reviews-canary"), []string{"MESHROLL_STABLE_SERVICE=Reviews_Stable: not a valid Service name"}},
		{"services without subsets, one subset given", []string{"MESHROLL_VIRTUAL_SERVICE=reviews", "MESHROLL_STABLE_SERVICE=a", "MESHROLL_CANARY_SERVICE=b", "MESHROLL_STABLE_SUBSET=v1"},
			[]string{"MESHROLL_CANARY_SUBSET is required", "with Services given, subsets are optional: set both or neither"}},
		{"same service and subsets", with("MESHROLL_STABLE_SERVICE=reviews", "MESHROLL_CANARY_SERVICE=reviews", "MESHROLL_CANARY_SUBSET=v1"),
			[]string{"MESHROLL_CANARY_SERVICE=reviews: same Service and subset as the stable version"}},
		{"neither subsets nor services", []string{"MESHROLL_VIRTUAL_SERVICE=reviews"},
			[]string{"MESHROLL_STABLE_SUBSET is required", "or name both versions by their Service instead (MESHROLL_STABLE_SERVICE and MESHROLL_CANARY_SERVICE)"}},

		// traffic shapes
		{"match not YAML", with("MESHROLL_MATCH=[{headers: "), []string{"MESHROLL_MATCH: not YAML or JSON"}},
		{"match misspelt field", with("MESHROLL_MATCH=[{heders: {region: {exact: india}}}]"), []string{"MESHROLL_MATCH: entry 1: not an Istio HTTPMatchRequest", `unknown field "heders"`}},
		{"match without a matcher", with("MESHROLL_MATCH=[{headers: {region: {}}}]"), []string{"MESHROLL_MATCH: entry 1: headers.region needs one of exact, prefix or regex"}},
		{"match two matchers", with(`MESHROLL_MATCH=[{uri: {exact: /a, prefix: /b}}]`), []string{"MESHROLL_MATCH: entry 1: not an Istio HTTPMatchRequest"}},
		{"match bad regex", with(`MESHROLL_MATCH=[{headers: {cookie: {regex: "(a"}}}]`), []string{"MESHROLL_MATCH: entry 1: headers.cookie regex \"(a\" is not RE2"}},
		{"match that matches everything", with("MESHROLL_MATCH=[{}]"), []string{"MESHROLL_MATCH: entry 1: no condition"}},
		{"match empty list", with("MESHROLL_MATCH=[]"), []string{"MESHROLL_MATCH: the list is empty"}},
		{"match every entry reported", with("MESHROLL_MATCH=[{uri: {prefix: /}}, {bogus: 1}, {port: x}]"), []string{"entry 2: not an Istio HTTPMatchRequest", "entry 3: not an Istio HTTPMatchRequest"}},
		{"mirror zero", with("MESHROLL_MIRROR_PERCENT=0"), []string{"MESHROLL_MIRROR_PERCENT=0: must be a number above 0 and at most 100"}},
		{"mirror above 100", with("MESHROLL_MIRROR_PERCENT=150"), []string{"MESHROLL_MIRROR_PERCENT=150: must be a number above 0"}},
		{"mirror a word", with("MESHROLL_MIRROR_PERCENT=half"), []string{"MESHROLL_MIRROR_PERCENT=half: must be a number"}},
		{"mirror judged on the source reporter", analysis("MESHROLL_MIRROR_PERCENT=20", "MESHROLL_REPORTER=source"), []string{"MESHROLL_MIRROR_PERCENT=20: a mirror stage is judged on what the canary's own sidecar reports, but MESHROLL_REPORTER=source never sees mirrored requests"}},

		// durations and booleans
		{"step duration without unit", with("MESHROLL_STEP_DURATION=5"), []string{"MESHROLL_STEP_DURATION=5: not a Go duration"}},
		{"step duration negative", with("MESHROLL_STEP_DURATION=-30s"), []string{"MESHROLL_STEP_DURATION=-30s: must not be negative"}},
		{"ready timeout zero", with("MESHROLL_READY_TIMEOUT=0s"), []string{"MESHROLL_READY_TIMEOUT=0s: must be greater than 0"}},
		{"ready timeout garbage", with("MESHROLL_READY_TIMEOUT=five minutes"), []string{`MESHROLL_READY_TIMEOUT="five minutes": not a Go duration`}},
		{"timeout zero", with("MESHROLL_TIMEOUT=0"), []string{"MESHROLL_TIMEOUT=0: must be greater than 0", "leave it empty for no deadline"}},
		{"timeout negative", with("MESHROLL_TIMEOUT=-1h"), []string{"MESHROLL_TIMEOUT=-1h: must not be negative", "leave it empty for no deadline"}},
		{"timeout a word", with("MESHROLL_TIMEOUT=forever"), []string{"MESHROLL_TIMEOUT=forever: not a Go duration"}},
		{"dry run not a boolean", with("MESHROLL_DRY_RUN=yes please"), []string{`MESHROLL_DRY_RUN="yes please": not a boolean; use true or false`}},
		{"dry run yes", with("MESHROLL_DRY_RUN=yes"), []string{"MESHROLL_DRY_RUN=yes: not a boolean"}},

		// unknown variables
		{"misspelt variable", with("MESHROLL_WIEGHT=20"), []string{"MESHROLL_WIEGHT is not a meshroll variable: did you mean MESHROLL_WEIGHT?"}},
		{"lower-case variable", with("meshroll_mode=phase"), []string{"meshroll_mode is not a meshroll variable: did you mean MESHROLL_MODE?"}},
		{"misspelt analysis variable", with("MESHROLL_PROMETHEUS_URI=http://p"), []string{"MESHROLL_PROMETHEUS_URI is not a meshroll variable: did you mean MESHROLL_PROMETHEUS_URL?"}},

		// analysis
		{"threshold without Prometheus", with("MESHROLL_MIN_SUCCESS_RATE=99.9"),
			[]string{"MESHROLL_MIN_SUCCESS_RATE is set but MESHROLL_PROMETHEUS_URL is empty and so is MESHROLL_PROMETHEUS_SERVICE, so no metric analysis would run"}},
		{"Prometheus URL not absolute", analysis("MESHROLL_PROMETHEUS_URL=prometheus:9090"),
			[]string{"MESHROLL_PROMETHEUS_URL: not an absolute http(s) URL"}},
		{"success rate out of range", analysis("MESHROLL_MIN_SUCCESS_RATE=101"),
			[]string{"MESHROLL_MIN_SUCCESS_RATE=101: must be a percentage above 0 and at most 100"}},
		{"latency not a number", analysis("MESHROLL_MAX_LATENCY_P99=500ms"),
			[]string{"MESHROLL_MAX_LATENCY_P99=500ms: must be milliseconds greater than 0"}},
		{"latency zero", analysis("MESHROLL_MAX_LATENCY_P99=0"), []string{"MESHROLL_MAX_LATENCY_P99=0: must be milliseconds"}},
		{"min requests negative", analysis("MESHROLL_MIN_REQUESTS=-1"), []string{"MESHROLL_MIN_REQUESTS=-1: must be a request count"}},
		{"failure threshold zero", analysis("MESHROLL_FAILURE_THRESHOLD=0"), []string{"MESHROLL_FAILURE_THRESHOLD=0: must be a whole number"}},
		{"failure threshold fraction", analysis("MESHROLL_FAILURE_THRESHOLD=1.5"), []string{"MESHROLL_FAILURE_THRESHOLD=1.5: must be a whole number"}},
		{"interval below a second", analysis("MESHROLL_ANALYSIS_INTERVAL=500ms"), []string{"MESHROLL_ANALYSIS_INTERVAL=500ms: must be at least 1s"}},
		{"hold shorter than the interval", analysis("MESHROLL_STEP_DURATION=10s"),
			[]string{"MESHROLL_STEP_DURATION=10s: shorter than MESHROLL_ANALYSIS_INTERVAL=30s"}},
		{"no hold with analysis", analysis("MESHROLL_STEP_DURATION=0"), []string{"MESHROLL_STEP_DURATION=0: with metric analysis each step must be held"}},
		{"a reporter twice", analysis("MESHROLL_REPORTER=waypoint|waypoint"), []string{"MESHROLL_REPORTER=waypoint|waypoint: use destination"}},
		{"unknown reporter", analysis("MESHROLL_REPORTER=client"), []string{"MESHROLL_REPORTER=client: use destination (sidecars), waypoint (ambient mode's waypoints), source"}},
		{"workloads missing", with("MESHROLL_PROMETHEUS_URL=http://p:9090"),
			[]string{"MESHROLL_CANARY_WORKLOAD is required", "MESHROLL_STABLE_WORKLOAD is required"}},
		{"same workloads", analysis("MESHROLL_STABLE_WORKLOAD=reviews-v2"), []string{"MESHROLL_CANARY_WORKLOAD=reviews-v2: same as the stable workload"}},
		{"bad header line", analysis("MESHROLL_PROMETHEUS_HEADERS=X-Scope-OrgID tenant"),
			[]string{"MESHROLL_PROMETHEUS_HEADERS: line 1 is not \"Name: value\""}},
		{"insecure not a boolean", analysis("MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY=yes please"),
			[]string{`MESHROLL_PROMETHEUS_INSECURE_SKIP_VERIFY="yes please": not a boolean`}},
		{"token and basic auth", analysis("MESHROLL_PROMETHEUS_TOKEN=t0ken-value", "MESHROLL_PROMETHEUS_USERNAME=ops"),
			[]string{"MESHROLL_PROMETHEUS_TOKEN is set together with MESHROLL_PROMETHEUS_USERNAME or MESHROLL_PROMETHEUS_PASSWORD: set either a bearer token or a username and password for Prometheus, not both"}},
		{"password without a username", analysis("MESHROLL_PROMETHEUS_PASSWORD=pa55word"),
			[]string{"MESHROLL_PROMETHEUS_USERNAME is required: MESHROLL_PROMETHEUS_PASSWORD is set, and basic auth needs a username too"}},
		{"header name not a token", analysis("MESHROLL_PROMETHEUS_HEADERS=X-Org: a\nX(Tenant): b"),
			[]string{`MESHROLL_PROMETHEUS_HEADERS: line 2: "X(Tenant)" is not a valid HTTP header name; use letters, digits and '-'`}},
		{"header value with a carriage return", analysis("MESHROLL_PROMETHEUS_HEADERS=X-Org: a\rb"),
			[]string{"MESHROLL_PROMETHEUS_HEADERS: line 1: the value of X-Org holds a carriage return or NUL; remove it"}},
		{"Authorization header beside a token", analysis("MESHROLL_PROMETHEUS_TOKEN=t0ken-value", "MESHROLL_PROMETHEUS_HEADERS=authorization: Bearer other"),
			[]string{"MESHROLL_PROMETHEUS_HEADERS: sets authorization, which conflicts with MESHROLL_PROMETHEUS_TOKEN or MESHROLL_PROMETHEUS_USERNAME; set the credentials one way only"}},
		{"custom checks not a list", analysis("MESHROLL_CHECKS=name: x"), []string{"MESHROLL_CHECKS: the checks must be a list of {name, query, min, max}"}},
		{"custom check without a bound", analysis("MESHROLL_CHECKS=[{name: x, query: vector(1)}]"),
			[]string{"MESHROLL_CHECKS: check 1 (x): set min, max or both"}},
		{"on inconclusive leave", with("MESHROLL_ON_INCONCLUSIVE=leave"), []string{"MESHROLL_ON_INCONCLUSIVE=leave: use rollback (all traffic back to stable) or hold"}},
		{"on cancel hold", with("MESHROLL_ON_CANCEL=hold"), []string{"MESHROLL_ON_CANCEL=hold: use rollback (all traffic back to stable) or leave"}},
		{"stable deployment not a name", with("MESHROLL_STABLE_DEPLOYMENT=Reviews_V1"), []string{"MESHROLL_STABLE_DEPLOYMENT=Reviews_V1: not a valid Deployment name"}},
		{"unknown variable far from any name", with("MESHROLL_COLOUR=blue"), []string{"MESHROLL_COLOUR is not a meshroll variable: remove it, or fix the name"}},

		// everything at once
		{"several problems at once",
			[]string{"MESHROLL_MODE=phase", "MESHROLL_WEIGHT=150", "MESHROLL_STABLE_SUBSET=v1", "MESHROLL_CANARY_SUBSET=v1",
				"MESHROLL_STEP_DURATION=x", "MESHROLL_TIMEOUT=0", "MESHROLL_STEPS=1,2", "MESHROLL_STAGES=3"},
			[]string{"MESHROLL_VIRTUAL_SERVICE is required", "MESHROLL_CANARY_SUBSET=v1: same as", "MESHROLL_WEIGHT=150: must be",
				"MESHROLL_STEPS=1,2: only used with", "MESHROLL_STEP_DURATION=x: not a Go duration", "MESHROLL_TIMEOUT=0: must be greater",
				"MESHROLL_STAGES is not a meshroll variable"}},
		{"unknown mode still checks the syntax of weight and steps",
			with("MESHROLL_MODE=canary", "MESHROLL_WEIGHT=abc", "MESHROLL_STEPS=9,8"),
			[]string{"MESHROLL_MODE=canary", "MESHROLL_WEIGHT=abc: must be", "MESHROLL_STEPS=9,8: 8 comes after 9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Load(tt.environ)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load error = %v, want one matching ErrInvalid", err)
			}
			if diff := cmp.Diff(Config{}, got); diff != "" {
				t.Errorf("Load returned a Config with an error (-want +got):\n%s", diff)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q; got:\n%s", w, msg)
				}
			}
			// One problem per line, each naming its variable first.
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(strings.ToUpper(line), "MESHROLL_") {
					t.Errorf("problem does not start with the variable name: %q", line)
				}
			}
		})
	}
}

// TestLoadMessages pins whole messages, and that several problems come back as
// separate errors, each matching ErrInvalid, in a stable order.
func TestLoadMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{
			name:    "weight out of range",
			environ: with("MESHROLL_MODE=phase", "MESHROLL_WEIGHT=150"),
			want:    []string{"MESHROLL_WEIGHT=150: must be an integer from 0 to 100"},
		},
		{
			name: "several problems in variable order, unknown names last and sorted",
			environ: []string{"MESHROLL_ZZZ=1", "MESHROLL_MODE=phase", "MESHROLL_STABLE_SUBSET=v1", "MESHROLL_CANARY_SUBSET=v1",
				"MESHROLL_TIMEOUT=0", "MESHROLL_AAA=1"},
			want: []string{
				"MESHROLL_VIRTUAL_SERVICE is required: set it to the name of the VirtualService to steer, e.g. reviews, or set MESHROLL_HTTP_ROUTE to steer a Gateway API HTTPRoute instead",
				"MESHROLL_CANARY_SUBSET=v1: same as MESHROLL_STABLE_SUBSET; the canary subset must differ from the stable one",
				"MESHROLL_WEIGHT is required: MESHROLL_MODE=phase needs the canary weight, an integer from 0 to 100",
				"MESHROLL_TIMEOUT=0: must be greater than 0; use a duration such as 30m, or leave it empty for no deadline",
				"MESHROLL_AAA is not a meshroll variable: remove it, or fix the name (see the variables in README.md)",
				"MESHROLL_ZZZ is not a meshroll variable: remove it, or fix the name (see the variables in README.md)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(tt.environ)
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("Load error = %#v, want an errors.Join", err)
			}
			var got []string
			for _, e := range joined.Unwrap() {
				if !errors.Is(e, ErrInvalid) {
					t.Errorf("%q does not match ErrInvalid", e)
				}
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// A misspelt secret must not end up in a CI log.
func TestUnknownVariableValueNotEchoed(t *testing.T) {
	t.Parallel()
	_, err := Load(with("MESHROLL_PROMETHEUS_PASSWROD=hunter2"))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Load error = %v, want ErrInvalid", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error echoes the value of an unknown variable: %v", err)
	}
	if !strings.Contains(err.Error(), "did you mean MESHROLL_PROMETHEUS_PASSWORD?") {
		t.Errorf("error lacks the suggestion: %v", err)
	}
}

// The accepted names: the input struct's tags plus reserved, without overlap.
// When this count changes, the README's variable table must change too.
func TestKnownNames(t *testing.T) {
	t.Parallel()
	if got, want := len(known)-len(reserved), 56; got != want {
		t.Errorf("%d MESHROLL_ inputs, want %d (update README.md's table when this changes)", got, want)
	}
	seen := map[string]bool{}
	for _, name := range known {
		if !strings.HasPrefix(name, prefix) {
			t.Errorf("%s lacks the %s prefix", name, prefix)
		}
		if seen[name] {
			t.Errorf("%s is listed twice (an input and reserved?)", name)
		}
		seen[name] = true
	}
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, want string }{
		{"MESHROLL_WIEGHT", "MESHROLL_WEIGHT"},
		{"MESHROLL_STEP", "MESHROLL_STEPS"},
		{"MESHROLL_VIRTUALSERVICE", "MESHROLL_VIRTUAL_SERVICE"},
		{"Meshroll_Dry_Run", "MESHROLL_DRY_RUN"},
		{"MESHROLL_KUBECONTEXT", "MESHROLL_KUBE_CONTEXT"},
		{"MESHROLL_NAMESPACES", "MESHROLL_NAMESPACE"},
		{"MESHROLL_COLOUR", ""},
		{"MESHROLL_", ""},
		{"MESHROLL_C", "MESHROLL_CI"},
		{"MESHROLL_" + strings.Repeat("X", 1000), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, suggest(tt.name)); diff != "" {
				t.Errorf("suggest(%q) (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

// FuzzLoad: whatever MESHROLL_WEIGHT and MESHROLL_STEPS say, in any mode, Load
// never panics, every error matches ErrInvalid, and what it accepts is within
// the contract.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{"", " ", "0", "100", "101", "-1", "+5", "-0", "1e2", "0x10", "2.5", " 7 ", "٣",
		"10,25,50,100", "50,25", "10,10", "10,,20", ",", "0,100", "99999999999999999999", "a\nb", "\xff"} {
		f.Add(s, s)
		f.Add(s, "10,25,50,100")
		f.Add("50", s)
	}
	modes := []string{"", "phase", "progress", "promote", "rollback", "status", "canary"}
	f.Fuzz(func(t *testing.T, weight, steps string) {
		for _, mode := range modes {
			c, err := Load(with("MESHROLL_MODE="+mode, "MESHROLL_WEIGHT="+weight, "MESHROLL_STEPS="+steps))
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("mode %q: error does not match ErrInvalid: %v", mode, err)
				}
				for _, line := range strings.Split(err.Error(), "\n") {
					if !strings.HasPrefix(line, "MESHROLL_") {
						t.Fatalf("mode %q: problem does not start with its variable: %q", mode, line)
					}
				}
				continue
			}
			if c.Weight < 0 || c.Weight > 100 {
				t.Fatalf("mode %q: weight %d accepted from %q", mode, c.Weight, weight)
			}
			if c.Mode != ModePhase && c.Weight != 0 {
				t.Fatalf("mode %q: weight %d set outside phase", mode, c.Weight)
			}
			if c.Mode == ModeProgress && len(c.Steps) == 0 {
				t.Fatalf("mode %q: progress without steps accepted from %q", mode, steps)
			}
			if c.Mode != ModeProgress && c.Steps != nil {
				t.Fatalf("mode %q: steps %v set outside progress", mode, c.Steps)
			}
			for i, s := range c.Steps {
				if s < 0 || s > 100 || (i > 0 && s <= c.Steps[i-1]) {
					t.Fatalf("mode %q: steps %v accepted from %q", mode, c.Steps, steps)
				}
			}
		}
	})
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	cfg, err := Load(analysis("MESHROLL_PROMETHEUS_TOKEN=tok-123456", "MESHROLL_PROMETHEUS_HEADERS=X-Scope-OrgID: tenant-secret\nX-Empty:",
		"MESHROLL_KUBECONFIG=apiVersion: v1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"apiVersion: v1\n", "tok-123456", "tenant-secret"}
	if diff := cmp.Diff(want, cfg.Secrets()); diff != "" {
		t.Errorf("Secrets (-want +got):\n%s", diff)
	}
	// base64 kubeconfig contents: both forms are secret.
	cfg, err = Load(with("MESHROLL_KUBECONFIG=YXBpVmVyc2lvbjogdjEKdG9rZW46IGFiYwo="))
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"YXBpVmVyc2lvbjogdjEKdG9rZW46IGFiYwo=", "apiVersion: v1\ntoken: abc\n"}
	if diff := cmp.Diff(want, cfg.Secrets()); diff != "" {
		t.Errorf("Secrets of base64 contents (-want +got):\n%s", diff)
	}
}
