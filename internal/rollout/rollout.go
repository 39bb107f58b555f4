// Package rollout is the step machine behind every mode: it checks, moves traffic step by
// step, holds, and returns traffic to stable when a progression cannot finish.
package rollout

import (
	"context"
	"errors"
	"fmt"
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
	// Note records why on the routing object (a Kubernetes Event) without changing it.
	Note(ctx context.Context, why traffic.Why) error
}

// Analysis is what the step machine needs from metric analysis.
type Analysis interface {
	// Preflight sends every query once before any traffic moves.
	Preflight(ctx context.Context) error
	// Evaluate judges the canary over the window that ends at at.
	Evaluate(ctx context.Context, at time.Time) (analysis.Window, error)
	// Count reads both versions' counters at at and returns them with what each served
	// since prev (the zero Snapshot: since the counters started).
	Count(ctx context.Context, prev analysis.Snapshot, at time.Time) (analysis.Snapshot, analysis.Counts, error)
}

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
	// are retried until then, and then the run fails and returns traffic to stable. It bounds
	// each read during a hold too.
	WriteTimeout time.Duration
	// Lock, when set, is held while the run writes and keeps its Record; Holder names the
	// run in it (the CI run's address, else host and pid).
	Lock   Lock
	Holder string
	// Scaler, when set (MESHROLL_SCALE_DOWN=true), scales the Deployment the run left without
	// traffic to 0 once it ended, under the run's lock; nil: no scale-down.
	Scaler Scaler
	// Hooks calls the webhooks of MESHROLL_WEBHOOKS; Load sends MESHROLL_LOAD_URL's load
	// while steps hold; Security checks the canary's protection in the preflight. nil: none.
	Hooks    Hooks
	Load     LoadGenerator
	Security Security

	book *ledger // the record of the run in progress; nil without a Lock
}

// NewRunner returns a Runner with real time. a may be nil (no metric analysis).
func NewRunner(t Traffic, a Analysis, log Log) *Runner {
	return &Runner{Traffic: t, Analysis: a, Log: log, Now: time.Now, Hold: sleep, RollbackTimeout: 30 * time.Second, CancelTimeout: 5 * time.Second, DriftInterval: 5 * time.Second, WriteTimeout: 30 * time.Second}
}

// Run runs cfg.Mode. It never panics on a cluster error: every way a run can end is an
// Outcome in the Result, with Err set for invalid, failed and cancelled runs.
func (r *Runner) Run(ctx context.Context, cfg config.Config) Result {
	res := Result{
		Mode: cfg.Mode, Namespace: cfg.Namespace, VirtualService: cfg.VirtualService, HTTPRoute: cfg.HTTPRoute,
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
	r.notify(runCtx, &res)
	res.FinishedAt = r.Now()
	if res.Err != nil {
		res.Reason = res.Err.Error()
	}
	return res
}

func (r *Runner) run(ctx, parent context.Context, cfg config.Config, res *Result) {
	switch cfg.Mode {
	case config.ModeStatus:
		r.status(ctx, parent, cfg, res)
		return
	case config.ModeResume:
		r.resume(ctx, parent, cfg, res)
		return
	}
	plan := NewPlan(cfg, r.judging(res))
	var skipped Plan
	current := 0
	if cfg.Mode == config.ModeProgress {
		// A progression run again goes on from the canary's weight.
		state, err := r.readWithin(ctx)
		if err != nil {
			r.fail(ctx, parent, res, err)
			return
		}
		current = state.Routing().CanaryWeight()
		plan, skipped = plan.from(current)
	}
	r.announce(cfg, plan, res.Analysis)
	r.logSkipped(skipped, current)
	takeOver := cfg.Mode == config.ModeRollback // the way out always proceeds
	state, ok := r.preflight(ctx, parent, cfg, checksFor(cfg, plan), res, takeOver)
	if !ok {
		return
	}
	// Plan on paper before taking the lock, so that a run that cannot go anywhere writes
	// nothing at all; then again under the lock, from a fresh read: the run the lock was
	// taken from may have moved the route.
	if plan, ok = r.ready(ctx, parent, cfg, plan, state, res); !ok || cfg.DryRun {
		return
	}
	var release func()
	if ctx, release, ok = r.acquire(ctx, parent, cfg, state.Routing(), res, takeOver); !ok {
		return
	}
	defer release()
	state, err := r.readWithin(ctx)
	if err != nil {
		r.fail(ctx, parent, res, err)
		return
	}
	if plan, ok = r.ready(ctx, parent, cfg, plan, state, res); ok && r.openingGates(ctx, parent, cfg, res) {
		r.execute(ctx, parent, cfg, plan, state.Routing(), res)
		r.scaleDown(ctx, cfg, res)
	}
}

// ready drops the steps a progression has passed and plans the rest on paper from state
// (see onPaper); ok is false when the run ended there: nothing to do (unchanged), a stage
// that cannot be taken, or a dry run, which prints its plan.
func (r *Runner) ready(ctx, parent context.Context, cfg config.Config, plan Plan, state traffic.State, res *Result) (Plan, bool) {
	now := state.Routing()
	if cfg.Mode == config.ModeProgress {
		plan = r.skipPassed(plan, now.CanaryWeight()) // in case the weight moved since it was read
	}
	if len(plan) == 0 {
		r.logf("nothing to do: the canary already has %d%%, as much as the progression's last step or more", now.CanaryWeight())
		res.Outcome = Unchanged
		return nil, false
	}
	return plan, r.onPaper(ctx, parent, plan, state, res, cfg.DryRun)
}

// onPaper plans every stage from state before anything is written, so that a stage that
// cannot be taken (a canary weight larger than what other destinations leave) stops the run
// before the first write; a dry run ends there. ok is false when the run ended.
func (r *Runner) onPaper(ctx, parent context.Context, plan Plan, state traffic.State, res *Result, dry bool) bool {
	rv := state.Routing().ResourceVersion
	changes := make([]traffic.Change, len(plan))
	for i, stage := range plan {
		var err error
		if changes[i], err = state.Plan(stage.Desired); err != nil {
			r.fail(ctx, parent, res, err)
			return false
		}
		state = changes[i].Next
	}
	if dry {
		r.dryRun(plan, changes, rv, res)
		return false
	}
	return true
}

// readWithin reads the route within the API's budget.
func (r *Runner) readWithin(ctx context.Context) (traffic.State, error) {
	ctx, cancel := r.budget(ctx, r.WriteTimeout)
	defer cancel()
	return r.Traffic.Read(ctx)
}

// budget bounds one exchange with the API server (a read, the lock): an API server that
// does not answer is retried until then. 0 means no bound.
func (r *Runner) budget(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("gave up after %s", d))
}

