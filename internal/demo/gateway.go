package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
)

// gatewayManifests: a mesh HTTPRoute (GAMMA: its parent is the Service reviews the callers
// call) whose rule default sends all traffic to reviews-v1. Each version has a Service of its
// own, which the backendRefs name; gatewayServices adds them.
const gatewayManifests = `
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - name: default
    backendRefs: [{name: reviews-v1, port: 9080}]
`

// gatewayServices are the Services reviews-v1 to -v5, each selecting its version's pods.
func gatewayServices() string {
	var docs []string
	for _, v := range versions {
		docs = append(docs, fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {name: reviews-%[1]s}
spec: {selector: {app: reviews, version: %[1]s}, ports: [{name: http, port: 9080}]}
`, v))
	}
	return strings.Join(docs, "---")
}

// httpRoute is the demo on the Gateway API: the HTTPRoute reviews routes to the Services
// reviews-v1 to -v5. It prints the relative weights of every rule's backendRefs with their
// shares, and the rules whenever they are not those it printed last: the A/B rule and the
// mirror of a rollout come and go.
type httpRoute struct{ lastRules string }

func (*httpRoute) kind() string      { return "HTTPRoute" }
func (*httpRoute) crds() string      { return "the Gateway API's CRDs" }
func (*httpRoute) manifests() string { return gatewayManifests + "---" + gatewayServices() }

func (*httpRoute) resources() map[string]schema.GroupVersionResource {
	return map[string]schema.GroupVersionResource{
		"Service":   {Version: "v1", Resource: "services"},
		"HTTPRoute": {Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"},
	}
}

// ready marks the HTTPRoute Accepted by its parent, as Istio's mesh controller would: meshroll
// refuses a route no parent accepted, since no implementation would route by it.
func (*httpRoute) ready(ctx context.Context, env *testenv.Env) error {
	routes := env.Gateway.GatewayV1().HTTPRoutes(namespace)
	hr, err := routes.Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("failed to get HTTPRoute %s/reviews: %w", namespace, err)
	}
	hr.Status.Parents = []gatewayv1.RouteParentStatus{{
		ParentRef:      hr.Spec.ParentRefs[0],
		ControllerName: "istio.io/mesh-controller",
		Conditions: []metav1.Condition{{
			Type: string(gatewayv1.RouteConditionAccepted), Status: metav1.ConditionTrue,
			Reason: string(gatewayv1.RouteReasonAccepted), LastTransitionTime: metav1.Now(),
		}},
	}}
	if _, err := routes.UpdateStatus(ctx, hr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("failed to mark HTTPRoute %s/reviews accepted: %w", namespace, err)
	}
	return nil
}

func (*httpRoute) described() string {
	return "HTTPRoute reviews (parent: the Service reviews; one rule, default: all traffic on reviews-v1; " +
		"marked Accepted by hand, as no controller runs here), Services reviews-v1 to -v5 (one per version) and Deployments reviews-v1 to -v5"
}

func (*httpRoute) meshOptions(env *testenv.Env) meshsim.Options {
	var vs []meshsim.Version
	for _, v := range versions {
		vs = append(vs, meshsim.Version{Subset: v, Workload: "reviews-" + v, Service: "reviews-" + v})
	}
	return meshsim.Options{Gateway: env.Gateway, Namespace: namespace, HTTPRoute: "reviews", Versions: vs}
}

func (*httpRoute) vars() []string { return []string{"MESHROLL_HTTP_ROUTE=reviews"} }

func (*httpRoute) versionVars(stable, canary string) []string {
	return []string{"MESHROLL_STABLE_SERVICE=reviews-" + stable, "MESHROLL_CANARY_SERVICE=reviews-" + canary}
}

func (p *httpRoute) get(ctx context.Context, env *testenv.Env) (string, error) {
	hr, err := env.Gateway.GatewayV1().HTTPRoutes(namespace).Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("failed to get HTTPRoute %s/reviews: %w", namespace, err)
	}
	p.print(hr)
	return hr.ResourceVersion, nil
}

func (*httpRoute) watch(ctx context.Context, env *testenv.Env, opts metav1.ListOptions) (watch.Interface, error) {
	return env.Gateway.GatewayV1().HTTPRoutes(namespace).Watch(ctx, opts)
}

func (p *httpRoute) print(obj runtime.Object) {
	hr, ok := obj.(*gatewayv1.HTTPRoute)
	if !ok {
		return
	}
	fmt.Printf("    [cluster] HTTPRoute reviews %s (resourceVersion %s)\n", hrWeights(hr), hr.ResourceVersion)
	if r := hrRules(hr); r != p.lastRules {
		fmt.Printf("    [cluster] HTTPRoute reviews rules, as listed (a request takes the rule of its most specific match): %s\n", r)
		p.lastRules = r
	}
}

// ruleName is a rule's name, or rules[i] when it has none.
func ruleName(r gatewayv1.HTTPRouteRule, i int) string {
	if r.Name != nil && *r.Name != "" {
		return string(*r.Name)
	}
	return fmt.Sprintf("rules[%d]", i)
}

// hrWeights renders every rule's backendRefs with their relative weights (1 when unset) and
// the share of the rule's requests each takes: "rule default: reviews-v1 80 (80%), reviews-v2
// 20 (20%)".
func hrWeights(hr *gatewayv1.HTTPRoute) string {
	var rules []string
	for i, r := range hr.Spec.Rules {
		weights, total := make([]int, len(r.BackendRefs)), 0
		for j, b := range r.BackendRefs {
			weights[j] = 1
			if b.Weight != nil {
				weights[j] = int(*b.Weight)
			}
			total += weights[j]
		}
		var bs []string
		for j, b := range r.BackendRefs {
			bs = append(bs, fmt.Sprintf("%s %d (%d%%)", b.Name, weights[j], share(weights[j], total)))
		}
		rules = append(rules, "rule "+ruleName(r, i)+": "+strings.Join(bs, ", "))
	}
	return strings.Join(rules, "; ")
}

// hrRules renders the rules by name, each with the requests it takes unless it takes every
// path, and its mirrors: `meshroll-ab-reviews-v4 (only [{"path":…,"headers":[{"type":"Exact",
// "name":"end-user","value":"jason"}]}]), default (mirror 50% to reviews-v4)`.
func hrRules(hr *gatewayv1.HTTPRoute) string {
	var out []string
	for i, r := range hr.Spec.Rules {
		var about []string
		if slices.ContainsFunc(r.Matches, narrows) {
			match, err := json.Marshal(r.Matches)
			if err != nil {
				match = []byte(fmt.Sprint(r.Matches))
			}
			about = append(about, "only "+string(match))
		}
		for _, f := range r.Filters {
			if m := f.RequestMirror; f.Type == gatewayv1.HTTPRouteFilterRequestMirror && m != nil {
				about = append(about, fmt.Sprintf("mirror %g%% to %s", mirrorPercent(m), m.BackendRef.Name))
			}
		}
		out = append(out, annotated(ruleName(r, i), about))
	}
	return strings.Join(out, ", ")
}

// share is weight's share of total in percent, rounded to the nearest integer, as meshroll
// shows relative weights; 0 when the weights sum to 0 (nothing is sent).
func share(weight, total int) int {
	if total <= 0 {
		return 0
	}
	return (weight*200 + total) / (2 * total)
}

// narrows says whether a match takes less than every request: anything but the path prefix /
// alone, which the API server sets on a rule without matches.
func narrows(m gatewayv1.HTTPRouteMatch) bool {
	everyPath := m.Path == nil || (m.Path.Type == nil || *m.Path.Type == gatewayv1.PathMatchPathPrefix) && (m.Path.Value == nil || *m.Path.Value == "/")
	return !everyPath || m.Method != nil || len(m.Headers) > 0 || len(m.QueryParams) > 0
}

// mirrorPercent is the share of the rule's requests a RequestMirror filter copies: percent,
// else fraction (denominator 100 when unset), else all of them.
func mirrorPercent(m *gatewayv1.HTTPRequestMirrorFilter) float64 {
	switch {
	case m.Percent != nil:
		return float64(*m.Percent)
	case m.Fraction != nil:
		denominator := int32(100)
		if m.Fraction.Denominator != nil {
			denominator = *m.Fraction.Denominator
		}
		if denominator > 0 {
			return 100 * float64(m.Fraction.Numerator) / float64(denominator)
		}
		return 0
	}
	return 100
}

func (*httpRoute) checkRestored(ctx context.Context, env *testenv.Env) error {
	hr, err := env.Gateway.GatewayV1().HTTPRoutes(namespace).Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("failed to get HTTPRoute %s/reviews: %w", namespace, err)
	}
	var names []string
	mirrored := false
	for i, r := range hr.Spec.Rules {
		names = append(names, ruleName(r, i))
		for _, f := range r.Filters {
			mirrored = mirrored || f.Type == gatewayv1.HTTPRouteFilterRequestMirror
		}
	}
	if !slices.Equal(names, []string{"default"}) || mirrored {
		return fmt.Errorf("the HTTPRoute was left with the rules %s", hrRules(hr))
	}
	return nil
}
