package istio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/cluster"
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
// deadline (cluster.Write). What was written is read back and compared with the plan, and
// recorded in an Event on the VirtualService that says what changed and d.Why (an Event that
// cannot be recorded before ctx ends is a warning). A route that already does d is not
// written.
func (c *Client) Apply(ctx context.Context, d traffic.Desired) (traffic.Applied, error) {
	object := fmt.Sprintf("%s %s/%s", Kind, c.target.Namespace, c.target.VirtualService)
	return cluster.Write(ctx, object, func(ctx context.Context, retry bool) (traffic.Applied, error) {
		return c.applyOnce(ctx, d, retry)
	})
}

// applyOnce is one attempt of Apply: read, plan, patch, read back. It returns
// cluster.ErrConflict when another writer changed the VirtualService since the read.
func (c *Client) applyOnce(ctx context.Context, d traffic.Desired, retry bool) (traffic.Applied, error) {
	state, obj, err := c.readObject(ctx, cluster.Once) // Apply retries the whole attempt
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
		return out, cluster.ErrConflict
	case apierrors.IsInvalid(err) && c.changedSince(ctx, before.ResourceVersion):
		// A test operation failed: what the plan relied on changed under it.
		return out, cluster.ErrConflict
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
	if err := cluster.RecordChange(ctx, c.kube, c.ref(obj.Metadata.UID, after.ResourceVersion), change, d.Why); err != nil {
		out.Warnings = append(out.Warnings, err.Error())
	}
	return out, nil
}

// changedSince says whether the VirtualService's resourceVersion is no longer rv.
func (c *Client) changedSince(ctx context.Context, rv string) bool {
	o, err := c.getObject(ctx, cluster.Once)
	return err == nil && o.Metadata.ResourceVersion != rv
}
