package gatewayapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/cluster"
)

const (
	resource   = "httproutes"
	apiVersion = "gateway.networking.k8s.io/v1"
)

// Client reads and writes the steered rule of one HTTPRoute.
type Client struct {
	gateway gatewayclient.Interface
	kube    kubernetes.Interface
	target  Target
}

// NewClient returns a Client for target.
func NewClient(gateway gatewayclient.Interface, kube kubernetes.Interface, target Target) *Client {
	return &Client{gateway: gateway, kube: kube, target: target}
}

// object is an HTTPRoute as the API server sends it: its metadata, its spec as JSON so that
// nothing this build of the Gateway API does not know is lost on the way, and its status.
type object struct {
	Metadata metav1.ObjectMeta         `json:"metadata"`
	Spec     json.RawMessage           `json:"spec"`
	Status   gatewayv1.HTTPRouteStatus `json:"status"`
}

func (c *Client) object() string {
	return fmt.Sprintf("%s %s/%s", Kind, c.target.Namespace, c.target.HTTPRoute)
}

func (c *Client) ref(uid types.UID, resourceVersion string) cluster.Ref {
	return cluster.Ref{Kind: Kind, APIVersion: apiVersion, Namespace: c.target.Namespace, Name: c.target.HTTPRoute, UID: uid, ResourceVersion: resourceVersion}
}

// Read gets the HTTPRoute and resolves the steered rule. A silent or overloaded API server is
// retried for as long as ctx lasts: give it a deadline.
func (c *Client) Read(ctx context.Context) (traffic.State, error) {
	s, _, err := c.readObject(ctx, kube.Retry)
	return s, err
}

// readObject gets the HTTPRoute through retry and resolves the steered rule.
func (c *Client) readObject(ctx context.Context, retry cluster.Retrier) (*State, object, error) {
	o, err := c.getObject(ctx, retry)
	if err != nil {
		return nil, object{}, err
	}
	s, err := newState(o.Metadata, o.Spec, c.target)
	return s, o, err
}

// getObject gets the HTTPRoute through retry, as the API server sends it.
func (c *Client) getObject(ctx context.Context, retry cluster.Retrier) (object, error) {
	t := c.target
	var raw []byte
	err := retry(ctx, func(ctx context.Context) error {
		var err error
		raw, err = rawBody(c.gateway.GatewayV1().RESTClient().Get().Namespace(t.Namespace).Resource(resource).Name(t.HTTPRoute).Do(ctx))
		return err
	})
	switch {
	case apierrors.IsNotFound(err):
		return object{}, traffic.Preflightf(traffic.ErrVirtualServiceNotFound, "%s not found: check MESHROLL_HTTP_ROUTE and MESHROLL_NAMESPACE (and that the Gateway API's CRDs are installed)", c.object())
	case apierrors.IsForbidden(err):
		return object{}, traffic.Preflightf(traffic.ErrForbidden, "%v: grant meshroll's Role this permission (see examples/rbac.yaml)", err)
	case err != nil:
		return object{}, fmt.Errorf("failed to get %s: %w", c.object(), err)
	}
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return object{}, fmt.Errorf("failed to decode %s: %w", c.object(), err)
	}
	return o, nil
}

// rawBody is the body of a successful response, or the API server's error as a structured
// Status error.
func rawBody(res rest.Result) ([]byte, error) {
	if err := res.Error(); err != nil {
		return nil, err
	}
	return res.Raw()
}

// Apply makes the steered rule do d in one guarded JSON patch, retried as cluster.Write
// retries (conflicts, a silent API server) for as long as ctx lasts: give it a deadline.
// What was written is read back and compared with the plan, and recorded in an Event on the
// HTTPRoute. A rule that already does d is not written.
func (c *Client) Apply(ctx context.Context, d traffic.Desired) (traffic.Applied, error) {
	return cluster.Write(ctx, c.object(), func(ctx context.Context, retry bool) (traffic.Applied, error) {
		return c.applyOnce(ctx, d, retry)
	})
}

// applyOnce is one attempt of Apply: read, plan, patch, read back. It returns
// cluster.ErrConflict when another writer changed the HTTPRoute since the read.
func (c *Client) applyOnce(ctx context.Context, d traffic.Desired, retry bool) (traffic.Applied, error) {
	state, obj, err := c.readObject(ctx, cluster.Once) // Apply retries the whole attempt
	if err != nil {
		return traffic.Applied{}, err
	}
	change, err := state.Plan(d)
	if errors.Is(err, traffic.ErrDrift) && retry {
		// An earlier attempt that got no answer may have landed: a rule that already does d
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
	raw, err := rawBody(c.gateway.GatewayV1().RESTClient().Patch(types.JSONPatchType).Namespace(before.Namespace).Resource(resource).Name(before.Name).
		Param("fieldManager", traffic.FieldManager).Body(patch).Do(ctx))
	switch {
	case apierrors.IsConflict(err):
		return out, cluster.ErrConflict
	case apierrors.IsInvalid(err) && c.changedSince(ctx, before.ResourceVersion):
		// A test operation failed: what the plan relied on changed under it.
		return out, cluster.ErrConflict
	case err != nil:
		return traffic.Applied{}, fmt.Errorf("failed to patch %s: %w", c.object(), err)
	}
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return traffic.Applied{}, fmt.Errorf("failed to decode %s after the write: %w", c.object(), err)
	}
	written, err := newState(o.Metadata, o.Spec, c.target)
	if err != nil {
		return traffic.Applied{}, fmt.Errorf("failed to read back %s after the write: %w", c.object(), err)
	}
	after := written.Routing()
	if got, want := after.Summary(), change.After.Summary(); got != want {
		return traffic.Applied{}, fmt.Errorf("%s holds %s after the write, want %s", c.object(), got, want)
	}
	out.ResourceVersion = after.ResourceVersion
	out.Change.After, out.Change.Next = after, written
	if err := cluster.RecordChange(ctx, c.kube, c.ref(obj.Metadata.UID, after.ResourceVersion), change, d.Why); err != nil {
		out.Warnings = append(out.Warnings, err.Error())
	}
	return out, nil
}

// changedSince says whether the HTTPRoute's resourceVersion is no longer rv.
func (c *Client) changedSince(ctx context.Context, rv string) bool {
	o, err := c.getObject(ctx, cluster.Once)
	return err == nil && o.Metadata.ResourceVersion != rv
}

// Note records an Event on the HTTPRoute without changing it. The read and the Event are
// retried while the API server is silent or overloaded, for as long as ctx lasts.
func (c *Client) Note(ctx context.Context, why traffic.Why) error {
	o, err := c.getObject(ctx, kube.Retry)
	if err != nil {
		return fmt.Errorf("failed to record why on %s: %w", c.object(), err)
	}
	return cluster.Note(ctx, c.kube, c.ref(o.Metadata.UID, o.Metadata.ResourceVersion), why)
}
