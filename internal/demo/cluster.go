package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
)

// routing is the object the rollouts steer and the mesh follows: Istio's VirtualService
// (istio.go) or the Gateway API's HTTPRoute (gateway.go), both named reviews.
type routing interface {
	kind() string // "VirtualService", "HTTPRoute"
	crds() string // the CRDs the demo uses, for its first line
	// manifests are the objects the routing needs beside the Deployments, by kind in resources.
	manifests() string
	resources() map[string]schema.GroupVersionResource
	// ready completes the objects once created: what a controller would do.
	ready(ctx context.Context, env *testenv.Env) error
	described() string // what the namespace holds once set up
	meshOptions(env *testenv.Env) meshsim.Options
	vars() []string                             // the MESHROLL_* variables naming the object
	versionVars(stable, canary string) []string // those naming a rollout's versions
	// get prints the object as the cluster holds it and returns its resourceVersion.
	get(ctx context.Context, env *testenv.Env) (string, error)
	watch(ctx context.Context, env *testenv.Env, opts metav1.ListOptions) (watch.Interface, error)
	print(obj runtime.Object) // an object of its kind, as get prints it; others are ignored
	// checkRestored fails unless the object has its one route, default, without a mirror:
	// whatever a rollout added for its stages is gone once it ends, either way.
	checkRestored(ctx context.Context, env *testenv.Env) error
}

// apis are the routings the demo can run on, by the name -api takes.
var apis = map[string]func() routing{
	"istio":   func() routing { return &virtualService{} },
	"gateway": func() routing { return &httpRoute{} },
}

// setUp creates the namespace, the routing's objects and the Deployments, and marks the
// Deployments Available.
func setUp(ctx context.Context, env *testenv.Env, rt routing) error {
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("failed to create namespace %s: %w", namespace, err)
	}
	docs := rt.manifests()
	for _, v := range versions {
		docs += "---" + testenv.DeploymentManifest("reviews-"+v, v)
	}
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(docs), 4096)
	resources := rt.resources()
	resources["Deployment"] = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
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
	return rt.ready(ctx, env)
}

// watchWeights prints the routing object as the cluster holds it and starts watching it from
// there. (A watch from "now", without a resourceVersion, can fail on this API server with
// "Too large resource version" when other objects were written since the last change.)
func watchWeights(ctx context.Context, env *testenv.Env, rt routing) (watch.Interface, error) {
	rv, err := rt.get(ctx, env)
	if err != nil {
		return nil, err
	}
	w, err := rt.watch(ctx, env, metav1.ListOptions{FieldSelector: "metadata.name=reviews", ResourceVersion: rv})
	if err != nil {
		return nil, fmt.Errorf("failed to watch %s %s/reviews: %w", rt.kind(), namespace, err)
	}
	return w, nil
}

// printWeights prints the routing object every time it changes.
func printWeights(ctx context.Context, w watch.Interface, rt routing) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			if status, ok := ev.Object.(*metav1.Status); ok {
				fmt.Fprintf(os.Stderr, "demo: watching the %s failed: %s\n", rt.kind(), status.Message)
				return
			}
			rt.print(ev.Object)
		}
	}
}
