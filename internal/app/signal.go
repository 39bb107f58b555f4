package app

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext returns a copy of parent that is cancelled when the process receives SIGINT or
// SIGTERM, with the signal as its cause: context.Cause(ctx) says "cancelled by SIGTERM", so
// that a cancelled run tells the user what stopped it rather than "context canceled".
// (signal.NotifyContext sets a cause too, but it reads "terminated signal received".)
// stop releases the signals; call it once the run is over.
func SignalContext(parent context.Context) (ctx context.Context, stop func()) {
	return notifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

func notifyContext(parent context.Context, signals ...os.Signal) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	received := make(chan os.Signal, 1)
	signal.Notify(received, signals...)
	go func() {
		select {
		case s := <-received:
			cancel(&Signalled{Signal: s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(received)
		cancel(nil)
	}
}

// Signalled is the cause of a context that a signal cancelled. It is a context.Canceled, for
// callers that only ask whether the context was cancelled.
type Signalled struct{ Signal os.Signal }

func (e *Signalled) Error() string { return "cancelled by " + signalName(e.Signal) }

func (e *Signalled) Is(target error) bool { return target == context.Canceled }

// signalName is the name users know a signal by: SIGTERM rather than Go's "terminated".
func signalName(s os.Signal) string {
	switch s {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}
