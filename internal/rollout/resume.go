package rollout

import (
	"context"
	"fmt"
	"strings"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// resume goes on with a progression whose runner died: it takes over the lock, checks that
// the input describes the rollout recorded and that the route is where that run left it,
// and takes the remaining stages.
func (r *Runner) resume(ctx, parent context.Context, cfg config.Config, res *Result) {
	if r.Lock == nil {
		r.fail(ctx, parent, res, fmt.Errorf("%w: resume needs the routing object's lock", ErrNotResumable))
		return
	}
	kind, name := cfg.RouteObject()
	object := kind + " " + cfg.Namespace + "/" + name
	readCtx, cancel := r.budget(ctx, r.WriteTimeout)
	h, err := r.Lock.Read(readCtx)
	cancel()
	if err != nil {
		r.fail(ctx, parent, res, err)
		return
	}
	rec, err := r.resumable(h, cfg, object)
	if err != nil {
		r.fail(ctx, parent, res, err)
		return
	}
	plan := NewPlan(cfg, res.Analysis)
	r.logf("resuming the rollout %s started %s ago (%s)", rec.Holder, age(r.Now(), rec.Started), rec.Doing)
	r.announce(cfg, plan, res.Analysis)
	state, ok := r.preflight(ctx, parent, cfg, checksFor(cfg, plan), res, true)
	if !ok {
		return
	}
	if _, err := resumeAt(plan, rec, state); err != nil {
		r.fail(ctx, parent, res, err) // before the lock is taken: nothing written
		return
	}
	var release func()
	if ctx, release, ok = r.acquire(ctx, parent, cfg, state.Routing(), res, true); !ok {
		return
	}
	defer release()
	if state, err = r.readWithin(ctx); err != nil {
		r.fail(ctx, parent, res, err)
		return
	}
	if plan, err = resumeAt(plan, rec, state); err != nil {
		r.fail(ctx, parent, res, err)
		return
	}
	now := state.Routing()
	if len(plan) == 0 {
		r.logf("nothing left to do: the canary already has %d%%, as much as the progression's last step", now.CanaryWeight())
		res.Outcome = Unchanged
		return
	}
	r.logf("going on from step %d/%d (%s), held again in full", plan[0].Index, plan[0].Of, plan[0].Describe())
	if r.onPaper(ctx, parent, plan, state, res, false) {
		r.execute(ctx, parent, cfg, plan, now, res)
		r.scaleDown(ctx, cfg, res)
	}
}

// status reports the route's weights and the rollout in flight on it (or the last one); it
// writes nothing. Without the versions (status may leave them out) it reports the lock only.
func (r *Runner) status(ctx, parent context.Context, cfg config.Config, res *Result) {
	res.Outcome = Status
	ctx, cancel := r.budget(ctx, r.WriteTimeout)
	defer cancel()
	if r.Lock != nil {
		h, err := r.Lock.Read(ctx)
		if err != nil {
			r.fail(ctx, parent, res, err)
			return
		}
		r.logf("%s", r.describeHolding(h, cfg))
	}
	if cfg.StableName() == "" {
		r.logf("no route read: give MESHROLL_STABLE_SUBSET and MESHROLL_CANARY_SUBSET (or the Services) to see its weights")
		return
	}
	state, err := r.Traffic.Read(ctx)
	if err != nil {
		r.fail(ctx, parent, res, err)
		return
	}
	now := state.Routing()
	res.Route, res.Final = now.Route, now.Destinations
	r.logf("%s/%s %s %s: %s", now.Namespace, now.Name, traffic.RouteWord(now.Kind), now.Route, now.Summary())
}

// describeHolding renders what the lock says for status.
func (r *Runner) describeHolding(h Holding, cfg config.Config) string {
	kind, name := cfg.RouteObject()
	object := kind + " " + cfg.Namespace + "/" + name
	rec := h.Record
	now := r.Now()
	if rec == nil {
		return "no meshroll run has been recorded on " + object
	}
	var b strings.Builder
	switch {
	case h.Live(now):
		fmt.Fprintf(&b, "rollout in flight on %s", object)
	case rec.Outcome == "":
		fmt.Fprintf(&b, "unfinished rollout on %s: its runner stopped renewing the lock (killed, or cut off from the API server); MESHROLL_MODE=resume goes on with it, MESHROLL_MODE=rollback returns traffic to %s", object, rec.Stable)
	default:
		fmt.Fprintf(&b, "last rollout on %s: %s %s ago", object, rec.Outcome, age(now, rec.Updated))
	}
	fmt.Fprintf(&b, "\n  run:     %s, meshroll %s, %s to %s", rec.Holder, rec.Mode, rec.Stable, rec.Canary)
	if rec.Link != "" && rec.Link != rec.Holder {
		fmt.Fprintf(&b, "\n  link:    %s", rec.Link)
	}
	fmt.Fprintf(&b, "\n  stage:   %s", rec.Doing)
	if rec.Weights != "" {
		fmt.Fprintf(&b, "\n  weights: %s (as the run last wrote or found them)", rec.Weights)
	}
	fmt.Fprintf(&b, "\n  started: %s (%s ago)", rec.Started.UTC().Format("2006-01-02 15:04:05Z"), age(now, rec.Started))
	if h.Held {
		state := "expired " + age(now, h.Expires).String() + " ago"
		if h.Live(now) {
			state = "expires in " + age(h.Expires, now).String()
		}
		fmt.Fprintf(&b, "\n  lock:    renewed %s ago, %s", age(now, h.Renewed), state)
	}
	if rec.Reason != "" {
		fmt.Fprintf(&b, "\n  reason:  %s", rec.Reason)
	}
	return b.String()
}

// why is the Event reason and message of a write the run makes for stage.
func (r *Runner) why(cfg config.Config, reason, what string) traffic.Why {
	msg := "meshroll " + string(cfg.Mode) + ": " + what
	if cfg.RunLink != "" {
		msg += "; run " + cfg.RunLink
	} else if r.Holder != "" {
		msg += "; by " + r.Holder
	}
	return traffic.Why{Reason: reason, Message: msg}
}
