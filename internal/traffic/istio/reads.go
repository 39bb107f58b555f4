package istio

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Reads go through a retrier. Outside Apply it is kube.Retry: a request the API server did
// not answer (refused, reset, timed out) or answered with "later" (429, 5xx) is sent again,
// with backoff, for as long as the caller's context lasts; a final answer (404, 403,
// invalid) returns at once. Apply retries whole attempts (read, plan, write) itself, so its
// reads make one attempt each and its give-up message counts attempts as before.
type retrier func(ctx context.Context, do func(ctx context.Context) error) error

// once makes a single attempt.
func once(ctx context.Context, do func(ctx context.Context) error) error { return do(ctx) }

// retried calls get through kube.Retry and returns its last answer.
func retried[T any](ctx context.Context, get func(ctx context.Context) (T, error)) (T, error) {
	var out T
	err := kube.Retry(ctx, func(ctx context.Context) error {
		var err error
		out, err = get(ctx)
		return err
	})
	return out, err
}

// Read gets the VirtualService and resolves the steered route. A silent or overloaded API
// server is retried for as long as ctx lasts: give it a deadline.
func (c *Client) Read(ctx context.Context) (traffic.State, error) {
	s, _, err := c.readObject(ctx, kube.Retry)
	return s, err
}

// readObject gets the VirtualService through retry and resolves the steered route.
func (c *Client) readObject(ctx context.Context, retry retrier) (*State, object, error) {
	o, err := c.getObject(ctx, retry)
	if err != nil {
		return nil, object{}, err
	}
	s, err := newState(o.Metadata, o.Spec, c.target)
	return s, o, err
}

// getObject gets the VirtualService through retry, as the API server sends it.
func (c *Client) getObject(ctx context.Context, retry retrier) (object, error) {
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
