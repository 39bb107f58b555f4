package rollout

import (
	"time"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Outcome is how a run ended; each outcome has one exit code.
type Outcome string

const (
	Promoted   Outcome = "promoted"    // the canary has all traffic
	WeightSet  Outcome = "weight-set"  // the canary has the asked weight (below 100)
	RolledBack Outcome = "rolled-back" // rollback mode moved all traffic to stable
	Unchanged  Outcome = "unchanged"   // every weight was already in place; nothing written
	Status     Outcome = "status"      // status mode: read only
	DryRun     Outcome = "dry-run"     // planned and printed; nothing written
	Invalid    Outcome = "invalid"     // bad input or a failed preflight; nothing written
	// Set by metric analysis: the canary was judged and traffic returned to stable.
	CanaryFailed Outcome = "canary-failed" // a check failed past its threshold
	Inconclusive Outcome = "inconclusive"  // not enough data to judge
	Failed       Outcome = "failed"        // runtime or infrastructure failure; traffic returned to stable where possible
	Interrupted  Outcome = "interrupted"   // another writer changed the route: the run stopped without writing
	Cancelled    Outcome = "cancelled"     // a signal stopped the run; traffic returned to stable where possible
)

// ExitCode is the process exit code of the contract in README.md.
func (o Outcome) ExitCode() int {
	switch o {
	case Invalid:
		return 2
	case CanaryFailed:
		return 3
	case Inconclusive:
		return 4
	case Failed, Interrupted:
		return 1
	case Cancelled:
		return 130
	}
	return 0
}

// Action says why a step wrote (or would write) weights.
type Action string

const (
	ActionSet      Action = "set"      // a step of the asked mode
	ActionPlan     Action = "plan"     // dry run: planned, not written
	ActionRollback Action = "rollback" // automatic return to stable after a failure or cancel
)

// Step is one entry of the timeline.
type Step struct {
	Index        int                   `json:"index"` // 1-based; 0 for an automatic rollback
	Of           int                   `json:"of"`
	Action       Action                `json:"action"`
	Kind         Kind                  `json:"kind,omitempty"` // what the stage did: weight, ab or mirror
	CanaryWeight int                   `json:"canaryWeight"`
	Before       []traffic.Destination `json:"before"`
	After        []traffic.Destination `json:"after"`
	Changed      bool                  `json:"changed"`
	Patch        []traffic.PatchOp     `json:"patch,omitempty"`
	StartedAt    time.Time             `json:"startedAt"`
	HeldUntil    time.Time             `json:"heldUntil,omitzero"`
	// Windows are the metric analysis windows judged while the step was held, oldest first.
	Windows []analysis.Window `json:"windows,omitempty"`
	// Load is what the built-in load generator saw during the hold; nil without one.
	Load *LoadStats `json:"load,omitempty"`
	// Error is why the run ended during this step's hold (a failed check, a cancel, ...).
	Error string `json:"error,omitempty"`
}

// Result is the whole story of a run, for reporters.
type Result struct {
	Mode           config.Mode           `json:"mode"`
	Outcome        Outcome               `json:"result"`
	Namespace      string                `json:"namespace"`
	VirtualService string                `json:"virtualService,omitempty"` // the routing object: a VirtualService
	HTTPRoute      string                `json:"httpRoute,omitempty"`      // or a Gateway API HTTPRoute
	Route          string                `json:"route,omitempty"`
	StableSubset   string                `json:"stableSubset,omitempty"`
	CanarySubset   string                `json:"canarySubset,omitempty"`
	StableService  string                `json:"stableService,omitempty"` // host-level split
	CanaryService  string                `json:"canaryService,omitempty"`
	StartedAt      time.Time             `json:"startedAt"`
	FinishedAt     time.Time             `json:"finishedAt"`
	Steps          []Step                `json:"steps"`
	Final          []traffic.Destination `json:"final,omitempty"` // weights at the end, as last read or written
	Reason         string                `json:"reason,omitempty"`
	FailedCheck    string                `json:"failedCheck,omitempty"` // the check that failed the canary
	Analysis       bool                  `json:"analysis"`              // metric analysis gated the steps
	// ScaleDown is what MESHROLL_SCALE_DOWN did after the run, nil when nothing was to be
	// scaled; its failure never changes the outcome.
	ScaleDown *ScaleDown `json:"scaleDown,omitempty"`
	// Webhooks are the webhook calls of the run in order, except the rollout webhooks, which
	// are checks of the windows they were called for; a manual gate shows the first refusal
	// of each webhook it waited for and the round that opened it.
	Webhooks []HookCall `json:"webhooks,omitempty"`
	// Warnings are what the preflight found worth saying that did not stop the run (a
	// security policy protecting stable but not the canary, without MESHROLL_VERIFY_SECURITY).
	Warnings []string `json:"warnings,omitempty"`
	Err      error    `json:"-"`
}

// Object names the routing object the run steered: its kind and name ("" when the input
// never named one).
func (r Result) Object() (kind, name string) {
	if r.HTTPRoute != "" {
		return config.KindHTTPRoute, r.HTTPRoute
	}
	return config.KindVirtualService, r.VirtualService
}

// StableName names the stable version in messages: its subset, else its Service.
func (r Result) StableName() string { return config.VersionName(r.StableSubset, r.StableService) }

// CanaryName names the canary version in messages: its subset, else its Service.
func (r Result) CanaryName() string { return config.VersionName(r.CanarySubset, r.CanaryService) }
