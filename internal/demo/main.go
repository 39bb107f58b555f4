// Command demo runs meshroll against a local control plane: it starts etcd and
// kube-apiserver with Istio's CRDs, creates a small Bookinfo-like namespace, runs the built
// meshroll binary in progress mode with short steps while printing the weights the cluster
// holds after each change, and stops everything it started. Run it with `make demo`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

const namespace = "demo"

const manifests = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - name: tester
    match:
    - headers:
        end-user: {exact: tester}
    route:
    - destination: {host: reviews, subset: v2}
  - name: default
    retries: {attempts: 3, perTryTimeout: 2s}
    route:
    - destination: {host: reviews, subset: v1}
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
`

func main() {
	bin := flag.String("bin", "bin/meshroll", "the meshroll binary to run")
	steps := flag.String("steps", "10,25,50,100", "MESHROLL_STEPS for the rollout")
	hold := flag.Duration("hold", 2*time.Second, "MESHROLL_STEP_DURATION for the rollout")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *steps, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, steps string, hold time.Duration) error {
	fmt.Println("demo: starting etcd and kube-apiserver with Istio's CRDs ...")
	env, err := testenv.Start(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: failed to stop the control plane:", err)
		}
		fmt.Println("demo: control plane stopped")
	}()
	if err := setUp(ctx, env); err != nil {
		return err
	}
	fmt.Printf("demo: namespace %s has VirtualService reviews (all traffic on v1), DestinationRule reviews, Deployments reviews-v1 and reviews-v2\n\n", namespace)

	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); printWeights(watchCtx, env) }()

	base := []string{
		"KUBECONFIG=" + env.Kubeconfig,
		"HOME=" + os.Getenv("HOME"),
		"MESHROLL_NAMESPACE=" + namespace,
		"MESHROLL_VIRTUAL_SERVICE=reviews",
		"MESHROLL_STABLE_SUBSET=v1",
		"MESHROLL_CANARY_SUBSET=v2",
	}
	runs := [][]string{
		{"MESHROLL_MODE=status"},
		{"MESHROLL_MODE=progress", "MESHROLL_STEPS=" + steps, "MESHROLL_STEP_DURATION=" + hold.String(), "MESHROLL_CANARY_DEPLOYMENT=reviews-v2"},
		{"MESHROLL_MODE=rollback"},
	}
	for _, vars := range runs {
		fmt.Printf("$ %s %s\n", strings.Join(vars, " "), bin)
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = append(append([]string{}, base...), vars...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := cmd.Run()
		time.Sleep(200 * time.Millisecond) // let the watcher print the last change first
		if err != nil {
			stopWatch()
			<-watched
			return fmt.Errorf("meshroll %s: %w", vars[0], err)
		}
		fmt.Println()
	}
	stopWatch()
	<-watched
	return printEvents(ctx, env)
}

func setUp(ctx context.Context, env *testenv.Env) error {
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("failed to create namespace %s: %w", namespace, err)
	}
	docs := manifests + "---" + testenv.DeploymentManifest("reviews-v1", "v1") + "---" + testenv.DeploymentManifest("reviews-v2", "v2")
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(docs), 4096)
	resources := map[string]schema.GroupVersionResource{
		"VirtualService":  {Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
		"DestinationRule": {Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
		"Deployment":      {Group: "apps", Version: "v1", Resource: "deployments"},
	}
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			break
		}
		if len(obj.Object) == 0 {
			continue
		}
		if _, err := env.Dynamic.Resource(resources[obj.GetKind()]).Namespace(namespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("failed to create %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	// No controllers run here: play the Deployment controller.
	for _, d := range []string{"reviews-v1", "reviews-v2"} {
		if err := env.SetDeploymentStatus(ctx, namespace, d, true); err != nil {
			return err
		}
	}
	return nil
}

// printWeights prints the weights the cluster holds every time the VirtualService changes.
func printWeights(ctx context.Context, env *testenv.Env) {
	w, err := env.Istio.NetworkingV1().VirtualServices(namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=reviews"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: failed to watch the VirtualService:", err)
		return
	}
	defer w.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			vs, ok := ev.Object.(*clientnetworking.VirtualService)
			if !ok {
				continue
			}
			state, err := traffic.NewState(namespace, vs.Name, vs.ResourceVersion, &vs.Spec, traffic.Target{Namespace: namespace, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
			if err != nil {
				continue
			}
			if line := traffic.DescribeWeights(state.Destinations); line != last {
				fmt.Printf("    [cluster] VirtualService reviews, route %s: %s (resourceVersion %s)\n", state.Route, line, vs.ResourceVersion)
				last = line
			}
		}
	}
}

func printEvents(ctx context.Context, env *testenv.Env) error {
	events, err := env.Kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("failed to list events: %w", err)
	}
	// In creation order (resourceVersions are increasing integers on this single API server).
	sort.Slice(events.Items, func(i, j int) bool {
		a, _ := strconv.Atoi(events.Items[i].ResourceVersion)
		b, _ := strconv.Atoi(events.Items[j].ResourceVersion)
		return a < b
	})
	fmt.Println("demo: Events recorded on the VirtualService (kubectl get events -n demo):")
	for _, e := range events.Items {
		fmt.Printf("    %s  %s  %s\n", e.Reason, e.InvolvedObject.Name, e.Message)
	}
	return nil
}
