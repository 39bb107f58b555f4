package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// lockFree fails with ErrLocked when a live run holds the routing object's lock, unless
// takeOver; it writes nothing, so that a refused run (or a dry run) leaves no trace.
func (r *Runner) lockFree(ctx context.Context, takeOver bool) error {
	if r.Lock == nil {
		return nil
	}
	ctx, cancel := r.budget(ctx, r.WriteTimeout)
	defer cancel()
	if err := r.Lock.Check(ctx); err != nil || takeOver {
		return err
	}
	h, err := r.Lock.Read(ctx)
	if err != nil {
		return err
	}
	if h.Live(r.Now()) {
		return r.locked(h)
	}
	return nil
}

func (r *Runner) locked(h Holding) error {
	return fmt.Errorf("%w: %s; nothing was written. Wait for it to finish, or stop it with MESHROLL_MODE=rollback, which breaks the lock",
		ErrLocked, h.Describe(r.Now()))
}

// acquire takes the routing object's lock for the run and starts renewing it. The context
// it returns ends, with ErrLockLost as its cause, when another run takes the lock; release
// stops the renewals and frees the lock with the run's outcome. ok is false when the run
// ended there.
func (r *Runner) acquire(ctx, parent context.Context, cfg config.Config, now traffic.Routing, res *Result, takeOver bool) (_ context.Context, release func(), ok bool) {
	if r.Lock == nil {
		return ctx, func() {}, true
	}
	started := r.Now()
	rec := Record{
		Run: newRunID(), Holder: r.Holder, Link: cfg.RunLink, Mode: cfg.Mode,
		Stable: cfg.StableName(), Canary: cfg.CanaryName(), Route: now.Route,
		Doing: "starting", Weights: now.Summary(), Inputs: inputsOf(cfg), Started: started, Updated: started,
	}
	lockCtx, cancel := r.budget(ctx, r.WriteTimeout)
	found, err := r.Lock.Acquire(lockCtx, rec, takeOver)
	cancel()
	switch {
	case errors.Is(err, ErrLocked):
		r.fail(ctx, parent, res, r.locked(found))
		return nil, nil, false
	case err != nil:
		r.fail(ctx, parent, res, err)
		return nil, nil, false
	}
	r.logTakeOver(found, now, cfg.Mode)
	every := cfg.LeaseDuration / 3
	if every <= 0 {
		every = 20 * time.Second
	}
	r.book = &ledger{lock: r.Lock, now: r.Now, every: every, budget: r.WriteTimeout, rec: rec}
	runCtx, lost := context.WithCancelCause(ctx)
	keepCtx, stop := context.WithCancel(runCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.book.keep(keepCtx, lost)
	}()
	return runCtx, func() {
		stop()
		<-done
		if res.Err != nil {
			res.Reason = res.Err.Error()
		}
		if err := r.book.finish(ctx, res); err != nil {
			r.logf("WARNING: %v; the lock stays until it expires (MESHROLL_LEASE_DURATION=%s), and status shows this run as unfinished", err, cfg.LeaseDuration)
		}
		r.book = nil
		lost(nil)
	}, true
}

// logTakeOver says whose lock the run took, and records it on the routing object.
func (r *Runner) logTakeOver(found Holding, now traffic.Routing, mode config.Mode) {
	if !found.Held || found.Record == nil {
		return
	}
	at := r.Now()
	var msg string
	switch {
	case found.Live(at) && mode == config.ModeRollback:
		msg = "breaking the lock of " + found.Describe(at) + ": a rollback always proceeds; that run stops at its next step or renewal, without writing"
	case found.Live(at):
		msg = "taking over the lock of " + found.Describe(at) + "; that run stops at its next step or renewal, without writing"
	case found.Record.Outcome == "":
		msg = "taking over the expired lock of " + found.Describe(at) + ": its runner stopped renewing it (killed, or cut off from the API server)"
	default:
		return
	}
	r.logf("NOTE: %s", msg)
}

// resumable checks that h records a progression this run can go on with: one that did not
// finish, with the same inputs.
func (r *Runner) resumable(h Holding, cfg config.Config, object string) (Record, error) {
	rec := h.Record
	switch {
	case rec == nil:
		return Record{}, fmt.Errorf("%w: no rollout has been recorded on %s; start one with MESHROLL_MODE=progress", ErrNotResumable, object)
	case !rec.Mode.Progressive():
		return Record{}, fmt.Errorf("%w: the last run on %s was meshroll %s (%s), not a progression; run it again, or roll back", ErrNotResumable, object, rec.Mode, rec.Doing)
	case rec.RollingBack && rec.Outcome == "":
		return Record{}, fmt.Errorf("%w: the last rollout on %s stopped while it was returning traffic to %s; finish that with MESHROLL_MODE=rollback", ErrNotResumable, object, rec.Stable)
	case rec.Outcome != "" && rec.Outcome != Failed:
		return Record{}, fmt.Errorf("%w: the last rollout on %s ended %s %s ago; start a new one with MESHROLL_MODE=progress", ErrNotResumable, object, rec.Outcome, age(r.Now(), rec.Updated))
	}
	if diff := differences(rec.Inputs, inputsOf(cfg)); diff != "" {
		return Record{}, fmt.Errorf("%w: the inputs do not describe the rollout recorded on %s by %s; give the same values, or roll back:\n%s", ErrNotResumable, object, rec.Holder, diff)
	}
	return *rec, nil
}

// ErrNotResumable marks a resume with nothing to resume, or with other inputs (exit 2).
var ErrNotResumable = errors.New("nothing to resume")

// resumeAt is where a resumed progression goes on: the route must be as the run recorded
// it, or as the write it had in flight makes it (the runner died between its write and its
// record); any other route was moved by someone else. It goes on with the last stage the
// route already has, held again in full, else with the first stage above the canary's
// weight.
func resumeAt(plan Plan, rec Record, state traffic.State) (Plan, error) {
	now := state.Routing()
	landed := false
	if rec.Writing != nil {
		c, err := state.Plan(*rec.Writing)
		landed = err == nil && !c.Changed
	}
	if now.Summary() != rec.Weights && !landed {
		return nil, fmt.Errorf("%w: %s now has %s, but the rollout left %s (%s); someone else changed it since. Roll back, or start a new progression",
			ErrNotResumable, now.Object(), now.Summary(), rec.Weights, rec.Doing)
	}
	for k := len(plan) - 1; k >= 0; k-- {
		if c, err := state.Plan(plan[k].Desired); err == nil && !c.Changed {
			return plan[k:], nil
		}
	}
	left, _ := plan.from(now.CanaryWeight())
	return left, nil
}
