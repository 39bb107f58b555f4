package istio

import (
	"context"
	"encoding/json"
	"fmt"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
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

// Apply makes the steered route do d in one guarded JSON patch (see cluster.Apply).
func (c *Client) Apply(ctx context.Context, d traffic.Desired) (traffic.Applied, error) {
	return cluster.Apply(ctx, c.kube, written{c}, d)
}

// written is the VirtualService as cluster.Apply reads, patches and names it.
type written struct{ c *Client }

func (w written) Read(ctx context.Context, retry cluster.Retrier) (traffic.State, types.UID, error) {
	s, o, err := w.c.readObject(ctx, retry)
	if err != nil {
		return nil, "", err
	}
	return s, o.Metadata.UID, nil
}

func (w written) Patch(ctx context.Context, patch []byte) ([]byte, error) {
	if w.c.beforeWrite != nil {
		w.c.beforeWrite(ctx)
	}
	t := w.c.target
	return rawBody(w.c.istio.NetworkingV1().RESTClient().Patch(types.JSONPatchType).Namespace(t.Namespace).Resource(resource).Name(t.VirtualService).
		Param("fieldManager", traffic.FieldManager).Body(patch).Do(ctx))
}

func (w written) Written(raw []byte) (traffic.State, error) {
	t := w.c.target
	o, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("failed to decode VirtualService %s/%s after the write: %w", t.Namespace, t.VirtualService, err)
	}
	s, err := newState(o.Metadata, o.Spec, t)
	if err != nil {
		return nil, fmt.Errorf("failed to read back VirtualService %s/%s after the write: %w", t.Namespace, t.VirtualService, err)
	}
	return s, nil
}

func (w written) Ref(uid types.UID, resourceVersion string) cluster.Ref {
	return w.c.ref(uid, resourceVersion)
}
