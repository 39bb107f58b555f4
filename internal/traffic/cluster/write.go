package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
)

// ErrConflict says another writer changed the object between our read and our write: an
// attempt returns it for Write to start again from a fresh read.
var ErrConflict = errors.New("conflicting write")

// Write makes a guarded write to object ("VirtualService prod/reviews", for messages) through
// attempt, which reads, plans, writes one JSON patch guarded by the resourceVersion it read
// and by test operations on what the plan relies on, and reads back. When another writer got
// there first (attempt returns ErrConflict), or the API server did not answer (refused, reset,
// timed out, 429, 5xx), it starts again with a fresh attempt, with backoff, for as long as ctx
// lasts: give it a deadline. retry tells attempt that an earlier attempt was made, which may
// have landed without an answer. The result counts the conflicts.
func Write(ctx context.Context, object string, attempt func(ctx context.Context, retry bool) (traffic.Applied, error)) (traffic.Applied, error) {
	backoff := kube.Backoff()
	attempts, conflicts := 0, 0
	var last error
	for {
		attempts++
		out, err := attempt(ctx, attempts > 1)
		switch {
		case err == nil:
			out.Conflicts = conflicts
			return out, nil
		case errors.Is(err, ErrConflict):
			conflicts++
		case ctx.Err() != nil: // the budget ended during the attempt: said below
		case !kube.Transient(err):
			return traffic.Applied{}, err
		}
		if ctx.Err() != nil {
			if !errors.Is(err, ErrConflict) {
				attempts-- // cut short by the budget: it tells nothing about the server
			}
			return traffic.Applied{}, gaveUp(ctx, object, attempts, conflicts, last)
		}
		last = err
		wait := conflictPause()
		if !errors.Is(err, ErrConflict) {
			wait = backoff.Step()
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return traffic.Applied{}, gaveUp(ctx, object, attempts, conflicts, last)
		case <-timer.C:
		}
	}
}

// conflictPause is the wait before another attempt after a conflict: a few milliseconds at
// random. The API server answered, so there is nothing to back off from; another writer just
// got there first, and a busy one (a controller writing many times a second) would win every
// race against a write that waited longer.
func conflictPause() time.Duration {
	return time.Duration(rand.Int64N(int64(20 * time.Millisecond)))
}

// gaveUp says why a write to object that kept being retried did not land.
func gaveUp(ctx context.Context, object string, attempts, conflicts int, last error) error {
	switch {
	case attempts == 0:
		return fmt.Errorf("%w: the write to %s had not landed", context.Cause(ctx), object)
	case conflicts == attempts:
		return fmt.Errorf("%w: another writer kept changing %s (%d conflicting writes)", context.Cause(ctx), object, conflicts)
	}
	return fmt.Errorf("%w: the write to %s did not land in %d attempts (%d of them conflicting with another writer); last: %v", context.Cause(ctx), object, attempts, conflicts, last)
}
