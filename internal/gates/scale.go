package gates

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/meshroll/meshroll/internal/kube"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ErrScaleForbidden marks credentials that may not read or update the scale of the
// Deployments: the caller stops the run before its first write (a failed preflight).
var ErrScaleForbidden = errors.New("missing permissions to scale Deployments")

// scaleConflicts is how many times a scale-down re-reads the scale after a conflict (someone
// else, an autoscaler, changed it between the read and the write).
const scaleConflicts = 5

// fieldManager is recorded in managedFields for the scale-down, as for every meshroll write.
const fieldManager = "meshroll"

// Scaler scales the Deployments of one namespace through their scale subresource (apps/v1):
// the scale-down of MESHROLL_SCALE_DOWN. It decides nothing: whether a Deployment may go to
// 0 is the rollout's to say.
type Scaler struct {
	kube      kubernetes.Interface
	namespace string
}

// NewScaler returns a Scaler for the Deployments in namespace.
func NewScaler(kube kubernetes.Interface, namespace string) *Scaler {
	return &Scaler{kube: kube, namespace: namespace}
}

// Check asks the API server (SelfSubjectAccessReview) whether the credentials in use may get
// and update deployments/scale in the namespace; a missing permission is ErrScaleForbidden,
// naming it. A cluster that does not let the user ask passes: the scale-down itself will tell.
func (s *Scaler) Check(ctx context.Context) error {
	missing, err := kube.Missing(ctx, s.kube, []kube.Permission{
		{Verb: "get", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: s.namespace},
		{Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: s.namespace},
	})
	if err != nil || len(missing) == 0 {
		return err
	}
	words := make([]string, len(missing))
	for i, n := range missing {
		words[i] = n.String()
	}
	return fmt.Errorf("%w: forbidden: the credentials in use cannot %s, which MESHROLL_SCALE_DOWN=true needs; grant them in meshroll's Role (see examples/rbac.yaml), or unset MESHROLL_SCALE_DOWN",
		ErrScaleForbidden, strings.Join(words, ", nor "))
}

// ScaleToZero sets the replicas of Deployment name to 0 and returns how many it had. The
// write carries the resourceVersion read, so a change made in between (an autoscaler) makes
// it fail; it then reads again, a few times. A Deployment already at 0 is not written.
func (s *Scaler) ScaleToZero(ctx context.Context, name string) (int32, error) {
	deployments := s.kube.AppsV1().Deployments(s.namespace)
	var err error
	for range scaleConflicts {
		var scale *autoscalingv1.Scale
		scale, err = deployments.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return 0, fmt.Errorf("failed to read the scale of Deployment %s/%s: %w", s.namespace, name, err)
		}
		from := scale.Spec.Replicas
		if from == 0 {
			return 0, nil
		}
		scale.Spec.Replicas = 0
		_, err = deployments.UpdateScale(ctx, name, scale, metav1.UpdateOptions{FieldManager: fieldManager})
		if err == nil {
			return from, nil
		}
		if !apierrors.IsConflict(err) {
			return from, fmt.Errorf("failed to scale Deployment %s/%s to 0: %w", s.namespace, name, err)
		}
	}
	return 0, fmt.Errorf("failed to scale Deployment %s/%s to 0: its scale kept changing (%d conflicts): %w", s.namespace, name, scaleConflicts, err)
}
