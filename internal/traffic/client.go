package traffic

import (
	"context"
	"fmt"
	"os"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// FieldManager is recorded in managedFields for every write meshroll makes.
const FieldManager = "meshroll"

// conflictBackoff bounds the re-read, re-plan, re-write loop when someone else writes the
// VirtualService between our read and our write.
var conflictBackoff = wait.Backoff{Steps: 6, Duration: 50 * time.Millisecond, Factor: 2, Jitter: 0.2}

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

// Read gets the VirtualService and resolves the steered route.
func (c *Client) Read(ctx context.Context) (State, error) {
	t := c.target
	vs, err := c.istio.NetworkingV1().VirtualServices(t.Namespace).Get(ctx, t.VirtualService, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return State{}, preflightf(ErrVirtualServiceNotFound, "VirtualService %s/%s not found: check MESHROLL_VIRTUAL_SERVICE and MESHROLL_NAMESPACE", t.Namespace, t.VirtualService)
	}
	if apierrors.IsForbidden(err) {
		return State{}, preflightf(ErrForbidden, "%v: grant meshroll's Role this permission (see examples/rbac.yaml)", err)
	}
	if err != nil {
		return State{}, fmt.Errorf("failed to get VirtualService %s/%s: %w", t.Namespace, t.VirtualService, err)
	}
	return NewState(vs.Namespace, vs.Name, vs.ResourceVersion, &vs.Spec, t)
}

// Applied is the outcome of SetCanaryWeight.
type Applied struct {
	Change
	// ResourceVersion of the VirtualService after the write (or as read, when unchanged).
	ResourceVersion string
	// Conflicts counts writes that lost a race with another writer and were re-planned.
	Conflicts int
	// Warnings are problems that did not stop the change (e.g. the Event could not be recorded).
	Warnings []string
}

// SetCanaryWeight gives the canary destination weight canaryWeight. It reads, plans, and
// writes a JSON patch guarded by the resourceVersion it read; on a conflict it starts again
// from a fresh read. Weights already in place are not written.
func (c *Client) SetCanaryWeight(ctx context.Context, canaryWeight int) (Applied, error) {
	var out Applied
	attempts := 0
	err := retry.OnError(conflictBackoff, apierrors.IsConflict, func() error {
		attempts++
		state, err := c.Read(ctx)
		if err != nil {
			return err
		}
		change, err := state.Plan(canaryWeight)
		if err != nil {
			return err
		}
		out = Applied{Change: change, ResourceVersion: state.ResourceVersion, Conflicts: attempts - 1}
		if !change.Changed {
			return nil
		}
		patch, err := change.PatchJSON(state.ResourceVersion)
		if err != nil {
			return fmt.Errorf("failed to encode patch: %w", err)
		}
		if c.beforeWrite != nil {
			c.beforeWrite(ctx)
		}
		vs, err := c.istio.NetworkingV1().VirtualServices(state.Namespace).Patch(ctx, state.Name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
		if err != nil {
			return fmt.Errorf("failed to patch VirtualService %s/%s: %w", state.Namespace, state.Name, err)
		}
		written, err := NewState(vs.Namespace, vs.Name, vs.ResourceVersion, &vs.Spec, c.target)
		if err != nil {
			return fmt.Errorf("failed to read back VirtualService %s/%s after the write: %w", state.Namespace, state.Name, err)
		}
		if got, want := DescribeWeights(written.Destinations), DescribeWeights(change.After); got != want {
			return fmt.Errorf("VirtualService %s/%s has weights %s after the write, want %s", state.Namespace, state.Name, got, want)
		}
		out.ResourceVersion = vs.ResourceVersion
		out.Next = written
		if err := c.recordEvent(ctx, vs.UID, vs.ResourceVersion, change); err != nil {
			out.Warnings = append(out.Warnings, err.Error())
		}
		return nil
	})
	if apierrors.IsConflict(err) {
		return Applied{}, fmt.Errorf("gave up after %d conflicting writes to VirtualService %s/%s (another writer keeps changing it): %w", attempts, c.target.Namespace, c.target.VirtualService, err)
	}
	return out, err
}

// recordEvent leaves a Kubernetes Event on the VirtualService for a change.
func (c *Client) recordEvent(ctx context.Context, uid types.UID, resourceVersion string, change Change) error {
	t := c.target
	now := metav1.Now()
	host, _ := os.Hostname()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: t.VirtualService + ".", Namespace: t.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion:      "networking.istio.io/v1",
			Kind:            "VirtualService",
			Namespace:       t.Namespace,
			Name:            t.VirtualService,
			UID:             uid,
			ResourceVersion: resourceVersion,
		},
		Reason:              "WeightsChanged",
		Message:             fmt.Sprintf("route %s: %s", change.Route, change.Describe()),
		Type:                corev1.EventTypeNormal,
		Source:              corev1.EventSource{Component: FieldManager, Host: host},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "meshroll.dev/meshroll",
		ReportingInstance:   host,
		Action:              "SetWeights",
	}
	if _, err := c.kube.CoreV1().Events(t.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("failed to record an Event on VirtualService %s/%s: %w", t.Namespace, t.VirtualService, err)
	}
	return nil
}
