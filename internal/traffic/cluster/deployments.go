package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/meshroll/meshroll/internal/traffic"
)

// Pods are the pods a role's destination sends traffic to: those carrying Labels (its
// subset's and its Service's). SelectedBy names the destination in messages (`Service
// "reviews-canary" subset "v2"`), Fix what to correct when a Deployment's pods do not carry
// the labels ("the Service's selector").
type Pods struct {
	Labels     map[string]string
	SelectedBy string
	Fix        string
}

// deployment is one Deployment that WaitDeployments waits for.
type deployment struct {
	variable, name string       // the input that named it, and its name
	role           traffic.Role // whose pods it runs
}

// WaitDeployments waits for the Deployments that checks names in namespace, the stable one
// first: each must become Available within checks.ReadyTimeout, have ready pods when the run
// sends its version traffic, and run pods that carry the labels pods gives for its role (a
// role without an entry is not checked for labels).
func WaitDeployments(ctx context.Context, k kubernetes.Interface, namespace string, checks traffic.Checks, pods map[traffic.Role]Pods) error {
	for _, d := range []deployment{
		{"MESHROLL_STABLE_DEPLOYMENT", checks.StableDeployment, traffic.RoleStable},
		{"MESHROLL_CANARY_DEPLOYMENT", checks.CanaryDeployment, traffic.RoleCanary},
	} {
		if d.name == "" {
			continue
		}
		if err := waitDeployment(ctx, k, namespace, checks, d, pods[d.role]); err != nil {
			return err
		}
	}
	return nil
}

// waitDeployment waits until the Deployment is Available for its current generation, then
// checks that it has ready pods when the run sends its version traffic, and that what
// selects its role's pods (a subset, a Service) selects its pods.
func waitDeployment(ctx context.Context, k kubernetes.Interface, ns string, checks traffic.Checks, dep deployment, want Pods) error {
	name := dep.name
	last, err := awaitAvailable(ctx, k, ns, checks, dep)
	if err != nil {
		return err
	}
	if serves := map[traffic.Role]bool{traffic.RoleStable: checks.StableServes, traffic.RoleCanary: checks.CanaryServes}[dep.role]; serves && last.Status.ReadyReplicas == 0 {
		return traffic.Preflightf(traffic.ErrDeploymentNotReady, "%s=%s: Deployment %s/%s has no ready pods (%d replicas wanted) but this run sends the %s version traffic: scale it up first",
			dep.variable, name, ns, name, replicas(last), dep.role)
	}
	podLabels := last.Spec.Template.Labels
	for key, value := range want.Labels {
		if podLabels[key] != value {
			return traffic.Preflightf(traffic.ErrDeploymentNotReady, "the %s %s selects %s but the pods of Deployment %s/%s are labelled %s: point %s at the %s's Deployment or fix %s",
				dep.role, want.SelectedBy, labelString(want.Labels), ns, name, labelString(podLabels), dep.variable, dep.role, want.Fix)
		}
	}
	return nil
}

// awaitAvailable polls the Deployment until it is Available for its current generation, for
// at most checks.ReadyTimeout, and returns it as last read. Each poll retries a silent or
// overloaded API server until the wait ends; the server's final answer (404, 403) ends it.
func awaitAvailable(ctx context.Context, k kubernetes.Interface, ns string, checks traffic.Checks, dep deployment) (*appsv1.Deployment, error) {
	name := dep.name
	interval := checks.PollInterval
	if interval <= 0 {
		interval = time.Second
	}
	waitCtx, cancel := context.WithTimeoutCause(ctx, checks.ReadyTimeout,
		fmt.Errorf("the wait for it to become Available (MESHROLL_READY_TIMEOUT=%s) ended", checks.ReadyTimeout))
	defer cancel()
	var last *appsv1.Deployment
	var lastErr error
	err := wait.PollUntilContextCancel(waitCtx, interval, true, func(ctx context.Context) (bool, error) {
		d, err := Retried(ctx, func(ctx context.Context) (*appsv1.Deployment, error) {
			return k.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		})
		var answer apierrors.APIStatus
		switch {
		case apierrors.IsNotFound(err):
			return false, traffic.Preflightf(traffic.ErrDeploymentNotReady, "%s=%s: Deployment %s/%s not found: check the name and namespace", dep.variable, name, ns, name)
		case err != nil && errors.As(err, &answer) && ctx.Err() == nil:
			return false, fmt.Errorf("failed to get Deployment %s/%s: %w", ns, name, err)
		case err != nil:
			// The wait ended during the read, or the request never reached the server (the
			// client's rate limiter would wait past the deadline): keep waiting; said below
			// if the wait ends without an answer.
			lastErr = err
			return false, nil
		}
		last, lastErr = d, nil
		return available(d), nil
	})
	switch {
	case err == nil:
		return last, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("failed to wait for Deployment %s/%s: %w", ns, name, context.Cause(ctx))
	case !wait.Interrupted(err):
		return nil, err
	case last != nil:
		return nil, traffic.Preflightf(traffic.ErrDeploymentNotReady, "Deployment %s/%s is not Available after %s (%d of %d replicas available, observed generation %d of %d): check its pods, or raise MESHROLL_READY_TIMEOUT",
			ns, name, checks.ReadyTimeout, last.Status.AvailableReplicas, replicas(last), last.Status.ObservedGeneration, last.Generation)
	}
	return nil, fmt.Errorf("failed to get Deployment %s/%s: %w", ns, name, lastErr)
}

func available(d *appsv1.Deployment) bool {
	if d.Status.ObservedGeneration < d.Generation {
		return false
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
