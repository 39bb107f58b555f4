package istio

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/cluster"
)

// Read gets the VirtualService and resolves the steered route. A silent or overloaded API
// server is retried for as long as ctx lasts: give it a deadline.
func (c *Client) Read(ctx context.Context) (traffic.State, error) {
	s, _, err := c.readObject(ctx, kube.Retry)
	return s, err
}

// readObject gets the VirtualService through retry and resolves the steered route. retry is
// kube.Retry outside Apply, and cluster.Once within an attempt of Apply, which retries whole
// attempts itself (see cluster.Retrier).
func (c *Client) readObject(ctx context.Context, retry cluster.Retrier) (*State, object, error) {
	o, err := c.getObject(ctx, retry)
	if err != nil {
		return nil, object{}, err
	}
	s, err := newState(o.Metadata, o.Spec, c.target)
	return s, o, err
}

// getObject gets the VirtualService through retry, as the API server sends it.
func (c *Client) getObject(ctx context.Context, retry cluster.Retrier) (object, error) {
	t := c.target
	var raw []byte
	err := retry(ctx, func(ctx context.Context) error {
		var err error
		raw, err = rawBody(c.istio.NetworkingV1().RESTClient().Get().Namespace(t.Namespace).Resource(resource).Name(t.VirtualService).Do(ctx))
		return err
	})
	switch {
	case apierrors.IsNotFound(err):
		return object{}, traffic.Preflightf(traffic.ErrVirtualServiceNotFound, "VirtualService %s/%s not found: check MESHROLL_VIRTUAL_SERVICE and MESHROLL_NAMESPACE", t.Namespace, t.VirtualService)
	case apierrors.IsForbidden(err):
		return object{}, traffic.Preflightf(traffic.ErrForbidden, "%v: grant meshroll's Role this permission (see examples/rbac.yaml)", err)
	case err != nil:
		return object{}, fmt.Errorf("failed to get VirtualService %s/%s: %w", t.Namespace, t.VirtualService, err)
	}
	o, err := decodeObject(raw)
	if err != nil {
		return object{}, fmt.Errorf("failed to decode VirtualService %s/%s: %w", t.Namespace, t.VirtualService, err)
	}
	return o, nil
}
