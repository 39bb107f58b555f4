package cluster

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
)

// ServiceSelector gets the Service that service names (relative to namespace, as variable
// gave it) and returns its selector: the labels of the pods it sends traffic to.
func ServiceSelector(ctx context.Context, k kubernetes.Interface, namespace, variable, service string) (map[string]string, error) {
	key := ServiceKey(service, namespace)
	name, ns, ok := strings.Cut(key, ".")
	if !ok || strings.Contains(ns, ".") {
		return nil, traffic.Preflightf(traffic.ErrServiceNotFound, "%s=%s is not a Kubernetes Service name (name, name.namespace or name.namespace.svc.cluster.local)", variable, service)
	}
	svc, err := Retried(ctx, func(ctx context.Context) (*corev1.Service, error) {
		return k.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	})
	switch {
	case apierrors.IsNotFound(err):
		return nil, traffic.Preflightf(traffic.ErrServiceNotFound, "%s=%s: Service %s/%s not found: check the name and namespace", variable, service, ns, name)
	case err != nil:
		return nil, fmt.Errorf("failed to get Service %s/%s: %w", ns, name, err)
	}
	return svc.Spec.Selector, nil
}

// ServiceKey reduces a Kubernetes service host to "name.namespace", however it is written:
// "reviews" (relative to ns), "reviews.prod", "reviews.prod.svc" or
// "reviews.prod.svc.cluster.local". Other hosts are returned as they are.
func ServiceKey(host, ns string) string {
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1:
		return host + "." + ns
	case len(parts) >= 3 && parts[2] == "svc":
		return parts[0] + "." + parts[1]
	}
	return host
}

// KeyNamespace is the namespace of a ServiceKey, "" for a host that is not a Kubernetes
// Service's.
func KeyNamespace(key string) string {
	parts := strings.Split(key, ".")
	if len(parts) == 2 {
		return parts[1]
	}
	return ""
}

// Forbidden is the preflight failure for the permissions that kube.Missing found missing, nil
// when none is: a missing permission stops the run before the first write rather than
// halfway through a progression.
func Forbidden(missing []kube.Permission) error {
	if len(missing) == 0 {
		return nil
	}
	words := make([]string, len(missing))
	for i, n := range missing {
		words[i] = n.String()
	}
	return traffic.Preflightf(traffic.ErrForbidden, "forbidden: the credentials in use cannot %s; grant them in meshroll's Role (see examples/rbac.yaml)", strings.Join(words, ", nor "))
}
