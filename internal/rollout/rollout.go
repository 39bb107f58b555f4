// Package rollout is the step machine behind every mode: it checks, moves traffic step by
// step, holds, and returns traffic to stable when a progression cannot finish.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Traffic is what the step machine needs from a traffic backend.
type Traffic interface {
	// Read gets the routing object; Preflight also checks, without writing, that the run can
	// steer it. The State they return plans changes on paper.
	Read(ctx context.Context) (traffic.State, error)
	Preflight(ctx context.Context, checks traffic.Checks) (traffic.State, error)
	// Apply makes the steered route do d, in one guarded write.
	Apply(ctx context.Context, d traffic.Desired) (traffic.Applied, error)
}

// Analysis is what the step machine needs from metric analysis.
type Analysis interface {
	// Preflight sends every query once before any traffic moves.
	Preflight(ctx context.Context) error
	// Evaluate judges the canary over the window that ends at at.
	Evaluate(ctx context.Context, at time.Time) (analysis.Window, error)
}

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
	// Error is why the run ended during this step's hold (a failed check, a cancel, ...).
	Error string `json:"error,omitempty"`
}

// Result is the whole story of a run, for reporters.
type Result struct {
	Mode           config.Mode           `json:"mode"`
	Outcome        Outcome               `json:"result"`
	Namespace      string                `json:"namespace"`
	VirtualService string                `json:"virtualService"`
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
	Err            error                 `json:"-"`
}

// StableName names the stable version in messages: its subset, else its Service.
func (r Result) StableName() string { return config.VersionName(r.StableSubset, r.StableService) }

// CanaryName names the canary version in messages: its subset, else its Service.
func (r Result) CanaryName() string { return config.VersionName(r.CanarySubset, r.CanaryService) }

// Log receives a run as it happens: lines, and the bounds of each step so that a CI system
// can fold a step's lines into a section.
type Log interface {
	Printf(format string, args ...any)
	StepStarted(s Step) // before the step's write; s.After is empty
	StepDone(s Step)    // after the write and the hold, or the failure that ended the step
}

// WriterLog is a Log that writes plain lines to w.
func WriterLog(w io.Writer) Log { return writerLog{w} }

type writerLog struct{ w io.Writer }

func (l writerLog) Printf(format string, args ...any) { fmt.Fprintf(l.w, format+"\n", args...) }
func (writerLog) StepStarted(Step)                    {}
func (writerLog) StepDone(Step)                       {}

// Runner runs one mode against one VirtualService.
type Runner struct {
	Traffic Traffic
	// Analysis gates the held steps; nil means timed steps only.
	Analysis Analysis
	Log      Log
	Now      func() time.Time
	// Hold waits for d or until ctx is done; tests replace it.
	Hold func(ctx context.Context, d time.Duration) error
	// RollbackTimeout bounds the automatic return to stable after a failure;
	// CancelTimeout after a cancel, when the CI system is about to kill the process.
	RollbackTimeout time.Duration
	CancelTimeout   time.Duration
	// DriftInterval is how often a hold checks that the route still does what the run left
	// it doing; 0 checks only at the hold's end.
	DriftInterval time.Duration
	// WriteTimeout bounds one step's write: conflicts and an API server that does not answer
	// are retried until then, and then the run fails and returns traffic to stable.
	WriteTimeout time.Duration
}

// NewRunner returns a Runner with real time. a may be nil (no metric analysis).
func NewRunner(t Traffic, a Analysis, log Log) *Runner {
	return &Runner{Traffic: t, Analysis: a, Log: log, Now: time.Now, Hold: sleep, RollbackTimeout: 30 * time.Second, CancelTimeout: 5 * time.Second, DriftInterval: 5 * time.Second, WriteTimeout: 30 * time.Second}
}

