package istio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
)

// resource is the VirtualService resource of the networking.istio.io/v1 API.
const resource = "virtualservices"

// Client reads and writes the steered route of one VirtualService.
type Client struct {
	istio  istioclient.Interface
	kube   kubernetes.Interface
	target Target

	// beforeWrite, when set by a test, runs between the read and the guarded write.
	beforeWrite func(ctx context.Context)
}

// NewClient returns a Client for target.
func NewClient(istio istioclient.Interface, kube kubernetes.Interface, target Target) *Client {
	return &Client{istio: istio, kube: kube, target: target}
}

// object is a VirtualService as the API server sends it: its metadata, and its spec as JSON
// so that nothing this build of the Istio API does not know is lost on the way.
type object struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     json.RawMessage   `json:"spec"`
}

// rawBody is the body of a successful response, or the API server's error as a structured
// Status error (Raw alone would give a generic one that loses the server's message).
func rawBody(res rest.Result) ([]byte, error) {
	if err := res.Error(); err != nil {
		return nil, err
	}
	return res.Raw()
}

func decodeObject(raw []byte) (object, error) {
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return object{}, err
	}
	return o, nil
}

// Apply makes the steered route do d. It reads, plans, and writes one JSON patch guarded by
// the resourceVersion it read and by test operations on what the plan relies on. When another
// writer got there first, or the API server did not answer (refused, reset, timed out, 429,
// 5xx), it starts again from a fresh read, with backoff, for as long as ctx lasts: give it a
// deadline. What was written is read back and compared with the plan, and recorded in an
// Event on the VirtualService that says what changed and d.Why (an Event that cannot be
// recorded before ctx ends is a warning). A route that already does d is not written.
func (c *Client) Apply(ctx context.Context, d traffic.Desired) (traffic.Applied, error) {
	backoff := kube.Backoff()
	attempts, conflicts := 0, 0
	var last error
	for {
		attempts++
		out, err := c.applyOnce(ctx, d, attempts > 1)
		switch {
		case err == nil:
			out.Conflicts = conflicts
			return out, nil
		case errors.Is(err, errConflict):
			conflicts++
		case ctx.Err() != nil: // the budget ended during the attempt: said below
		case !kube.Transient(err):
			return traffic.Applied{}, err
		}
		if ctx.Err() != nil {
			if !errors.Is(err, errConflict) {
				attempts-- // cut short by the budget: it tells nothing about the server
			}
			return traffic.Applied{}, c.gaveUp(ctx, attempts, conflicts, last)
		}
		last = err
		wait := conflictPause()
		if !errors.Is(err, errConflict) {
			wait = backoff.Step()
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return traffic.Applied{}, c.gaveUp(ctx, attempts, conflicts, last)
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

// gaveUp says why a write that kept being retried did not land.
func (c *Client) gaveUp(ctx context.Context, attempts, conflicts int, last error) error {
	vs := fmt.Sprintf("VirtualService %s/%s", c.target.Namespace, c.target.VirtualService)
	switch {
	case attempts == 0:
		return fmt.Errorf("%w: the write to %s had not landed", context.Cause(ctx), vs)
	case conflicts == attempts:
		return fmt.Errorf("%w: another writer kept changing %s (%d conflicting writes)", context.Cause(ctx), vs, conflicts)
	}
	return fmt.Errorf("%w: the write to %s did not land in %d attempts (%d of them conflicting with another writer); last: %v", context.Cause(ctx), vs, attempts, conflicts, last)
}

// errConflict says another writer changed the object between our read and our write.
var errConflict = errors.New("conflicting write")

func (c *Client) applyOnce(ctx context.Context, d traffic.Desired, retry bool) (traffic.Applied, error) {
	state, obj, err := c.readObject(ctx, once) // Apply retries the whole attempt
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
	out := traffic.Applied{Change: change, ResourceVersion: before.ResourceVersion}
	if !change.Changed {
		return out, nil
	}
	patch, err := change.PatchJSON(before.ResourceVersion)
	if err != nil {
		return traffic.Applied{}, fmt.Errorf("failed to encode patch: %w", err)
	}
	if c.beforeWrite != nil {
		c.beforeWrite(ctx)
	}
	raw, err := rawBody(c.istio.NetworkingV1().RESTClient().Patch(types.JSONPatchType).Namespace(before.Namespace).Resource(resource).Name(before.Name).
		Param("fieldManager", traffic.FieldManager).Body(patch).Do(ctx))
	switch {
	case apierrors.IsConflict(err):
		return out, errConflict
	case apierrors.IsInvalid(err) && c.changedSince(ctx, before.ResourceVersion):
		// A test operation failed: what the plan relied on changed under it.
		return out, errConflict
	case err != nil:
		return traffic.Applied{}, fmt.Errorf("failed to patch VirtualService %s/%s: %w", before.Namespace, before.Name, err)
	}
	o, err := decodeObject(raw)
	if err != nil {
		return traffic.Applied{}, fmt.Errorf("failed to decode VirtualService %s/%s after the write: %w", before.Namespace, before.Name, err)
	}
	written, err := newState(o.Metadata, o.Spec, c.target)
	if err != nil {
		return traffic.Applied{}, fmt.Errorf("failed to read back VirtualService %s/%s after the write: %w", before.Namespace, before.Name, err)
	}
	after := written.Routing()
	if got, want := after.Summary(), change.After.Summary(); got != want {
		return traffic.Applied{}, fmt.Errorf("VirtualService %s/%s holds %s after the write, want %s", before.Namespace, before.Name, got, want)
	}
	out.ResourceVersion = after.ResourceVersion
	out.Change.After, out.Change.Next = after, written
	if err := c.recordEvent(ctx, obj.Metadata.UID, after.ResourceVersion, change, d.Why); err != nil {
		out.Warnings = append(out.Warnings, err.Error())
	}
	return out, nil
}

// changedSince says whether the VirtualService's resourceVersion is no longer rv.
func (c *Client) changedSince(ctx context.Context, rv string) bool {
	o, err := c.getObject(ctx, once)
	return err == nil && o.Metadata.ResourceVersion != rv
}