// checksFor is what the preflight verifies for plan: rollback must work while the canary is
// broken, but the stable version must be able to take the traffic.
func checksFor(cfg config.Config, plan Plan) traffic.Checks {
	if cfg.Mode == config.ModeRollback {
		return traffic.Checks{Write: !cfg.DryRun, StableDeployment: cfg.StableDeployment, ReadyTimeout: cfg.ReadyTimeout, StableServes: true}
	}
	checks := traffic.Checks{Canary: true, CanaryDeployment: cfg.CanaryDeployment, StableDeployment: cfg.StableDeployment, ReadyTimeout: cfg.ReadyTimeout, Write: !cfg.DryRun}
	checks.StableServes, checks.CanaryServes = plan.serves()
	return checks
}

// preflight checks the route, the queries and the lock before anything is written; ok is
// false when the run ended there.
func (r *Runner) preflight(ctx, parent context.Context, cfg config.Config, checks traffic.Checks, res *Result, takeOver bool) (traffic.State, bool) {
	// The Deployments have MESHROLL_READY_TIMEOUT to become ready, the API server its usual
	// budget beyond that.
	checkCtx, cancel := r.budget(ctx, cfg.ReadyTimeout+r.WriteTimeout)
	defer cancel()
	state, err := r.Traffic.Preflight(checkCtx, checks)
	if err != nil {
		r.fail(ctx, parent, res, err)
		return nil, false
	}
	if err := r.lockFree(checkCtx, takeOver); err != nil {
		r.fail(ctx, parent, res, err)
		return nil, false
	}
	if r.Scaler != nil {
		if err := r.Scaler.Check(checkCtx); err != nil {
			r.fail(ctx, parent, res, err)
			return nil, false
		}
	}
	if r.Security != nil && cfg.Mode != config.ModeRollback {
		warnings, err := r.Security.Check(checkCtx)
		for _, w := range warnings {
			r.logf("WARNING: %s", w)
		}
		res.Warnings = append(res.Warnings, warnings...)
		if err != nil {
			r.fail(ctx, parent, res, err)
			return nil, false
		}
	}
	now := state.Routing()
	res.Route, res.Final = now.Route, now.Destinations
	if res.Analysis {
		if err := r.Analysis.Preflight(ctx); err != nil {
			r.fail(ctx, parent, res, analysisPreflightError(err))
			return nil, false
		}
	}
	if now.Chosen != "" {
		r.logf("NOTE: %s", now.Chosen)
	}
	r.logf("preflight passed: %s %s now %s", traffic.RouteWord(now.Kind), now.Route, traffic.DescribeWeights(now.Destinations))
	return state, true
}