func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Run runs cfg.Mode. It never panics on a cluster error: every way a run can end is an
// Outcome in the Result, with Err set for invalid, failed and cancelled runs.
func (r *Runner) Run(ctx context.Context, cfg config.Config) Result {
	res := Result{
		Mode: cfg.Mode, Namespace: cfg.Namespace, VirtualService: cfg.VirtualService,
		StableSubset: cfg.StableSubset, CanarySubset: cfg.CanarySubset, StableService: cfg.StableService, CanaryService: cfg.CanaryService,
		StartedAt: r.Now(),
		Analysis:  r.Analysis != nil && analyzed(cfg.Mode),
	}
	runCtx := ctx
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("MESHROLL_TIMEOUT=%s reached", cfg.Timeout))
		defer cancel()
	}
	r.run(runCtx, ctx, cfg, &res)
	res.FinishedAt = r.Now()
	if res.Err != nil {
		res.Reason = res.Err.Error()
	}
	return res
}

func (r *Runner) run(ctx, parent context.Context, cfg config.Config, res *Result) {
	if cfg.Mode == config.ModeStatus {
		state, err := r.Traffic.Read(ctx)
		if err != nil {
			r.fail(ctx, parent, res, err)
			return
		}
		now := state.Routing()
		res.Route, res.Final, res.Outcome = now.Route, now.Destinations, Status
		r.logf("%s/%s route %s: %s", now.Namespace, now.Name, now.Route, traffic.DescribeWeights(now.Destinations))
		return
	}

	plan := NewPlan(cfg, res.Analysis)
	if cfg.Mode == config.ModeProgress {
		// A progression run again goes on from the canary's weight (a failed read is
		// reported by the preflight below).
		if state, err := r.Traffic.Read(ctx); err == nil {
			plan = r.skipPassed(plan, state.Routing().CanaryWeight())
		}
	}
	checks := traffic.Checks{Canary: true, CanaryDeployment: cfg.CanaryDeployment, StableDeployment: cfg.StableDeployment, ReadyTimeout: cfg.ReadyTimeout, Write: !cfg.DryRun}
	checks.StableServes, checks.CanaryServes = plan.serves()
	if cfg.Mode == config.ModeRollback {
		// Returning to stable must work while the canary is broken; the stable version must
		// be able to take the traffic.
		checks = traffic.Checks{Write: !cfg.DryRun, StableDeployment: cfg.StableDeployment, ReadyTimeout: cfg.ReadyTimeout, StableServes: true}
	}
	if !res.Analysis && cfg.Mode == config.ModeProgress {
		note := "nothing stops a failing canary between steps"
		if plan.held() {
			note = "steps are timed only and " + note
		}
		r.logf("NOTE: no metric analysis (MESHROLL_PROMETHEUS_URL is empty): %s", note)
	}
	r.logf("meshroll %s: VirtualService %s/%s, stable %s, canary %s, canary weights %s%s",
		cfg.Mode, cfg.Namespace, cfg.VirtualService, cfg.StableName(), cfg.CanaryName(), joinInts(stepWeights(cfg)), holdNote(cfg))
	if cfg.DryRun || plan.shaped() {
		r.logf("plan:\n%s", plan.Describe())
	}
	state, err := r.Traffic.Preflight(ctx, checks)
	if err != nil {
		r.fail(ctx, parent, res, err)
		return
	}
	now := state.Routing()
	res.Route, res.Final = now.Route, now.Destinations
	if res.Analysis {
		if err := r.Analysis.Preflight(ctx); err != nil {
			r.fail(ctx, parent, res, analysisPreflightError(err))
			return
		}
	}
	if now.Chosen != "" {
		r.logf("NOTE: %s", now.Chosen)
	}
	r.logf("preflight passed: route %s now %s", now.Route, traffic.DescribeWeights(now.Destinations))
	if cfg.Mode == config.ModeProgress {
		plan = r.skipPassed(plan, now.CanaryWeight()) // in case the weight moved since the first read
	}
	if len(plan) == 0 {
		r.logf("nothing to do: the canary already has %d%%, as much as the progression's last step or more", now.CanaryWeight())
		res.Outcome = Unchanged
		return
	}

	// Plan every stage on paper first, so that a stage that cannot be taken (a canary weight
	// larger than what other destinations leave) stops the run before the first write.
	changes := make([]traffic.Change, len(plan))
	for i, stage := range plan {
		if changes[i], err = state.Plan(stage.Desired); err != nil {
			r.fail(ctx, parent, res, err)
			return
		}
		state = changes[i].Next
	}
	if cfg.DryRun {
		r.dryRun(plan, changes, now.ResourceVersion, res)
		return
	}

	changed := false
	judge := &judge{threshold: cfg.Analysis.FailureThreshold}
	last := now // what the route does as this run left it
	for _, stage := range plan {
		step := Step{Index: stage.Index, Of: stage.Of, Action: ActionSet, Kind: stage.Kind, CanaryWeight: stage.Desired.CanaryWeight, StartedAt: r.Now()}
		r.Log.StepStarted(step)
		d := stage.Desired
		d.Expect = &last
		applied, err := r.write(ctx, d)
		if err == nil {
			last = applied.After
			step.Before, step.After, step.Changed = applied.Before.Destinations, applied.After.Destinations, applied.Changed
			step.CanaryWeight = applied.After.CanaryWeight()
			res.Final, changed = applied.After.Destinations, changed || applied.Changed
			r.logStep(step, cfg.VirtualService, applied)
			if stage.Hold > 0 {
				step.HeldUntil = step.StartedAt.Add(stage.Hold)
				if stage.Judged {
					r.logf("step %d/%d: holding %s, judging the canary every %s", step.Index, step.Of, stage.Hold, cfg.Analysis.Interval)
					err = r.analyze(ctx, cfg, &step, stage.Hold, judge, last)
				} else {
					r.logf("step %d/%d: holding %s", step.Index, step.Of, stage.Hold)
					err = r.hold(ctx, stage.Hold, last)
				}
			}
			if err != nil {
				step.Error = explain(ctx, parent, err).Error()
			}
			res.Steps = append(res.Steps, step) // after the hold: with its windows
		}
		r.Log.StepDone(step)
		if err != nil {
			r.abort(ctx, parent, cfg, res, err)
			return
		}
	}
	switch final := plan[len(plan)-1].Desired.CanaryWeight; {
	case !changed:
		res.Outcome = Unchanged
	case cfg.Mode == config.ModeRollback:
		res.Outcome = RolledBack
	case final == 100:
		res.Outcome = Promoted
	default:
		res.Outcome = WeightSet
	}
}

