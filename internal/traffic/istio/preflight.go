package istio

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Preflight checks, without writing anything, that the route can be steered: the
// VirtualService and route exist, a DestinationRule for the route's host defines the subsets,
// the Services exist, and the Deployments are Available with pods their subset and Service
// select.
func (c *Client) Preflight(ctx context.Context, checks traffic.Checks) (traffic.State, error) {
	state, obj, err := c.readObject(ctx, kube.Retry)
	if err != nil {
		return nil, err
	}
	if owner := metav1.GetControllerOf(&obj.Metadata); owner != nil {
		// Its controller rewrites the object from its own spec: it would undo every change.
		return nil, traffic.Preflightf(traffic.ErrOwnedByController, "VirtualService %s/%s is managed by %s %s (%s): its controller would undo every change meshroll makes; run the rollout through that controller, or steer a VirtualService you own",
			state.routing.Namespace, state.routing.Name, owner.Kind, owner.Name, owner.APIVersion)
	}
	if err := c.checkAccess(ctx, checks, c.searchNamespaces(state)); err != nil {
		return nil, err
	}
	roles := []traffic.Role{traffic.RoleStable}
	if checks.Canary {
		roles = append(roles, traffic.RoleCanary)
	}
	// selects is, per role, the labels its pods must carry: its subset's and its Service's.
	selects := map[traffic.Role]map[string]string{}
	subsets, err := c.subsets(ctx, state)
	if err != nil {
		return nil, err
	}
	for _, r := range roles {
		sd := c.target.side(r)
		selects[r] = map[string]string{}
		if sd.subset != "" {
			labels, ok := subsets[sd.subset]
			if !ok {
				return nil, traffic.Preflightf(traffic.ErrSubsetNotDefined, "no DestinationRule for host %s defines subset %q (defined: %s): add it to the DestinationRule or fix %s",
					strings.Join(state.Hosts(), ", "), sd.subset, listOrNone(sortedKeys(subsets)), sd.subsetVar)
			}
			maps.Copy(selects[r], labels)
		}
		if sd.service != "" {
			selector, err := c.serviceSelector(ctx, sd)
			if err != nil {
				return nil, err
			}
			maps.Copy(selects[r], selector)
		}
	}
	for _, d := range []deployment{
		{"MESHROLL_STABLE_DEPLOYMENT", checks.StableDeployment, traffic.RoleStable},
		{"MESHROLL_CANARY_DEPLOYMENT", checks.CanaryDeployment, traffic.RoleCanary},
	} {
		if d.name == "" {
			continue
		}
		if err := c.waitDeployment(ctx, checks, d, selects[d.role]); err != nil {
			return nil, err
		}
	}
	return state, nil
}

// serviceSelector gets the Service that names a side and returns its selector.
func (c *Client) serviceSelector(ctx context.Context, sd side) (map[string]string, error) {
	key := serviceKey(sd.service, c.target.Namespace)
	name, ns, ok := strings.Cut(key, ".")
	if !ok || strings.Contains(ns, ".") {
		return nil, traffic.Preflightf(traffic.ErrServiceNotFound, "%s=%s is not a Kubernetes Service name (name, name.namespace or name.namespace.svc.cluster.local)", sd.svcVar, sd.service)
	}
	svc, err := retried(ctx, func(ctx context.Context) (*corev1.Service, error) {
		return c.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	})
	switch {
	case apierrors.IsNotFound(err):
		return nil, traffic.Preflightf(traffic.ErrServiceNotFound, "%s=%s: Service %s/%s not found: check the name and namespace", sd.svcVar, sd.service, ns, name)
	case err != nil:
		return nil, fmt.Errorf("failed to get Service %s/%s: %w", ns, name, err)
	}
	return svc.Spec.Selector, nil
}

// subsets collects the subsets (name → labels) that DestinationRules define for the hosts of
// the stable and canary destinations, looking in the VirtualService's namespace and in each
// host's own namespace.
func (c *Client) subsets(ctx context.Context, state *State) (map[string]map[string]string, error) {
	wantKeys := map[string]bool{}
	for _, h := range state.Hosts() {
		wantKeys[serviceKey(h, state.routing.Namespace)] = true
	}
	if svc := c.target.CanaryService; svc != "" {
		// Not yet in the route before the first step.
		wantKeys[serviceKey(svc, state.routing.Namespace)] = true
	}
	found := map[string]map[string]string{}
	for _, ns := range c.searchNamespaces(state) {
		list, err := retried(ctx, func(ctx context.Context) (*clientnetworking.DestinationRuleList, error) {
			return c.istio.NetworkingV1().DestinationRules(ns).List(ctx, metav1.ListOptions{})
		})
		if err != nil {
			return nil, fmt.Errorf("failed to list DestinationRules in namespace %s: %w", ns, err)
		}
		for _, dr := range list.Items {
			if !wantKeys[serviceKey(dr.Spec.Host, dr.Namespace)] {
				continue
			}
			for _, s := range dr.Spec.Subsets {
				found[s.Name] = s.Labels
			}
		}
	}
	return found, nil
}

