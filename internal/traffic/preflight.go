package traffic

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Checks says what Preflight verifies besides the VirtualService and its route.
type Checks struct {
	// CanarySubset requires a DestinationRule to define the canary subset too; a rollback
	// only needs the stable one, so that it works while the canary is broken.
	CanarySubset bool
	// CanaryDeployment, when set, must become Available within ReadyTimeout, and its pods'
	// labels must match the canary subset.
	CanaryDeployment string
	// StableDeployment, when set, must be Available too (within ReadyTimeout), with pods the
	// stable subset selects, so that a rollback has somewhere to send the traffic.
	StableDeployment string
	ReadyTimeout     time.Duration
	// PollInterval of the Deployment wait (default 1s).
	PollInterval time.Duration
	// Write says the run will patch the VirtualService and record Events: the credentials
	// must allow that too.
	Write bool
}

// Preflight checks, without writing anything, that the route can be steered: the
// VirtualService and route exist, a DestinationRule for the route's host defines the subsets,
// and the canary Deployment is Available with pods the canary subset selects.
func (c *Client) Preflight(ctx context.Context, checks Checks) (State, error) {
	state, err := c.Read(ctx)
	if err != nil {
		return State{}, err
	}
	if err := c.checkAccess(ctx, checks, c.searchNamespaces(state)); err != nil {
		return State{}, err
	}
	subsets, err := c.subsets(ctx, state)
	if err != nil {
		return State{}, err
	}
	want := []string{c.target.StableSubset}
	if checks.CanarySubset {
		want = append(want, c.target.CanarySubset)
	}
	for _, name := range want {
		if _, ok := subsets[name]; !ok {
			return State{}, preflightf(ErrSubsetNotDefined, "no DestinationRule for host %s defines subset %q (defined: %s): add it to the DestinationRule or fix MESHROLL_STABLE_SUBSET / MESHROLL_CANARY_SUBSET",
				strings.Join(state.Hosts(), ", "), name, listOrNone(sortedKeys(subsets)))
		}
	}
	for _, d := range []deployment{
		{"MESHROLL_STABLE_DEPLOYMENT", checks.StableDeployment, "stable", c.target.StableSubset},
		{"MESHROLL_CANARY_DEPLOYMENT", checks.CanaryDeployment, "canary", c.target.CanarySubset},
	} {
		if d.name == "" {
			continue
		}
		if err := c.waitDeployment(ctx, checks, d, subsets[d.subset]); err != nil {
			return State{}, err
		}
	}
	return state, nil
}

// subsets collects the subsets (name → labels) that DestinationRules define for the hosts of
// the stable and canary destinations, looking in the VirtualService's namespace and in each
// host's own namespace.
func (c *Client) subsets(ctx context.Context, state State) (map[string]map[string]string, error) {
	wantKeys := map[string]bool{}
	for _, h := range state.Hosts() {
		wantKeys[serviceKey(h, state.Namespace)] = true
	}
	found := map[string]map[string]string{}
	for _, ns := range c.searchNamespaces(state) {
		list, err := c.istio.NetworkingV1().DestinationRules(ns).List(ctx, metav1.ListOptions{})
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
func (c *Client) searchNamespaces(state State) []string {
	namespaces := []string{state.Namespace}
	for _, h := range state.Hosts() {
		if ns := keyNamespace(serviceKey(h, state.Namespace)); ns != "" && !contains(namespaces, ns) {
			namespaces = append(namespaces, ns)
		}
	}
	return namespaces
}

// checkAccess asks the API server (SelfSubjectAccessReview) whether the credentials in use
// may do everything the run needs, so that a missing permission stops the run before the
// first write rather than halfway through a progression.
func (c *Client) checkAccess(ctx context.Context, checks Checks, drNamespaces []string) error {
	type need struct{ verb, group, resource, namespace string }
	ns := c.target.Namespace
	needs := []need{{"get", "networking.istio.io", "virtualservices", ns}}
	for _, n := range drNamespaces {
		needs = append(needs, need{"list", "networking.istio.io", "destinationrules", n})
	}
	if checks.CanaryDeployment != "" || checks.StableDeployment != "" {
		needs = append(needs, need{"get", "apps", "deployments", ns})
	}
	if checks.Write {
		needs = append(needs, need{"patch", "networking.istio.io", "virtualservices", ns}, need{"create", "", "events", ns})
	}
	var missing []string
	for _, n := range needs {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: n.namespace, Verb: n.verb, Group: n.group, Resource: n.resource},
		}}
		got, err := c.kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			// Some clusters do not let every user ask; the requests themselves will tell.
			return nil
		}
		if !got.Status.Allowed {
			resource := n.resource
			if n.group != "" {
				resource += "." + n.group
			}
			missing = append(missing, fmt.Sprintf("%s %s in namespace %s", n.verb, resource, n.namespace))
		}
	}
	if len(missing) > 0 {
		return preflightf(ErrForbidden, "forbidden: the credentials in use cannot %s; grant them in meshroll's Role (see examples/rbac.yaml)", strings.Join(missing, ", nor "))
	}
	return nil
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
	variable, name string // the input that named it, and its name
	role, subset   string // "stable" or "canary", and that role's subset
}

// waitDeployment waits until the Deployment is Available for its current generation, then
// checks that its subset selects its pods.
func (c *Client) waitDeployment(ctx context.Context, checks Checks, dep deployment, subsetLabels map[string]string) error {
	ns, name := c.target.Namespace, dep.name
	interval := checks.PollInterval
	if interval <= 0 {
		interval = time.Second
	}
	var last *appsv1.Deployment
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, interval, checks.ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		d, err := c.kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, preflightf(ErrDeploymentNotReady, "%s=%s: Deployment %s/%s not found: check the name and namespace", dep.variable, name, ns, name)
		}
		if err != nil {
			// Keep waiting through a transient error (or a request cut short by the
			// deadline); it is reported if the wait ends without an answer.
			lastErr = err
			return false, nil
		}
		last, lastErr = d, nil
		return available(d), nil
	})
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return fmt.Errorf("failed to wait for Deployment %s/%s: %w", ns, name, ctx.Err())
	case !wait.Interrupted(err):
		return err
	case last != nil:
		return preflightf(ErrDeploymentNotReady, "Deployment %s/%s is not Available after %s (%d of %d replicas available, observed generation %d of %d): check its pods, or raise MESHROLL_READY_TIMEOUT",
			ns, name, checks.ReadyTimeout, last.Status.AvailableReplicas, replicas(last), last.Status.ObservedGeneration, last.Generation)
	default:
		return fmt.Errorf("failed to get Deployment %s/%s: %w", ns, name, lastErr)
	}
	podLabels := last.Spec.Template.Labels
	for k, v := range subsetLabels {
		if podLabels[k] != v {
			return preflightf(ErrDeploymentNotReady, "the %s subset %q selects %s but the pods of Deployment %s/%s are labelled %s: point %s at the %s's Deployment or fix the subset's labels",
				dep.role, dep.subset, labelString(subsetLabels), ns, name, labelString(podLabels), dep.variable, dep.role)
		}
	}
	return nil
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