// write applies one step within WriteTimeout (none when it is 0).
func (r *Runner) write(ctx context.Context, d traffic.Desired) (traffic.Applied, error) {
	if r.WriteTimeout <= 0 {
		return r.Traffic.Apply(ctx, d)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, r.WriteTimeout, fmt.Errorf("no write to the route landed within %s", r.WriteTimeout))
	defer cancel()
	return r.Traffic.Apply(ctx, d)
}

// skipPassed drops the weighted steps a progression has passed (see Plan.from), saying so.
func (r *Runner) skipPassed(plan Plan, current int) Plan {
	left, skipped := plan.from(current)
	for _, st := range skipped {
		r.logf("skipping %s: the canary already has %d%% and a progression never lowers it", st.Describe(), current)
	}
	return left
}

// hold waits d, checking every DriftInterval, and at the end, that the route still does
// what the run left it doing (last).
func (r *Runner) hold(ctx context.Context, d time.Duration, last traffic.Routing) error {
	for d > 0 {
		chunk := d
		if r.DriftInterval > 0 {
			chunk = min(d, r.DriftInterval)
		}
		if err := r.Hold(ctx, chunk); err != nil {
			return err
		}
		d -= chunk
		if err := r.checkDrift(ctx, last); err != nil {
			return err
		}
	}
	return nil
}

