package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
)

// istioManifests: all traffic on v1; the DestinationRule defines a subset per version.
const istioManifests = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - name: default
    route:
    - destination: {host: reviews, subset: v1}
      weight: 100
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {app: reviews, version: v1}}
  - {name: v2, labels: {app: reviews, version: v2}}
  - {name: v3, labels: {app: reviews, version: v3}}
  - {name: v4, labels: {app: reviews, version: v4}}
  - {name: v5, labels: {app: reviews, version: v5}}
`

// virtualService is the demo on Istio: the VirtualService reviews routes to the
// DestinationRule's subsets v1 to v5. It prints the weights of every version of the
// VirtualService, and its HTTP routes whenever they are not those it printed last: the A/B
// route and the mirror of a rollout come and go.
type virtualService struct{ lastRoutes string }

func (*virtualService) kind() string      { return "VirtualService" }
func (*virtualService) crds() string      { return "Istio's CRDs" }
func (*virtualService) manifests() string { return istioManifests }

func (*virtualService) resources() map[string]schema.GroupVersionResource {
	return map[string]schema.GroupVersionResource{
		"VirtualService":  {Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
		"DestinationRule": {Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
	}
}

func (*virtualService) ready(context.Context, *testenv.Env) error { return nil }

func (*virtualService) described() string {
	return "VirtualService reviews (one route, default: all traffic on v1), DestinationRule reviews and Deployments reviews-v1 to -v5"
}

func (*virtualService) meshOptions(env *testenv.Env) meshsim.Options {
	var vs []meshsim.Version
	for _, v := range versions {
		vs = append(vs, meshsim.Version{Subset: v, Workload: "reviews-" + v})
	}
	return meshsim.Options{Istio: env.Istio, Namespace: namespace, VirtualService: "reviews", Versions: vs}
}

func (*virtualService) vars() []string { return []string{"MESHROLL_VIRTUAL_SERVICE=reviews"} }

func (*virtualService) versionVars(stable, canary string) []string {
	return []string{"MESHROLL_STABLE_SUBSET=" + stable, "MESHROLL_CANARY_SUBSET=" + canary}
}

func (p *virtualService) get(ctx context.Context, env *testenv.Env) (string, error) {
	vs, err := env.Istio.NetworkingV1().VirtualServices(namespace).Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("failed to get VirtualService %s/reviews: %w", namespace, err)
	}
	p.print(vs)
	return vs.ResourceVersion, nil
}

func (*virtualService) watch(ctx context.Context, env *testenv.Env, opts metav1.ListOptions) (watch.Interface, error) {
	return env.Istio.NetworkingV1().VirtualServices(namespace).Watch(ctx, opts)
}

func (p *virtualService) print(obj runtime.Object) {
	vs, ok := obj.(*clientnetworking.VirtualService)
	if !ok {
		return
	}
	fmt.Printf("    [cluster] VirtualService reviews %s (resourceVersion %s)\n", vsWeights(vs), vs.ResourceVersion)
	if r := vsRoutes(vs); r != p.lastRoutes {
		fmt.Printf("    [cluster] VirtualService reviews http routes, in order: %s\n", r)
		p.lastRoutes = r
	}
}

// vsWeights renders every HTTP route's weights: "route default: v1 0, v2 80, v3 20". A lone
// destination takes all of its route's requests, whatever its weight says.
func vsWeights(vs *clientnetworking.VirtualService) string {
	var routes []string
	for _, r := range vs.Spec.Http {
		var ds []string
		for _, d := range r.Route {
			w := d.Weight
			if len(r.Route) == 1 {
				w = 100
			}
			ds = append(ds, fmt.Sprintf("%s %d", d.GetDestination().GetSubset(), w))
		}
		routes = append(routes, "route "+r.Name+": "+strings.Join(ds, ", "))
	}
	return strings.Join(routes, "; ")
}

// vsRoutes renders the HTTP routes by name, in the order a request tries them, each with the
// requests it takes and its mirror: `meshroll-ab-v4 (only
// [{"headers":{"end-user":{"exact":"jason"}}}]), default (mirror 50% to v4)`.
func vsRoutes(vs *clientnetworking.VirtualService) string {
	var out []string
	for _, r := range vs.Spec.Http {
		var about []string
		if len(r.Match) > 0 {
			match, err := json.Marshal(r.Match)
			if err != nil {
				match = []byte(fmt.Sprint(r.Match))
			}
			about = append(about, "only "+string(match))
		}
		if m := r.Mirror; m != nil {
			percent := 100.0 // Istio's default
			if r.MirrorPercentage != nil {
				percent = r.MirrorPercentage.Value
			}
			about = append(about, fmt.Sprintf("mirror %g%% to %s", percent, m.Subset))
		}
		out = append(out, annotated(r.Name, about))
	}
	return strings.Join(out, ", ")
}

// annotated is name, followed by what is said about it in parentheses when anything is.
func annotated(name string, about []string) string {
	if len(about) == 0 {
		return name
	}
	return fmt.Sprintf("%s (%s)", name, strings.Join(about, "; "))
}

func (*virtualService) checkRestored(ctx context.Context, env *testenv.Env) error {
	vs, err := env.Istio.NetworkingV1().VirtualServices(namespace).Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("failed to get VirtualService %s/reviews: %w", namespace, err)
	}
	var names []string
	mirrored := false
	for _, r := range vs.Spec.Http {
		names = append(names, r.Name)
		mirrored = mirrored || r.Mirror != nil || len(r.Mirrors) > 0
	}
	if !slices.Equal(names, []string{"default"}) || mirrored {
		return fmt.Errorf("the VirtualService was left with the routes %s", vsRoutes(vs))
	}
	return nil
}
