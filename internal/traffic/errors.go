package traffic

import (
	"errors"
	"fmt"
)

// ErrPreflight marks every failure that the user's input or cluster objects cause and that is
// found before anything is written: fixing the input fixes it (exit code 2).
var ErrPreflight = errors.New("preflight failed")

// Kinds of preflight failure callers and tests can branch on; each also matches ErrPreflight.
var (
	ErrVirtualServiceNotFound = errors.New("VirtualService not found")
	ErrRouteNotFound          = errors.New("route not found")
	ErrAmbiguousRoute         = errors.New("ambiguous route")
	ErrSubsetNotInRoute       = errors.New("subset not in route")
	ErrInvalidWeights         = errors.New("invalid weights in route")
	ErrWeightTooLarge         = errors.New("canary weight too large")
	ErrSubsetNotDefined       = errors.New("subset not defined by a DestinationRule")
	ErrServiceNotFound        = errors.New("Service not found")
	ErrOwnedByController      = errors.New("routing object owned by a controller")
	ErrForeignMirror          = errors.New("route mirrors elsewhere")
	ErrMatchConflict          = errors.New("A/B conditions conflict with the route's")
	ErrDeploymentNotReady     = errors.New("canary Deployment not ready")
	ErrForbidden              = errors.New("missing permissions")
)

type preflightError struct {
	kind error
	msg  string
}

func (e *preflightError) Error() string { return e.msg }

func (e *preflightError) Is(target error) bool { return target == e.kind || target == ErrPreflight }

// Preflightf returns an error that matches kind and ErrPreflight: a problem the user's input or
// cluster objects cause, found before anything is written.
func Preflightf(kind error, format string, args ...any) error {
	return &preflightError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
