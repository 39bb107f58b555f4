package kube

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Backoff paces the attempts of a request the API server did not answer, or answered with
// "later": 50 ms doubling to 2 s, for as long as the caller's context lasts.
func Backoff() wait.Backoff {
	return wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Jitter: 0.2, Cap: 2 * time.Second, Steps: math.MaxInt32}
}

// Transient says whether an API error is worth another attempt: no answer (refused, reset,
// cut, timed out) or an answer that says "later" (429, 5xx).
func Transient(err error) bool {
	var netErr net.Error
	switch {
	case err == nil:
		return false
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err), apierrors.IsUnexpectedServerError(err):
		return true
	case utilnet.IsConnectionRefused(err), utilnet.IsConnectionReset(err), utilnet.IsProbableEOF(err):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	}
	var status apierrors.APIStatus
	return errors.As(err, &status) && status.Status().Code >= 500
}

// Retry calls do until it returns nil or an error that is not Transient, waiting Backoff
// between attempts, for as long as ctx lasts: give it a deadline. When ctx ends first, the
// error is ctx's cause, how long the API server has not answered, and its last error.
func Retry(ctx context.Context, do func(ctx context.Context) error) error {
	backoff := Backoff()
	start := time.Now()
	for {
		err := do(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil && (Transient(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
			return silent(ctx, start, err)
		case !Transient(err):
			return err
		}
		timer := time.NewTimer(backoff.Step())
		select {
		case <-ctx.Done():
			timer.Stop()
			return silent(ctx, start, err)
		case <-timer.C:
		}
	}
}

// silent says that ctx ended before the API server answered. It matches ctx's cause and the
// last error (errors.Is), but does not print the last error when that only repeats that the
// context ended.
func silent(ctx context.Context, since time.Time, last error) error {
	waited := time.Since(since).Round(100 * time.Millisecond)
	cause := context.Cause(ctx)
	msg := fmt.Sprintf("%v: the API server had not answered for %s; last: %v", cause, waited, last)
	if errors.Is(last, context.Canceled) || errors.Is(last, context.DeadlineExceeded) {
		msg = fmt.Sprintf("%v: no answer from the API server within %s", cause, waited)
	}
	return &silentError{msg: msg, errs: []error{cause, last}}
}

type silentError struct {
	msg  string
	errs []error
}

func (e *silentError) Error() string   { return e.msg }
func (e *silentError) Unwrap() []error { return e.errs }