// execute takes the plan's stages in turn from now, the route as preflight read it, and
// returns traffic to stable when one fails.
func (r *Runner) execute(ctx, parent context.Context, cfg config.Config, plan Plan, now traffic.Routing, res *Result) {
	changed := false
	judge := &verdicts{threshold: cfg.Analysis.FailureThreshold, compare: newComparisons(cfg.Analysis)}
	last := now // what the route does as this run left it
	if plan[0].promotes() {
		// Nothing this run wrote is held before the promotion: wait watching the route.
		if err := r.await(ctx, cfg, config.WebhookConfirmPromotion, res, r.watching(&last)); err != nil {
			r.fail(ctx, parent, res, err) // this run moved nothing, so it undoes nothing
			return
		}
	}
	for i, stage := range plan {
		step := Step{Index: stage.Index, Of: stage.Of, Action: ActionSet, Kind: stage.Kind, CanaryWeight: stage.Desired.CanaryWeight, StartedAt: r.Now()}
		r.Log.StepStarted(step)
		promotionNext := i+1 < len(plan) && plan[i+1].promotes()
		err := r.step(ctx, parent, cfg, stage, &step, &last, judge, promotionNext, res)
		if step.After != nil {
			res.Final, changed = step.After, changed || step.Changed
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

// step writes one stage and holds it; step records what happened, last what the route does
// as the run left it. A step whose write failed has no After.
// When promotionNext, the hold goes on past its end until the confirm-promotion gate opens.
func (r *Runner) step(ctx, parent context.Context, cfg config.Config, stage Stage, step *Step, last *traffic.Routing, j *verdicts, promotionNext bool, res *Result) error {
	d := stage.Desired
	d.Expect = last
	what := fmt.Sprintf("step %d/%d (%s)", stage.Index, stage.Of, stage.Describe())
	d.Why = r.why(cfg, "Step", what)
	if err := r.book.set(ctx, func(rec *Record) {
		rec.Stage, rec.Of, rec.Doing, rec.Writing = stage.Index, stage.Of, "writing "+what, &stage.Desired
	}); err != nil {
		return err // the run cannot say what it does, or no longer holds the lock: it stops
	}
	applied, err := r.write(ctx, d)
	if err != nil {
		return err
	}
	*last = applied.After
	step.Before, step.After, step.Changed = applied.Before.Destinations, applied.After.Destinations, applied.Changed
	step.CanaryWeight = applied.After.CanaryWeight()
	_, name := cfg.RouteObject()
	r.logStep(*step, name, applied)
	doing := "holding " + what
	if stage.Hold == 0 {
		doing = "took " + what
	}
	if err := r.book.set(ctx, func(rec *Record) { rec.Doing, rec.Weights, rec.Writing = doing, applied.After.Summary(), nil }); errors.Is(err, ErrLockLost) {
		return err
	} else if err != nil {
		r.logf("NOTE: %v; the run goes on and records its state at the next renewal", err)
	}
	stopLoad := func() {}
	if stage.Hold > 0 {
		stopLoad = r.startLoad(ctx, step)
		step.HeldUntil = step.StartedAt.Add(stage.Hold)
		if stage.Judged {
			r.logf("step %d/%d: holding %s, judging the canary every %s", step.Index, step.Of, stage.Hold, cfg.Analysis.Interval)
			err = r.analyze(ctx, cfg, step, step.StartedAt, stage.Hold, j, *last)
		} else {
			r.logf("step %d/%d: holding %s", step.Index, step.Of, stage.Hold)
			err = r.hold(ctx, stage.Hold, *last)
		}
	}
	if err == nil && promotionNext {
		between := r.watching(last)
		if stage.Judged {
			between = func(ctx context.Context, d time.Duration) error {
				// The canary keeps being judged while the promotion waits; a quiet window is
				// no reason to stop waiting.
				if err := r.analyze(ctx, cfg, step, r.Now(), d, j, *last); !errors.Is(err, errInconclusive) {
					return err
				}
				return nil
			}
		}
		err = r.await(ctx, cfg, config.WebhookConfirmPromotion, res, between)
		if step.HeldUntil.Before(r.Now()) {
			step.HeldUntil = r.Now()
		}
	}
	stopLoad()
	if err != nil {
		step.Error = explain(ctx, parent, err).Error()
	}
	return err
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
	r.logSkipped(skipped, current)
	return left
}

func (r *Runner) logSkipped(skipped Plan, current int) {
	for _, st := range skipped {
		r.logf("skipping %s: the canary already has %d%% and a progression never lowers it", st.Describe(), current)
	}
}

// analyzed says whether metric analysis gates the mode: the modes that hold a partial
// weight. promote, rollback and status move straight to an end (or nowhere).
func analyzed(m config.Mode) bool { return m.Progressive() || m == config.ModePhase }
