package kube

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Permission is one thing a run must be allowed: a verb on a resource (and subresource) in a
// namespace.
type Permission struct {
	Verb, Group, Resource, Subresource, Namespace string
	// Name, when set, is the one object the verb is needed on (a Role's resourceNames).
	Name string
}

// String says it for messages: "update deployments.apps/scale in namespace shop", "get
// services/proxy named prometheus in namespace istio-system".
func (a Permission) String() string {
	if a.Name != "" {
		return fmt.Sprintf("%s %s named %s in namespace %s", a.Verb, a.ResourceName(), a.Name, a.Namespace)
	}
	return fmt.Sprintf("%s %s in namespace %s", a.Verb, a.ResourceName(), a.Namespace)
}

// ResourceName names the resource as RBAC rules and kubectl do: "deployments.apps/scale".
func (a Permission) ResourceName() string {
	r := a.Resource
	if a.Group != "" {
		r += "." + a.Group
	}
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	return r
}

// Missing asks the API server (one SelfSubjectAccessReview each, retried as Retry does)
// whether the credentials in use may do each of needs, and returns those they may not, in
// order. A cluster that does not let the credentials ask answers nil: the requests
// themselves will tell. The error is the context's end.
func Missing(ctx context.Context, k kubernetes.Interface, needs []Permission) ([]Permission, error) {
	var missing []Permission
	for _, n := range needs {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: n.Namespace, Verb: n.Verb, Group: n.Group, Resource: n.Resource, Subresource: n.Subresource, Name: n.Name},
		}}
		var got *authorizationv1.SelfSubjectAccessReview
		err := Retry(ctx, func(ctx context.Context) error {
			var err error
			got, err = k.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			return err
		})
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("failed to check access to %s: %w", n, err)
		case err != nil:
			return nil, nil
		case !got.Status.Allowed:
			missing = append(missing, n)
		}
	}
	return missing, nil
}
