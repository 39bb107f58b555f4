package gatewayapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/cluster"
)

// Kinds of preflight failure particular to HTTPRoutes; each also matches traffic.ErrPreflight.
var (
	// ErrNotAccepted means no parent (Gateway, or Service for mesh routing) accepted the
	// HTTPRoute: whatever meshroll wrote to it would move no traffic.
	ErrNotAccepted = errors.New("HTTPRoute not accepted")
	// ErrNoReferenceGrant means a backendRef to another namespace lacks the ReferenceGrant
	// that allows it: the implementation would not send that backend traffic.
	ErrNoReferenceGrant = errors.New("cross-namespace backendRef without a ReferenceGrant")
)

// Preflight checks, without writing anything, that the rule can be steered: the HTTPRoute
// exists, is not a controller's, and is Accepted by at least one parent; the credentials may
// do what the run needs; the Services exist, and one in another namespace is allowed by a
// ReferenceGrant; the Deployments are Available with pods the Services select.
func (c *Client) Preflight(ctx context.Context, checks traffic.Checks) (traffic.State, error) {
	state, obj, err := c.readObject(ctx, kube.Retry)
	if err != nil {
		return nil, err
	}
	if owner := metav1.GetControllerOf(&obj.Metadata); owner != nil {
		return nil, traffic.Preflightf(traffic.ErrOwnedByController, "%s is managed by %s %s (%s): its controller would undo every change meshroll makes; run the rollout through that controller, or steer an HTTPRoute you own",
			c.object(), owner.Kind, owner.Name, owner.APIVersion)
	}
	if err := accepted(c.object(), obj.Status); err != nil {
		return nil, err
	}
	roles := []traffic.Role{traffic.RoleStable}
	if checks.Canary {
		roles = append(roles, traffic.RoleCanary)
	}
	if err := c.checkAccess(ctx, checks, roles); err != nil {
		return nil, err
	}
	pods := map[traffic.Role]cluster.Pods{}
	for _, r := range roles {
		svc := c.target.service(r)
		variable := "MESHROLL_STABLE_SERVICE"
		if r == traffic.RoleCanary {
			variable = "MESHROLL_CANARY_SERVICE"
		}
		selector, err := cluster.ServiceSelector(ctx, c.kube, c.target.Namespace, variable, svc.name+"."+svc.namespace)
		if err != nil {
			return nil, err
		}
		if svc.namespace != c.target.Namespace {
			if err := c.granted(ctx, svc); err != nil {
				return nil, err
			}
		}
		pods[r] = cluster.Pods{Labels: selector, SelectedBy: fmt.Sprintf("Service %q", c.target.label(svc)), Fix: "the Service's selector"}
	}
	if err := cluster.WaitDeployments(ctx, c.kube, c.target.Namespace, checks, pods); err != nil {
		return nil, err
	}
	return state, nil
}

// accepted fails unless at least one parent accepted the HTTPRoute (condition Accepted,
// status True), naming each parent that did not and why.
func accepted(object string, status gatewayv1.HTTPRouteStatus) error {
	var refused []string
	for _, p := range status.Parents {
		parent := string(p.ParentRef.Name)
		if p.ParentRef.Kind != nil {
			parent = string(*p.ParentRef.Kind) + " " + parent
		}
		if p.ParentRef.Namespace != nil {
			parent += " in namespace " + string(*p.ParentRef.Namespace)
		}
		cond := meta(p.Conditions, string(gatewayv1.RouteConditionAccepted))
		switch {
		case cond == nil:
			refused = append(refused, fmt.Sprintf("%s (controller %s) has not said yet", parent, p.ControllerName))
		case cond.Status == metav1.ConditionTrue:
			return nil
		default:
			refused = append(refused, fmt.Sprintf("%s (controller %s) did not accept it: %s: %s", parent, p.ControllerName, cond.Reason, cond.Message))
		}
	}
	if len(refused) == 0 {
		return traffic.Preflightf(ErrNotAccepted, "%s is not accepted by any parent (its status lists none): no Gateway API implementation has taken it, so a change would move no traffic; check its parentRefs and that an implementation (Istio, …) watches them", object)
	}
	return traffic.Preflightf(ErrNotAccepted, "%s is not accepted by any parent, so a change would move no traffic: %s", object, strings.Join(refused, "; "))
}

func meta(conditions []metav1.Condition, typ string) *metav1.Condition {
	for i := range conditions {
		if conditions[i].Type == typ {
			return &conditions[i]
		}
	}
	return nil
}

// granted checks that a ReferenceGrant in the Service's namespace lets HTTPRoutes of the
// HTTPRoute's namespace refer to it.
func (c *Client) granted(ctx context.Context, svc service) error {
	grants, err := cluster.Retried(ctx, func(ctx context.Context) (*gatewayv1.ReferenceGrantList, error) {
		return c.gateway.GatewayV1().ReferenceGrants(svc.namespace).List(ctx, metav1.ListOptions{})
	})
	if err != nil {
		return fmt.Errorf("failed to list ReferenceGrants in namespace %s: %w", svc.namespace, err)
	}
	for _, g := range grants.Items {
		from := slices.ContainsFunc(g.Spec.From, func(f gatewayv1.ReferenceGrantFrom) bool {
			return f.Group == gatewayv1.GroupName && f.Kind == Kind && string(f.Namespace) == c.target.Namespace
		})
		to := slices.ContainsFunc(g.Spec.To, func(t gatewayv1.ReferenceGrantTo) bool {
			return t.Group == "" && t.Kind == "Service" && (t.Name == nil || *t.Name == "" || string(*t.Name) == svc.name)
		})
		if from && to {
			return nil
		}
	}
	return traffic.Preflightf(ErrNoReferenceGrant, "%s would send traffic to Service %s/%s in another namespace, which no ReferenceGrant in namespace %s allows: add one (from HTTPRoutes in namespace %s to Service %s), or use a Service in namespace %s",
		c.object(), svc.namespace, svc.name, svc.namespace, c.target.Namespace, svc.name, c.target.Namespace)
}

// checkAccess asks the API server (SelfSubjectAccessReview) whether the credentials in use
// may do everything the run needs, so that a missing permission stops the run before the
// first write rather than halfway through a progression.
func (c *Client) checkAccess(ctx context.Context, checks traffic.Checks, roles []traffic.Role) error {
	ns := c.target.Namespace
	needs := []kube.Permission{{Verb: "get", Group: gatewayv1.GroupName, Resource: resource, Namespace: ns}}
	for _, r := range roles {
		svc := c.target.service(r)
		for _, p := range []kube.Permission{
			{Verb: "get", Resource: "services", Namespace: svc.namespace},
			{Verb: "list", Group: gatewayv1.GroupName, Resource: "referencegrants", Namespace: svc.namespace},
		} {
			if (p.Resource == "services" || svc.namespace != ns) && !slices.Contains(needs, p) {
				needs = append(needs, p)
			}
		}
	}
	if checks.CanaryDeployment != "" || checks.StableDeployment != "" {
		needs = append(needs, kube.Permission{Verb: "get", Group: "apps", Resource: "deployments", Namespace: ns})
	}
	if checks.Write {
		needs = append(needs, kube.Permission{Verb: "patch", Group: gatewayv1.GroupName, Resource: resource, Namespace: ns},
			kube.Permission{Verb: "create", Resource: "events", Namespace: ns})
	}
	missing, err := kube.Missing(ctx, c.kube, needs)
	if err != nil {
		return err
	}
	return cluster.Forbidden(missing)
}
