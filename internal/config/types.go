package config

import (
	"encoding/base64"
	"slices"
	"strings"
	"time"
)

// Mode is what one run does.
type Mode string

// The modes of MESHROLL_MODE.
const (
	ModePhase    Mode = "phase"    // one step to MESHROLL_WEIGHT
	ModeProgress Mode = "progress" // every step in MESHROLL_STEPS
	ModePromote  Mode = "promote"  // all traffic to the canary
	ModeRollback Mode = "rollback" // all traffic to stable
	ModeStatus   Mode = "status"   // read-only
	ModeResume   Mode = "resume"   // a progression whose runner died, from the step it recorded
)

// modes is the order in which the allowed values are listed in messages.
var modes = []Mode{ModePhase, ModeProgress, ModePromote, ModeRollback, ModeStatus, ModeResume}

// Modes returns the values MESHROLL_MODE accepts, in the order messages list them.
func Modes() []Mode { return slices.Clone(modes) }

// Config is the validated input of one run.
type Config struct {
	Mode           Mode
	Namespace      string // "" = take the kubeconfig context's namespace (resolved elsewhere)
	VirtualService string // the routing object is a VirtualService (exactly one of the two)
	HTTPRoute      string // or a Gateway API HTTPRoute
	Route          string // "" = choose automatically (elsewhere)
	StableSubset   string
	CanarySubset   string
	StableService  string // host-level split: the stable version's Service ("" = by subset only)
	CanaryService  string
	// Match holds the A/B route's conditions (MESHROLL_MATCH) as Istio HTTPMatchRequest JSON
	// objects; empty: no A/B stage.
	Match []map[string]any
	// MirrorPercent is the share of requests a mirror stage shadows to the canary; 0: none.
	MirrorPercent    float64
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
	// Analysis configures the metric checks; Analysis.Enabled() is false without a Prometheus
	// URL, and then only Interval is set, and only with webhooks: rollout webhooks judge the
	// windows of a hold on their own, and manual gates are polled every interval.
	Analysis       Analysis
	OnInconclusive Action // what an inconclusive step does with the traffic: rollback or hold
	OnCancel       Action // what a cancelled run does with the traffic: rollback or leave
	// LeaseDuration is how long the run's lock outlives its last renewal (it is renewed
	// every third of it): a dead run's lock is taken over after that.
	LeaseDuration time.Duration
	// ScaleDown scales the Deployment left without traffic to 0 once the run ends: the old
	// stable one after a promotion, the canary one after a rollback, ScaleDownDelay later
	// (connections drain). Both Deployments are named when it is on.
	ScaleDown      bool
	ScaleDownDelay time.Duration
	// Prune makes a promotion also remove from the route the destinations it leaves at
	// weight 0 (the old stable version, older ones), in the same write (MESHROLL_PRUNE).
	Prune bool
	// Webhooks are MESHROLL_WEBHOOKS in the order given, each validated, Timeout filled in
	// (DefaultWebhookTimeout when the entry sets none) and Type filled in (rollout when the
	// entry sets none, as Flagger does).
	Webhooks []Webhook
	// Load is the built-in load generator (MESHROLL_LOAD_*); Load.URL is "" when it is off.
	Load LoadGenerator
	// VerifySecurity (MESHROLL_VERIFY_SECURITY) makes the security checks gates: the canary's
	// effective mTLS mode must be STRICT and every policy protecting stable must protect the
	// canary too (exit 2 otherwise; without it, a parity gap is only a warning), and, with
	// metric analysis, the canary's requests must all be mutual TLS (Analysis.MTLS).
	VerifySecurity bool
	// IstioNamespace is Istio's root namespace (MESHROLL_ISTIO_NAMESPACE), where mesh-wide
	// policies live.
	IstioNamespace string
	// RunLink is the CI run's address (GitHub's run, GitLab's job, Jenkins' build), "" when
	// the run is not in a known CI system.
	RunLink string
}

// Progressive says whether the mode moves through MESHROLL_STEPS.
func (m Mode) Progressive() bool { return m == ModeProgress || m == ModeResume }

// WebhookType says when a webhook is called (Flagger's types, so that existing hooks and
// Flagger's load tester work unchanged).
type WebhookType string

// The values of a webhook's type in MESHROLL_WEBHOOKS.
const (
	WebhookPreRollout       WebhookType = "pre-rollout"       // before any traffic moves; failure: canary failed, nothing moved
	WebhookRollout          WebhookType = "rollout"           // every analysis window; failure: a failed check
	WebhookConfirmRollout   WebhookType = "confirm-rollout"   // a manual gate before the first step: polled until 2xx
	WebhookConfirmPromotion WebhookType = "confirm-promotion" // a manual gate before the promotion: polled until 2xx
	WebhookPostRollout      WebhookType = "post-rollout"      // a notification at the end; its failure changes nothing
	WebhookRollback         WebhookType = "rollback"          // a notification of a rollback; its failure changes nothing
)

// DefaultWebhookTimeout bounds a call whose webhook sets no timeout: Flagger's default, so
// that a hook written for Flagger gets the time it had there.
const DefaultWebhookTimeout = 10 * time.Second

// Webhook is one entry of MESHROLL_WEBHOOKS, Flagger's fields.
type Webhook struct {
	Name     string
	Type     WebhookType
	URL      string
	Timeout  time.Duration
	Metadata map[string]string // sent in the request body
	Headers  map[string]string // sent as HTTP headers; values are secrets
}

