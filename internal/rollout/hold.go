package rollout

import (
	"context"
	"time"

	"github.com/meshroll/meshroll/internal/traffic"
)

// sleep waits d or until ctx is done: the Runner's Hold outside tests.
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
	state, err := r.readWithin(ctx)
	if err != nil {
		return err
	}
	return traffic.Desired{Expect: &last}.CheckDrift(state.Routing())
}
