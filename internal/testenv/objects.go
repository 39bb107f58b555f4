package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/util/retry"
)

var notDNSLabel = regexp.MustCompile(`[^a-z0-9]+`)

// Namespace creates a namespace named after the test with a random suffix and deletes it when
// the test ends. Without a namespace controller it stays Terminating, which is harmless.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	prefix := strings.Trim(notDNSLabel.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	// The API server appends 5 random characters to GenerateName; a DNS label has at most 63.
	prefix = strings.TrimRight(prefix[:min(len(prefix), 57)], "-")
	if prefix == "" {
		prefix = "test"
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	ns, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("failed to create namespace for %s: %v", t.Name(), err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := e.Kube.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("failed to delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// Apply creates every object of a multi-document YAML (or JSON) manifest, namespaced ones in
// namespace, through the dynamic client. Any kind the API server serves works, including CRDs.
func (e *Env) Apply(t testing.TB, namespace, manifests string) {
	t.Helper()
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	for i := 0; ; i++ {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("failed to decode manifest document %d: %v", i, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := e.create(t.Context(), namespace, obj); err != nil {
			t.Fatalf("failed to apply manifest document %d: %v", i, err)
		}
	}
}

func (e *Env) create(ctx context.Context, namespace string, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	mapping, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// The discovery cache may predate a CRD; refresh it once.
		e.mapper.Reset()
		mapping, err = e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return fmt.Errorf("failed to map %s: %w", gvk, err)
	}
	client := e.Dynamic.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		obj.SetNamespace(namespace)
		_, err = client.Namespace(namespace).Create(ctx, obj, metav1.CreateOptions{})
	} else {
		_, err = client.Create(ctx, obj, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("failed to create %s %s/%s: %w", gvk.Kind, namespace, obj.GetName(), err)
	}
	return nil
}

// SetDeploymentStatus plays the Deployment controller, which does not run here: it writes a
// status in which the Deployment is (not) Available for its current generation.
func (e *Env) SetDeploymentStatus(ctx context.Context, namespace, name string, available bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := e.Kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		ready, cond := replicas, appsv1.DeploymentCondition{
			Type:    appsv1.DeploymentAvailable,
			Status:  corev1.ConditionTrue,
			Reason:  "MinimumReplicasAvailable",
			Message: "Deployment has minimum availability.",
		}
		if !available {
			ready, cond.Status, cond.Reason, cond.Message = 0, corev1.ConditionFalse, "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
		}
		now := metav1.Now()
		cond.LastUpdateTime, cond.LastTransitionTime = now, now
		conditions := []appsv1.DeploymentCondition{cond}
		for _, c := range d.Status.Conditions {
			if c.Type != appsv1.DeploymentAvailable {
				conditions = append(conditions, c)
			}
		}
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration:  d.Generation,
			Replicas:            ready,
			UpdatedReplicas:     ready,
			ReadyReplicas:       ready,
			AvailableReplicas:   ready,
			UnavailableReplicas: replicas - ready,
			Conditions:          conditions,
		}
		_, err = e.Kube.AppsV1().Deployments(namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to set status of deployment %s/%s: %w", namespace, name, err)
	}
	return nil
}

// DestinationRuleManifest is the DestinationRule of the reviews service, for Apply: one
// subset per version, selecting the pods labelled version=<version> (as DeploymentManifest
// labels them).
func DestinationRuleManifest(versions ...string) string {
	var b strings.Builder
	b.WriteString(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
`)
	for _, v := range versions {
		fmt.Fprintf(&b, "  - {name: %[1]s, labels: {version: %[1]s}}\n", v)
	}
	return b.String()
}

// DeploymentManifest is a Deployment of one version of a Bookinfo-like reviews service, its
// pods labelled app=reviews and version=<version>, for Apply. It starts without a status:
// set one with SetDeploymentStatus.
func DeploymentManifest(name, version string) string {
	return fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 2
  selector:
    matchLabels: {app: reviews, version: %[2]s}
  template:
    metadata:
      labels: {app: reviews, version: %[2]s}
    spec:
      containers:
      - {name: reviews, image: "istio/examples-bookinfo-reviews-%[2]s:1.20.2"}
`, name, version)
}