// LoadGenerator is the built-in load generator (MESHROLL_LOAD_*): a constant rate of
// requests to URL during every hold, for services with too little traffic to judge. Empty
// URL: none.
type LoadGenerator struct {
	URL     string
	RPS     int
	Headers map[string]string // values are secrets
}

// Action is what happens to the traffic when a run cannot finish normally.
type Action string

// The values of MESHROLL_ON_INCONCLUSIVE and MESHROLL_ON_CANCEL.
const (
	ActionRollback Action = "rollback" // all traffic back to stable
	ActionHold     Action = "hold"     // leave the weights where they are (MESHROLL_ON_INCONCLUSIVE)
	ActionLeave    Action = "leave"    // leave the weights where they are (MESHROLL_ON_CANCEL)
)

// Analysis is the metric analysis part of the input, every value validated: the analysis
// package builds its Prometheus client and queries from it and checks nothing again, except
// what only I/O can tell (whether CAFile holds a certificate).
type Analysis struct {
	PrometheusURL string
	// PrometheusService is MESHROLL_PROMETHEUS_SERVICE: a Prometheus inside the cluster,
	// reached through the Kubernetes API server's service proxy with the cluster's credentials.
	// Exactly one of it and PrometheusURL is set when the analysis is on; with it, Token,
	// Username, Password, CAFile and InsecureSkipVerify are empty.
	PrometheusService  ServicePort
	Token              string // secret
	Username           string
	Password           string // secret
	CAFile             string
	InsecureSkipVerify bool
	Headers            map[string]string // values are secret
	Interval           time.Duration
	MinSuccessRate     float64 // percent; 0: no such guardrail
	MaxLatencyP99      float64 // milliseconds; 0: no such guardrail
	MinRequests        float64
	FailureThreshold   int
	Checks             []Check // MESHROLL_CHECKS, parsed; nil when there are none
	CanaryWorkload     string
	StableWorkload     string
	Reporter           string // destination or source
	// Confidence (percent) of the sequential test of canary against stable: a canary no
	// worse than stable is rolled back in at most 100−Confidence percent of runs.
	Confidence float64
	// MinStepDuration, when set, lets a step end this early once the canary is shown close
	// enough to stable: worse by at most MarginFactor times, or MarginPoints percentage
	// points, whichever is larger.
	MinStepDuration time.Duration
	MarginFactor    float64
	MarginPoints    float64
	// MTLS adds the check "mtls": every request the canary served in a window came over
	// mutual TLS (connection_security_policy="mutual_tls"). Set by MESHROLL_VERIFY_SECURITY.
	MTLS bool
}

// Enabled reports whether the steps are gated by metric analysis.
func (a Analysis) Enabled() bool { return a.PrometheusURL != "" || a.PrometheusService.Name != "" }

// ServicePort names a port of a Kubernetes Service, as MESHROLL_PROMETHEUS_SERVICE writes it:
// namespace/name:port.
type ServicePort struct {
	Namespace, Name string
	// Port is the Service's port number (e.g. "9090") or name (e.g. "http"); "" stands for the
	// Service's only port.
	Port string
}

// String writes the port as MESHROLL_PROMETHEUS_SERVICE does: istio-system/prometheus:9090.
func (s ServicePort) String() string {
	if s.Port == "" {
		return s.Namespace + "/" + s.Name
	}
	return s.Namespace + "/" + s.Name + ":" + s.Port
}

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

// Secrets are the values that must never be printed or written anywhere: the kubeconfig
// contents, the Prometheus credentials (and the Basic header made of them), the values of
// every header meshroll sends (Prometheus's, the webhooks', the load's; see headerSecrets),
// and the credentials inside the Prometheus URL, the webhooks' URLs, the load's URL and the
// kubeconfig's URLs, each in the forms a URL is printed in (see urlSecrets), and what looks
// like a token in the path of a webhook's or the load's URL (see pathTokens). They are redacted
// once, by app's writer: no other package keeps a list of its own.
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
	if c.Analysis.Password != "" {
		out = append(out, basicCredentials(c.Analysis.Username, c.Analysis.Password)) // as a proxy may echo it
	}
	out = append(out, headerSecrets(c.Analysis.Headers)...)
	for _, w := range c.Webhooks {
		out = append(out, headerSecrets(w.Headers)...)
	}
	out = append(out, headerSecrets(c.Load.Headers)...)
	for _, k := range kubeconfig {
		out = append(out, kubeconfigURLSecrets(k)...)
	}
	out = append(out, urlSecrets(c.Analysis.PrometheusURL)...)
	for _, w := range c.Webhooks {
		out = append(out, urlSecrets(w.URL)...)
		out = append(out, pathTokens(w.URL)...)
	}
	out = append(out, pathTokens(c.Load.URL)...)
	return dedupe(append(out, urlSecrets(c.Load.URL)...))
}

// The kinds of routing object meshroll steers.
const (
	KindVirtualService = "VirtualService"
	KindHTTPRoute      = "HTTPRoute"
)

// RouteObject names the routing object the run steers: its kind and name.
func (c Config) RouteObject() (kind, name string) {
	if c.HTTPRoute != "" {
		return KindHTTPRoute, c.HTTPRoute
	}
	return KindVirtualService, c.VirtualService
}

// StableName names the stable version in messages: its subset, else its Service.
func (c Config) StableName() string { return VersionName(c.StableSubset, c.StableService) }

// CanaryName names the canary version in messages: its subset, else its Service.
func (c Config) CanaryName() string { return VersionName(c.CanarySubset, c.CanaryService) }

// VersionName names a version in messages: its subset, else its Service.
func VersionName(subset, service string) string {
	if subset != "" {
		return subset
	}
	return service
}
