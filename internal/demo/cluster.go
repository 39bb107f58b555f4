package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshroll/meshroll/internal/testenv"
)

// manifests: all traffic on v1; the DestinationRule defines a subset per version.
const manifests = `
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

// setUp creates the namespace, the VirtualService, the DestinationRule and the Deployments,
// and marks the Deployments Available.
func setUp(ctx context.Context, env *testenv.Env) error {
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("failed to create namespace %s: %w", namespace, err)
	}
	docs := manifests
	for _, v := range versions {
		docs += "---" + testenv.DeploymentManifest("reviews-"+v, v)
	}
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(docs), 4096)
	resources := map[string]schema.GroupVersionResource{
		"VirtualService":  {Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
		"DestinationRule": {Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
		"Deployment":      {Group: "apps", Version: "v1", Resource: "deployments"},
	}
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("failed to decode the demo manifests: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if _, err := env.Dynamic.Resource(resources[obj.GetKind()]).Namespace(namespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("failed to create %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	// No controllers run here: play the Deployment controller.
	for _, v := range versions {
		if err := env.SetDeploymentStatus(ctx, namespace, "reviews-"+v, true); err != nil {
			return err
		}
	}
	return nil
}

// watchWeights prints the VirtualService as the cluster holds it and starts watching it from
// there. (A watch from "now", without a resourceVersion, can fail on this API server with
// "Too large resource version" when other objects were written since the last change.)
func watchWeights(ctx context.Context, env *testenv.Env, p *vsPrinter) (watch.Interface, error) {
	vss := env.Istio.NetworkingV1().VirtualServices(namespace)
	vs, err := vss.Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to get VirtualService %s/reviews: %w", namespace, err)
	}
	p.print(vs)
	w, err := vss.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=reviews", ResourceVersion: vs.ResourceVersion})
	if err != nil {
		return nil, fmt.Errorf("failed to watch VirtualService %s/reviews: %w", namespace, err)
	}
	return w, nil
}

// printWeights prints the VirtualService every time it changes.
func printWeights(ctx context.Context, w watch.Interface, p *vsPrinter) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			switch obj := ev.Object.(type) {
			case *clientnetworking.VirtualService:
				p.print(obj)
			case *metav1.Status:
				fmt.Fprintln(os.Stderr, "demo: watching the VirtualService failed:", obj.Message)
				return
			}
		}
	}
}

// vsPrinter prints the weights of every version of the VirtualService, and its HTTP routes
// whenever they are not those it printed last: the A/B route and the mirror of a rollout come
// and go.
type vsPrinter struct{ lastRoutes string }

func (p *vsPrinter) print(vs *clientnetworking.VirtualService) {
	fmt.Printf("    [cluster] VirtualService reviews %s (resourceVersion %s)\n", weights(vs), vs.ResourceVersion)
	if r := routes(vs); r != p.lastRoutes {
		fmt.Printf("    [cluster] VirtualService reviews http routes, in order: %s\n", r)
		p.lastRoutes = r
	}
}

// weights renders every HTTP route's weights: "route default: v1 0, v2 80, v3 20". A lone
// destination takes all of its route's requests, whatever its weight says.
func weights(vs *clientnetworking.VirtualService) string {
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

// routes renders the HTTP routes by name, in the order a request tries them, each with the
// requests it takes and its mirror: `meshroll-ab-v4 (only
// [{"headers":{"end-user":{"exact":"jason"}}}]), default (mirror 50% to v4)`.
func routes(vs *clientnetworking.VirtualService) string {
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
		if len(about) > 0 {
			out = append(out, fmt.Sprintf("%s (%s)", r.Name, strings.Join(about, "; ")))
		} else {
			out = append(out, r.Name)
		}
	}
	return strings.Join(out, ", ")
}

// checkRestored fails unless the VirtualService has its one route, default, without a mirror:
// whatever a rollout added for its stages is gone once it ends, either way.
func checkRestored(ctx context.Context, env *testenv.Env) error {
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
		return fmt.Errorf("the VirtualService was left with the routes %s", routes(vs))
	}
	return nil
}