// checkDrift reads the route and fails with traffic.ErrDrift when someone else changed it.
func (r *Runner) checkDrift(ctx context.Context, last traffic.Routing) error {
	state, err := r.Traffic.Read(ctx)
	if err != nil {
		return err
	}
	return traffic.Desired{Expect: &last}.CheckDrift(state.Routing())
}

// shaped says whether the plan has a stage other than weights (mirror, A/B).
func (p Plan) shaped() bool {
	for _, s := range p {
		if s.Kind != KindWeight || s.Desired.AB || s.Desired.MirrorPercent > 0 {
			return true
		}
	}
	return false
}

// held says whether any stage of the plan is held.
func (p Plan) held() bool {
	for _, s := range p {
		if s.Hold > 0 {
			return true
		}
	}
	return false
}

// dryRun logs the plan and every patch it would send, and records the planned steps.
func (r *Runner) dryRun(plan Plan, changes []traffic.Change, resourceVersion string, res *Result) {
	r.logf("dry run: nothing will be written")
	for i, stage := range plan {
		c := changes[i]
		step := Step{Index: stage.Index, Of: stage.Of, Action: ActionPlan, Kind: stage.Kind, CanaryWeight: c.After.CanaryWeight(),
			Before: c.Before.Destinations, After: c.After.Destinations, Changed: c.Changed, Patch: c.Patch, StartedAt: r.Now()}
		res.Steps = append(res.Steps, step)
		r.Log.StepStarted(step)
		r.logDryRun(step, c, resourceVersion)
		r.Log.StepDone(step)
		if c.Changed {
			// A later step's precondition is the version the previous write creates.
			resourceVersion = fmt.Sprintf("<resourceVersion after step %d>", stage.Index)
		}
	}
	res.Outcome, res.Final = DryRun, changes[len(changes)-1].After.Destinations
}

// fail ends a run before anything was written.
func (r *Runner) fail(ctx, parent context.Context, res *Result, err error) {
	res.Err = explain(ctx, parent, err)
	switch {
	case parent.Err() != nil:
		res.Outcome = Cancelled
	case ctx.Err() != nil:
		res.Outcome = Failed // MESHROLL_TIMEOUT
	case errors.Is(err, traffic.ErrPreflight), errors.Is(err, errAnalysisInput):
		res.Outcome = Invalid
	default:
		res.Outcome = Failed
	}
}

// explain replaces an error that only says a context ended ("context canceled", a client's
// "Patch ...: context deadline exceeded") with why it ended: the signal that cancelled the
// run ("cancelled by SIGTERM"), or MESHROLL_TIMEOUT. ctx is the run's context, parent the
// caller's; an error with its own cause is kept.
func explain(ctx, parent context.Context, err error) error {
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var cause error
	switch {
	case parent.Err() != nil:
		cause = context.Cause(parent)
	case ctx.Err() != nil:
		cause = context.Cause(ctx)
	default:
		return err // an inner deadline (a request's): the error says whose
	}
	if cause == context.Canceled {
		return errCancelled
	}
	return cause
}

// errCancelled is a cancel without a stated cause; it still matches context.Canceled.
var errCancelled = cancelled{}

type cancelled struct{}

func (cancelled) Error() string        { return "cancelled" }
func (cancelled) Is(target error) bool { return target == context.Canceled }