// searchNamespaces are where DestinationRules for the route's hosts may live: the
// VirtualService's namespace and each host's own.
func (c *Client) searchNamespaces(state *State) []string {
	namespaces := []string{state.routing.Namespace}
	for _, h := range state.Hosts() {
		if ns := keyNamespace(serviceKey(h, state.routing.Namespace)); ns != "" && !contains(namespaces, ns) {
			namespaces = append(namespaces, ns)
		}
	}
	return namespaces
}

// checkAccess asks the API server (SelfSubjectAccessReview) whether the credentials in use
// may do everything the run needs, so that a missing permission stops the run before the
// first write rather than halfway through a progression.
func (c *Client) checkAccess(ctx context.Context, checks traffic.Checks, drNamespaces []string) error {
	ns := c.target.Namespace
	needs := []kube.Permission{{Verb: "get", Group: "networking.istio.io", Resource: "virtualservices", Namespace: ns}}
	for _, n := range drNamespaces {
		needs = append(needs, kube.Permission{Verb: "list", Group: "networking.istio.io", Resource: "destinationrules", Namespace: n})
	}
	if checks.CanaryDeployment != "" || checks.StableDeployment != "" {
		needs = append(needs, kube.Permission{Verb: "get", Group: "apps", Resource: "deployments", Namespace: ns})
	}
	for _, svc := range []string{c.target.StableService, c.target.CanaryService} {
		if svc == "" {
			continue
		}
		if n := (kube.Permission{Verb: "get", Resource: "services", Namespace: keyNamespace(serviceKey(svc, ns))}); !slices.Contains(needs, n) {
			needs = append(needs, n)
		}
	}
	if checks.Write {
		needs = append(needs, kube.Permission{Verb: "patch", Group: "networking.istio.io", Resource: "virtualservices", Namespace: ns},
			kube.Permission{Verb: "create", Resource: "events", Namespace: ns})
	}
	missing, err := kube.Missing(ctx, c.kube, needs)
	if err != nil || len(missing) == 0 {
		return err
	}
	words := make([]string, len(missing))
	for i, n := range missing {
		words[i] = n.String()
	}
	return traffic.Preflightf(traffic.ErrForbidden, "forbidden: the credentials in use cannot %s; grant them in meshroll's Role (see examples/rbac.yaml)", strings.Join(words, ", nor "))
}

// serviceKey reduces a Kubernetes service host to "name.namespace", however it is written:
// "reviews" (relative to ns), "reviews.prod", "reviews.prod.svc" or
// "reviews.prod.svc.cluster.local". Other hosts are returned as they are.
func serviceKey(host, ns string) string {
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1:
		return host + "." + ns
	case len(parts) >= 3 && parts[2] == "svc":
		return parts[0] + "." + parts[1]
	}
	return host
}

func keyNamespace(key string) string {
	parts := strings.Split(key, ".")
	if len(parts) == 2 {
		return parts[1]
	}
	return ""
}

// deployment is one Deployment that Preflight waits for.
type deployment struct {
	variable, name string       // the input that named it, and its name
	role           traffic.Role // whose pods it runs
}

// waitDeployment waits until the Deployment is Available for its current generation, then
// checks that it has ready pods when the run sends its version traffic, and that its subset
// and Service select its pods.
func (c *Client) waitDeployment(ctx context.Context, checks traffic.Checks, dep deployment, selects map[string]string) error {
	ns, name := c.target.Namespace, dep.name
	last, err := c.awaitAvailable(ctx, checks, dep)
	if err != nil {
		return err
	}
	if serves := map[traffic.Role]bool{traffic.RoleStable: checks.StableServes, traffic.RoleCanary: checks.CanaryServes}[dep.role]; serves && last.Status.ReadyReplicas == 0 {
		return traffic.Preflightf(traffic.ErrDeploymentNotReady, "%s=%s: Deployment %s/%s has no ready pods (%d replicas wanted) but this run sends the %s version traffic: scale it up first",
			dep.variable, name, ns, name, replicas(last), dep.role)
	}
	podLabels := last.Spec.Template.Labels
	for k, v := range selects {
		if podLabels[k] != v {
			sd := c.target.side(dep.role)
			fix := "the subset's labels"
			if sd.service != "" {
				fix = "the Service's selector"
				if sd.subset != "" {
					fix += " or the subset's labels"
				}
			}
			return traffic.Preflightf(traffic.ErrDeploymentNotReady, "the %s %s selects %s but the pods of Deployment %s/%s are labelled %s: point %s at the %s's Deployment or fix %s",
				dep.role, sd, labelString(selects), ns, name, labelString(podLabels), dep.variable, dep.role, fix)
		}
	}
	return nil
}

// awaitAvailable polls the Deployment until it is Available for its current generation, for
// at most checks.ReadyTimeout, and returns it as last read. Each poll retries a silent or
// overloaded API server until the wait ends; the server's final answer (404, 403) ends it.
func (c *Client) awaitAvailable(ctx context.Context, checks traffic.Checks, dep deployment) (*appsv1.Deployment, error) {
	ns, name := c.target.Namespace, dep.name
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
		d, err := retried(ctx, func(ctx context.Context) (*appsv1.Deployment, error) {
			return c.kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
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
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
