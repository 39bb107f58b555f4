package cluster

import (
	"context"

	"github.com/meshroll/meshroll/internal/kube"
)

// Reads go through a Retrier. Outside a write it is kube.Retry: a request the API server did
// not answer (refused, reset, timed out) or answered with "later" (429, 5xx) is sent again,
// with backoff, for as long as the caller's context lasts; a final answer (404, 403,
// invalid) returns at once. Write retries whole attempts (read, plan, write) itself, so the
// reads of an attempt make one attempt each (Once) and its give-up message counts attempts
// as before.
type Retrier func(ctx context.Context, do func(ctx context.Context) error) error

// Once makes a single attempt.
func Once(ctx context.Context, do func(ctx context.Context) error) error { return do(ctx) }

// Retried calls get through kube.Retry and returns its last answer.
func Retried[T any](ctx context.Context, get func(ctx context.Context) (T, error)) (T, error) {
	var out T
	err := kube.Retry(ctx, func(ctx context.Context) error {
		var err error
		out, err = get(ctx)
		return err
	})
	return out, err
}
