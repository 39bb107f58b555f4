package testenv_test

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshroll/meshroll/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.Main(m)
}

func TestKubeconfig(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)

	raw, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatalf("failed to load kubeconfig: %v", err)
	}
	if raw.CurrentContext != testenv.KubeContext {
		t.Errorf("current context = %q, want %q", raw.CurrentContext, testenv.KubeContext)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, nil).ClientConfig()
	if err != nil {
		t.Fatalf("failed to build rest config from kubeconfig: %v", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("failed to create client: %v", err)
	}
	if _, err := kube.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Errorf("failed to get namespace default through kubeconfig: %v", err)
	}
}

func TestVirtualServiceVersions(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)

	crd, err := env.APIExt.ApiextensionsV1().CustomResourceDefinitions().Get(t.Context(), "virtualservices.networking.istio.io", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("failed to get VirtualService CRD: %v", err)
	}
	var served []string
	for _, v := range crd.Spec.Versions {
		if v.Served {
			served = append(served, v.Name)
		}
	}
	for _, want := range []string{"v1", "v1beta1", "v1alpha3"} {
		if !slices.Contains(served, want) {
			t.Errorf("VirtualService CRD serves %v, want %s among them", served, want)
		}
	}

	ns := env.Namespace(t)
	env.Apply(t, ns, `
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - name: primary
    route:
    - destination: {host: reviews, subset: stable}
      weight: 90
    - destination: {host: reviews, subset: canary}
      weight: 10
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - {name: stable, labels: {version: v1}}
  - {name: canary, labels: {version: v2}}
`)
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("failed to get VirtualService as v1: %v", err)
	}
	if got := vs.Spec.GetHttp()[0].GetRoute()[1]; got.GetDestination().GetSubset() != "canary" || got.GetWeight() != 10 {
		t.Errorf("second destination = %v, want subset canary with weight 10", got)
	}
	gvr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}
	if _, err := env.Dynamic.Resource(gvr).Namespace(ns).Get(t.Context(), "reviews", metav1.GetOptions{}); err != nil {
		t.Errorf("failed to get VirtualService as v1alpha3: %v", err)
	}
	if _, err := env.Istio.NetworkingV1().DestinationRules(ns).Get(t.Context(), "reviews", metav1.GetOptions{}); err != nil {
		t.Errorf("failed to get DestinationRule as v1: %v", err)
	}
}

func TestSetDeploymentStatus(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v2
spec:
  replicas: 3
  selector:
    matchLabels: {app: reviews, version: v2}
  template:
    metadata:
      labels: {app: reviews, version: v2}
    spec:
      containers:
      - {name: app, image: example.invalid/reviews:v2}
`)

	for _, tc := range []struct {
		available bool
		want      corev1.ConditionStatus
		replicas  int32
	}{
		{available: true, want: corev1.ConditionTrue, replicas: 3},
		{available: false, want: corev1.ConditionFalse, replicas: 0},
	} {
		if err := env.SetDeploymentStatus(t.Context(), ns, "reviews-v2", tc.available); err != nil {
			t.Fatal(err)
		}
		d, err := env.Kube.AppsV1().Deployments(ns).Get(t.Context(), "reviews-v2", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("failed to get deployment: %v", err)
		}
		if d.Status.ObservedGeneration != d.Generation || d.Status.AvailableReplicas != tc.replicas || d.Status.ReadyReplicas != tc.replicas {
			t.Errorf("available=%v: status = %+v, want observedGeneration %d and %d ready/available replicas", tc.available, d.Status, d.Generation, tc.replicas)
		}
		i := slices.IndexFunc(d.Status.Conditions, func(c appsv1.DeploymentCondition) bool { return c.Type == appsv1.DeploymentAvailable })
		if i < 0 || d.Status.Conditions[i].Status != tc.want {
			t.Errorf("available=%v: conditions = %+v, want Available=%s", tc.available, d.Status.Conditions, tc.want)
		}
	}
}

func TestNamespaceName(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	t.Run("Mixed_CASE.and.dots_a-very-long-subtest-name-that-goes-well-beyond-sixty-three-characters", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			t.Errorf("namespace %q is not a DNS label: %v", ns, errs)
		}
		if other := env.Namespace(t); other == ns {
			t.Errorf("two namespaces for one test are both named %q", ns)
		}
	})
}