// abort ends a run that may have moved traffic: a progression (or a phase judged by metric
// analysis) returns it to stable, unless the input says to leave it for this kind of ending.
func (r *Runner) abort(ctx, parent context.Context, cfg config.Config, res *Result, err error) {
	r.fail(ctx, parent, res, err)
	var failed *checkFailed
	switch {
	case errors.As(err, &failed):
		res.Outcome, res.FailedCheck = CanaryFailed, failed.result.Check
	case errors.Is(err, errInconclusive):
		res.Outcome = Inconclusive
	case errors.Is(err, traffic.ErrDrift):
		// Someone else moved the route: leave it as they set it, never fight them.
		res.Outcome = Interrupted
		r.logf("%s: leaving the route as the other writer set it", res.Outcome)
		return
	case res.Outcome == Invalid:
		// The cluster changed under a running progression (say, a destination was added):
		// that is a runtime failure, not bad input.
		res.Outcome = Failed
	}
	if cfg.Mode != config.ModeProgress && !(cfg.Mode == config.ModePhase && res.Analysis) {
		return
	}
	timeout := r.RollbackTimeout
	switch {
	case res.Outcome == Inconclusive && cfg.OnInconclusive == config.ActionHold:
		r.logf("%s: leaving the weights as they are (MESHROLL_ON_INCONCLUSIVE=hold)", res.Outcome)
		return
	case res.Outcome == Cancelled && cfg.OnCancel == config.ActionLeave:
		r.logf("%s: leaving the weights as they are (MESHROLL_ON_CANCEL=leave)", res.Outcome)
		return
	case res.Outcome == Cancelled:
		timeout = r.CancelTimeout
	}
	r.logf("%s: returning all traffic to %s", res.Outcome, cfg.StableName())
	rollbackCtx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), timeout, fmt.Errorf("the rollback did not finish within %s", timeout))
	defer cancel()
	step := Step{Action: ActionRollback, StartedAt: r.Now()}
	r.Log.StepStarted(step)
	defer func() { r.Log.StepDone(step) }()
	applied, rbErr := r.Traffic.Apply(rollbackCtx, traffic.Desired{CanaryWeight: 0})
	if rbErr != nil {
		if rollbackCtx.Err() != nil && errors.Is(rbErr, context.DeadlineExceeded) {
			rbErr = context.Cause(rollbackCtx)
		}
		if res.Outcome != Cancelled { // a cancelled run exits 130 whatever happened after
			res.Outcome = Failed
		}
		res.Err = fmt.Errorf("%w; and the rollback to %s failed, so the canary may still receive traffic: %w", res.Err, cfg.StableName(), rbErr)
		r.logf("rollback failed: %v", rbErr)
		return
	}
	step.Before, step.After, step.Changed = applied.Before.Destinations, applied.After.Destinations, applied.Changed
	res.Steps = append(res.Steps, step)
	res.Final = applied.After.Destinations
	r.logf("rollback: %s %s", cfg.VirtualService, describe(applied))
}

// analyzed says whether metric analysis gates the mode: the modes that hold a partial
// weight. promote, rollback and status move straight to an end (or nowhere).
func analyzed(m config.Mode) bool { return m == config.ModeProgress || m == config.ModePhase }

func (r *Runner) logStep(s Step, vs string, applied traffic.Applied) {
	r.logf("step %d/%d: %s %s", s.Index, s.Of, vs, describe(applied))
	for _, w := range applied.Warnings {
		r.logf("warning: %s", w)
	}
}

func describe(applied traffic.Applied) string {
	if !applied.Changed {
		return traffic.DescribeWeights(applied.After.Destinations) + " (already in place, nothing written)"
	}
	return applied.Describe()
}

func (r *Runner) logDryRun(s Step, c traffic.Change, resourceVersion string) {
	if !c.Changed {
		r.logf("dry run step %d/%d: %s (already in place, nothing to write)", s.Index, s.Of, traffic.DescribeWeights(c.After.Destinations))
		return
	}
	patch, err := c.PatchJSON(resourceVersion)
	if err != nil {
		patch = []byte(err.Error())
	}
	r.logf("dry run step %d/%d: %s\n  patch: %s", s.Index, s.Of, c.Describe(), patch)
}

func (r *Runner) logf(format string, args ...any) {
	r.Log.Printf(format, args...)
}

func holdNote(cfg config.Config) string {
	if cfg.Mode != config.ModeProgress {
		return ""
	}
	return fmt.Sprintf(", holding each %s", cfg.StepDuration)
}

func joinInts(ws []int) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprint(w)
	}
	return strings.Join(parts, ",")
}
