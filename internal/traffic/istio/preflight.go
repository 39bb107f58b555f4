package istio

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/cluster"
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
	// pods is, per role, the labels its pods must carry: its subset's and its Service's.
	pods := map[traffic.Role]cluster.Pods{}
	subsets, err := c.subsets(ctx, state)
	if err != nil {
		return nil, err
	}
	for _, r := range roles {
		sd := c.target.side(r)
		p := cluster.Pods{Labels: map[string]string{}, SelectedBy: sd.String(), Fix: sd.fix()}
		if sd.subset != "" {
			labels, ok := subsets[sd.subset]
			if !ok {
				return nil, traffic.Preflightf(traffic.ErrSubsetNotDefined, "no DestinationRule for host %s defines subset %q (defined: %s): add it to the DestinationRule or fix %s",
					strings.Join(state.Hosts(), ", "), sd.subset, listOrNone(sortedKeys(subsets)), sd.subsetVar)
			}
			maps.Copy(p.Labels, labels)
		}
		if sd.service != "" {
			selector, err := cluster.ServiceSelector(ctx, c.kube, c.target.Namespace, sd.svcVar, sd.service)
			if err != nil {
				return nil, err
			}
			maps.Copy(p.Labels, selector)
		}
		pods[r] = p
	}
	if err := cluster.WaitDeployments(ctx, c.kube, c.target.Namespace, checks, pods); err != nil {
		return nil, err
	}
	return state, nil
}

// fix names what to correct when the pods of the side's Deployment do not carry the labels
// the side selects.
func (s side) fix() string {
	fix := "the subset's labels"
	if s.service != "" {
		fix = "the Service's selector"
		if s.subset != "" {
			fix += " or the subset's labels"
		}
	}
	return fix
}

// subsets collects the subsets (name → labels) that DestinationRules define for the hosts of
// the stable and canary destinations, looking in the VirtualService's namespace and in each
// host's own namespace.
func (c *Client) subsets(ctx context.Context, state *State) (map[string]map[string]string, error) {
	wantKeys := map[string]bool{}
	for _, h := range state.Hosts() {
		wantKeys[cluster.ServiceKey(h, state.routing.Namespace)] = true
	}
	if svc := c.target.CanaryService; svc != "" {
		// Not yet in the route before the first step.
		wantKeys[cluster.ServiceKey(svc, state.routing.Namespace)] = true
	}
	found := map[string]map[string]string{}
	for _, ns := range c.searchNamespaces(state) {
		list, err := cluster.Retried(ctx, func(ctx context.Context) (*clientnetworking.DestinationRuleList, error) {
			return c.istio.NetworkingV1().DestinationRules(ns).List(ctx, metav1.ListOptions{})
		})
		if err != nil {
			return nil, fmt.Errorf("failed to list DestinationRules in namespace %s: %w", ns, err)
		}
		for _, dr := range list.Items {
			if !wantKeys[cluster.ServiceKey(dr.Spec.Host, dr.Namespace)] {
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
		if ns := cluster.KeyNamespace(cluster.ServiceKey(h, state.routing.Namespace)); ns != "" && !contains(namespaces, ns) {
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
		if n := (kube.Permission{Verb: "get", Resource: "services", Namespace: cluster.KeyNamespace(cluster.ServiceKey(svc, ns))}); !slices.Contains(needs, n) {
			needs = append(needs, n)
		}
	}
	if checks.Write {
		needs = append(needs, kube.Permission{Verb: "patch", Group: "networking.istio.io", Resource: "virtualservices", Namespace: ns},
			kube.Permission{Verb: "create", Resource: "events", Namespace: ns})
	}
	missing, err := kube.Missing(ctx, c.kube, needs)
	if err != nil {
		return err
	}
	return cluster.Forbidden(missing)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
