package cluster

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/meshroll/meshroll/internal/traffic"
)

// Object is a routing object as a guarded write needs it from its backend.
type Object interface {
	// Read gets the object through retry, with the steered route resolved, and its UID.
	Read(ctx context.Context, retry Retrier) (traffic.State, types.UID, error)
	// Patch sends a JSON patch to the object and returns the API server's answer, the object
	// as written; its error as it is, for Apply to tell a conflict.
	Patch(ctx context.Context, patch []byte) ([]byte, error)
	// Written reads the object the API server answered a patch with (saying what failed).
	Written(raw []byte) (traffic.State, error)
	// Ref names the object at resourceVersion, for messages and Events.
	Ref(uid types.UID, resourceVersion string) Ref
}

// Apply makes the steered route of o do d. It reads, plans, and writes one JSON patch guarded
// by the resourceVersion it read and by test operations on what the plan relies on. When
// another writer got there first, or the API server did not answer (refused, reset, timed
// out, 429, 5xx), it starts again from a fresh read, with backoff, for as long as ctx lasts:
// give it a deadline (Write). What was written is read back and compared with the plan, and
// recorded in an Event on the object that says what changed and d.Why (an Event that cannot
// be recorded before ctx ends is a warning). A route that already does d is not written.
func Apply(ctx context.Context, k kubernetes.Interface, o Object, d traffic.Desired) (traffic.Applied, error) {
	return Write(ctx, o.Ref("", "").String(), func(ctx context.Context, retry bool) (traffic.Applied, error) {
		return applyOnce(ctx, k, o, d, retry)
	})
}

// applyOnce is one attempt of Apply: read, plan, patch, read back. It returns ErrConflict
// when another writer changed the object since the read.
func applyOnce(ctx context.Context, k kubernetes.Interface, o Object, d traffic.Desired, retry bool) (traffic.Applied, error) {
	state, uid, err := o.Read(ctx, Once) // Apply retries the whole attempt
	if err != nil {
		return traffic.Applied{}, err
	}
	change, err := state.Plan(d)
	if errors.Is(err, traffic.ErrDrift) && retry {
		// An earlier attempt that got no answer may have landed: a route that already does d
		// is this run's own write, not another writer's.
		undisturbed := d
		undisturbed.Expect = nil
		if done, err := state.Plan(undisturbed); err == nil && !done.Changed {
			return traffic.Applied{Change: done, ResourceVersion: done.After.ResourceVersion}, nil
		}
	}
	if err != nil {
		return traffic.Applied{}, err
	}
	before := state.Routing()
	object := o.Ref(uid, before.ResourceVersion).String()
	out := traffic.Applied{Change: change, ResourceVersion: before.ResourceVersion}
	if !change.Changed {
		return out, nil
	}
	patch, err := change.PatchJSON(before.ResourceVersion)
	if err != nil {
		return traffic.Applied{}, fmt.Errorf("failed to encode patch: %w", err)
	}
	raw, err := o.Patch(ctx, patch)
	switch {
	case apierrors.IsConflict(err):
		return out, ErrConflict
	case apierrors.IsInvalid(err) && changedSince(ctx, o, before.ResourceVersion):
		// A test operation failed: what the plan relied on changed under it.
		return out, ErrConflict
	case err != nil:
		return traffic.Applied{}, fmt.Errorf("failed to patch %s: %w", object, err)
	}
	written, err := o.Written(raw)
	if err != nil {
		return traffic.Applied{}, err
	}
	after := written.Routing()
	if got, want := after.Summary(), change.After.Summary(); got != want {
		return traffic.Applied{}, fmt.Errorf("%s holds %s after the write, want %s", object, got, want)
	}
	out.ResourceVersion = after.ResourceVersion
	out.Change.After, out.Change.Next = after, written
	if err := RecordChange(ctx, k, o.Ref(uid, after.ResourceVersion), change, d.Why); err != nil {
		out.Warnings = append(out.Warnings, err.Error())
	}
	return out, nil
}

// changedSince says whether the object's resourceVersion is no longer rv.
func changedSince(ctx context.Context, o Object, rv string) bool {
	s, _, err := o.Read(ctx, Once)
	return err == nil && s.Routing().ResourceVersion != rv
}
