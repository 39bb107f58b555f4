package rollout

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// fail ends a run before anything was written.
func (r *Runner) fail(ctx, parent context.Context, res *Result, err error) {
	res.Err = explain(ctx, parent, err)
	var hook *hookFailed
	switch {
	case parent.Err() != nil:
		res.Outcome = Cancelled
	case ctx.Err() != nil:
		res.Outcome = Failed // MESHROLL_TIMEOUT
	case errors.Is(err, traffic.ErrPreflight), errors.Is(err, errAnalysisInput), errors.Is(err, ErrLocked), errors.Is(err, ErrNotResumable):
		res.Outcome = Invalid
	case errors.As(err, &hook):
		res.Outcome, res.FailedCheck = CanaryFailed, hook.check()
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
	var worse *canaryWorse
	switch {
	case errors.As(err, &failed):
		res.Outcome, res.FailedCheck = CanaryFailed, failed.result.Check
	case errors.As(err, &worse):
		res.Outcome, res.FailedCheck = CanaryFailed, worse.cmp.Name
	case errors.Is(err, errInconclusive):
		res.Outcome = Inconclusive
	case errors.Is(err, traffic.ErrDrift):
		// Someone else moved the route: leave it as they set it, never fight them.
		res.Outcome = Interrupted
		r.logf("%s: leaving the route as the other writer set it", res.Outcome)
		r.note(ctx, cfg, "Interrupted", "stopped without writing: "+res.Err.Error())
		return
	case errors.Is(res.Err, ErrLockLost):
		// A rollback or a resume holds the routing object now: the traffic is theirs.
		res.Outcome = Interrupted
		r.logf("%s: leaving the route to the run that holds the lock now", res.Outcome)
		return
	case res.Outcome == Invalid:
		// The cluster changed under a running progression (say, a destination was added):
		// that is a runtime failure, not bad input.
		res.Outcome = Failed
	}
	if !cfg.Mode.Progressive() && !(cfg.Mode == config.ModePhase && r.judging(res)) {
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
	reason := "RollbackAfterFailure"
	if res.Outcome == Cancelled {
		reason = "RollbackAfterCancel"
	}
	why := r.why(cfg, reason, "returning all traffic to "+cfg.StableName()+" ("+string(res.Outcome)+"): "+res.Err.Error())
	rollbackCtx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), timeout, fmt.Errorf("the rollback did not finish within %s", timeout))
	defer cancel()
	step := Step{Action: ActionRollback, StartedAt: r.Now()}
	r.Log.StepStarted(step)
	defer func() { r.Log.StepDone(step) }()
	_ = r.book.set(rollbackCtx, func(rec *Record) { // best effort: the rollback goes on whatever happens to the record
		rec.Doing, rec.RollingBack = "rolling back to "+cfg.StableName()+" ("+string(res.Outcome)+")", true
	})
	applied, rbErr := r.Traffic.Apply(rollbackCtx, traffic.Desired{CanaryWeight: 0, Why: why})
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
	_, name := cfg.RouteObject()
	r.logf("rollback: %s %s", name, describe(applied))
}

// note records on the routing object why the run stopped without writing; a failure to
// record it only goes to the log.
func (r *Runner) note(ctx context.Context, cfg config.Config, reason, what string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockBudget)
	defer cancel()
	if err := r.Traffic.Note(ctx, r.why(cfg, reason, what)); err != nil {
		r.logf("NOTE: %v", err)
	}
}
