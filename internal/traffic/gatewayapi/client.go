package gatewayapi

import (
	"context"
	"encoding/json"
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

// Apply makes the steered rule do d in one guarded JSON patch (see cluster.Apply).
func (c *Client) Apply(ctx context.Context, d traffic.Desired) (traffic.Applied, error) {
	return cluster.Apply(ctx, c.kube, written{c}, d)
}

// written is the HTTPRoute as cluster.Apply reads, patches and names it.
type written struct{ c *Client }

func (w written) Read(ctx context.Context, retry cluster.Retrier) (traffic.State, types.UID, error) {
	s, o, err := w.c.readObject(ctx, retry)
	if err != nil {
		return nil, "", err
	}
	return s, o.Metadata.UID, nil
}

func (w written) Patch(ctx context.Context, patch []byte) ([]byte, error) {
	t := w.c.target
	return rawBody(w.c.gateway.GatewayV1().RESTClient().Patch(types.JSONPatchType).Namespace(t.Namespace).Resource(resource).Name(t.HTTPRoute).
		Param("fieldManager", traffic.FieldManager).Body(patch).Do(ctx))
}

func (w written) Written(raw []byte) (traffic.State, error) {
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, fmt.Errorf("failed to decode %s after the write: %w", w.c.object(), err)
	}
	s, err := newState(o.Metadata, o.Spec, w.c.target)
	if err != nil {
		return nil, fmt.Errorf("failed to read back %s after the write: %w", w.c.object(), err)
	}
	return s, nil
}

func (w written) Ref(uid types.UID, resourceVersion string) cluster.Ref {
	return w.c.ref(uid, resourceVersion)
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
