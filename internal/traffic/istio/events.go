package istio

import (
	"context"

	"k8s.io/apimachinery/pkg/types"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/cluster"
)

// Note records an Event on the VirtualService without changing it, so that the cluster says
// why a run stopped (another writer moved the route, the lock was taken over). An empty
// reason is recorded as Note. The read and the Event are retried while the API server is
// silent or overloaded, for as long as ctx lasts: give it a deadline.
func (c *Client) Note(ctx context.Context, why traffic.Why) error {
	o, err := c.getObject(ctx, kube.Retry)
	if err != nil {
		return err
	}
	return cluster.Note(ctx, c.kube, c.ref(o.Metadata.UID, o.Metadata.ResourceVersion), why)
}

// ref names the VirtualService at resourceVersion for the Events about it.
func (c *Client) ref(uid types.UID, resourceVersion string) cluster.Ref {
	return cluster.Ref{
		Kind:            Kind,
		APIVersion:      "networking.istio.io/v1",
		Namespace:       c.target.Namespace,
		Name:            c.target.VirtualService,
		UID:             uid,
		ResourceVersion: resourceVersion,
	}
}
