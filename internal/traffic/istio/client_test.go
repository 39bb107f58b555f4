package istio

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func vsResource(version string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "networking.istio.io", Version: version, Resource: "virtualservices"}
}

func fixtureText(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "virtualservices", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

const destinationRule = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
`

func getRaw(t testing.TB, env *testenv.Env, version, ns string) *unstructured.Unstructured {
	t.Helper()
	obj, err := env.Dynamic.Resource(vsResource(version)).Namespace(ns).Get(context.Background(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// withoutServerFields drops the fields the API server maintains on every write.
func withoutServerFields(obj *unstructured.Unstructured) map[string]any {
	c := obj.DeepCopy()
	for _, f := range []string{"resourceVersion", "generation", "managedFields"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	return c.Object
}

func setWeights(t testing.TB, obj *unstructured.Unstructured, route int, weights ...int64) {
	t.Helper()
	routes, _, _ := unstructured.NestedSlice(obj.Object, "spec", "http")
	dests := routes[route].(map[string]any)["route"].([]any)
	for i, w := range weights {
		dests[i].(map[string]any)["weight"] = w
	}
	if err := unstructured.SetNestedSlice(obj.Object, routes, "spec", "http"); err != nil {
		t.Fatal(err)
	}
}

// A weight change leaves every other byte of the object alone: route policies, other routes,
// tcp routes, labels, annotations and status.
func TestSetCanaryWeightKeepsEverythingElse(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	manifest := strings.Replace(fixtureText(t, "weighted-with-policies.yaml"), "  namespace: bookinfo\n", `  labels:
    app: reviews
  annotations:
    team.example.com/owner: checkout
spec:
  tcp:
  - match:
    - port: 27017
    route:
    - destination:
        host: mongo
`, 1)
	manifest = strings.Replace(manifest, "spec:\n  hosts:", "  hosts:", 1)
	manifest = strings.Replace(manifest, "  http:\n", `  http:
  - name: mirror-tester
    match:
    - headers:
        end-user:
          exact: tester
    mirror:
      host: reviews
      subset: v3
    route:
    - destination:
        host: reviews
        subset: v2
`, 1)
	env.Apply(t, ns, manifest)
	status := getRaw(t, env, "v1", ns)
	status.Object["status"] = map[string]any{"observedGeneration": int64(1), "validationMessages": []any{map[string]any{"type": map[string]any{"code": "IST0101"}, "documentationUrl": "https://example.com"}}}
	if _, err := env.Dynamic.Resource(vsResource("v1")).Namespace(ns).UpdateStatus(t.Context(), status, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := getRaw(t, env, "v1", ns)

	c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
	applied, err := c.Apply(t.Context(), traffic.Desired{CanaryWeight: 25})
	if err != nil {
		t.Fatal(err)
	}
	if got := traffic.DescribeWeights(applied.After.Destinations); got != "v1 75, v2 25" || applied.After.Route != "default" {
		t.Fatalf("route %s after = %s", applied.After.Route, got)
	}
	after := getRaw(t, env, "v1", ns)
	want := before.DeepCopy()
	setWeights(t, want, 1, 75, 25)
	if diff := cmp.Diff(withoutServerFields(want), withoutServerFields(after)); diff != "" {
		t.Errorf("the write changed more than the weights (-want +got):\n%s", diff)
	}
	if after.GetResourceVersion() == before.GetResourceVersion() || applied.ResourceVersion != after.GetResourceVersion() {
		t.Errorf("resourceVersion %s → %s, applied %s", before.GetResourceVersion(), after.GetResourceVersion(), applied.ResourceVersion)
	}

	// The change is recorded as an Event on the VirtualService.
	events, err := env.Kube.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=reviews,involvedObject.kind=VirtualService"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Items) != 1 || events.Items[0].Reason != "WeightsChanged" || events.Items[0].Message != "route default: v1 90 → 75, v2 10 → 25" {
		t.Errorf("events = %+v", events.Items)
	}

	// The same weight again writes nothing and records nothing.
	again, err := c.Apply(t.Context(), traffic.Desired{CanaryWeight: 25})
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed || getRaw(t, env, "v1", ns).GetResourceVersion() != after.GetResourceVersion() {
		t.Errorf("second identical change wrote: changed=%v", again.Changed)
	}
	events, _ = env.Kube.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{})
	if len(events.Items) != 1 {
		t.Errorf("%d events after an unchanged step, want 1", len(events.Items))
	}
}

// A field that this Istio client does not know (as on a cluster with a newer Istio) survives a
// weight change: the typed client never writes the whole object back.
func TestUnknownFieldSurvives(t *testing.T) {
	env := testenv.Get(t) // not parallel: it widens the cluster-wide CRD schema
	ctx := t.Context()
	crd, err := env.APIExt.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "virtualservices.networking.istio.io", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range crd.Spec.Versions {
		http := crd.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"].Properties["http"]
		item := http.Items.Schema
		item.Properties["futureRetryBudget"] = apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr(true)}
		http.Items.Schema = item
		crd.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"].Properties["http"] = http
	}
	if _, err := env.APIExt.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	manifest := strings.Replace(fixtureText(t, "weighted-with-policies.yaml"), "    timeout: 10s\n", "    timeout: 10s\n    futureRetryBudget:\n      percent: 25\n      minRetryConcurrency: 3\n", 1)
	// The API server takes a moment to serve the new schema; until then it prunes the field.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_ = env.Dynamic.Resource(vsResource("v1")).Namespace(ns).Delete(ctx, "reviews", metav1.DeleteOptions{})
		env.Apply(t, ns, manifest)
		_, found, _ := unstructured.NestedFieldNoCopy(getRaw(t, env, "v1", ns).Object, "spec", "http")
		return found && strings.Contains(mustJSON(t, getRaw(t, env, "v1", ns).Object), "futureRetryBudget"), nil
	})
	if err != nil {
		t.Fatalf("the widened CRD schema was never served: %v", err)
	}
	// The typed client really does not know the field (else this test proves nothing).
	typed, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(mustJSON(t, typed), "futureRetryBudget") {
		t.Fatal("the typed Istio client kept futureRetryBudget; pick a field it does not know")
	}
	before := getRaw(t, env, "v1", ns)

	c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
	if _, err := c.Apply(ctx, traffic.Desired{CanaryWeight: 40}); err != nil {
		t.Fatal(err)
	}
	want := before.DeepCopy()
	setWeights(t, want, 0, 60, 40)
	if diff := cmp.Diff(withoutServerFields(want), withoutServerFields(getRaw(t, env, "v1", ns))); diff != "" {
		t.Errorf("unknown field or another field lost (-want +got):\n%s", diff)
	}
}

// patchBeforeFirstWrite makes another writer apply a JSON patch to the reviews
// VirtualService between c's first read and its first write.
func patchBeforeFirstWrite(t *testing.T, env *testenv.Env, ns string, c *Client, patch string) {
	t.Helper()
	var writes atomic.Int32
	c.beforeWrite = func(ctx context.Context) {
		if writes.Add(1) > 1 {
			return
		}
		if _, err := env.Istio.NetworkingV1().VirtualServices(ns).Patch(ctx, "reviews", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Error(err)
		}
	}
}

// Another writer changes the object between our read and our write: the guarded patch fails,
// meshroll re-reads and re-plans, and both changes are in the result.
func TestConcurrentWriter(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, fixtureText(t, "three-subsets.yaml")) // v1 60, v3 30, v2 10
	c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
	// Someone adds a timeout and moves the experiment v3 from 30 to 40.
	patchBeforeFirstWrite(t, env, ns, c, `[{"op":"add","path":"/spec/http/0/timeout","value":"3s"},{"op":"replace","path":"/spec/http/0/route/1/weight","value":40}]`)
	applied, err := c.Apply(t.Context(), traffic.Desired{CanaryWeight: 25})
	if err != nil {
		t.Fatal(err)
	}
	if applied.Conflicts != 1 {
		t.Errorf("conflicts = %d, want 1", applied.Conflicts)
	}
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state, err := stateOf(ns, "reviews", vs.ResourceVersion, vs.Spec.DeepCopy(), c.target)
	if err != nil {
		t.Fatal(err)
	}
	if got := traffic.DescribeWeights(state.Routing().Destinations); got != "v1 35, v3 40, v2 25" {
		t.Errorf("weights = %s, want v1 35, v3 40, v2 25", got)
	}
	if vs.Spec.Http[0].Timeout.AsDuration() != 3*time.Second {
		t.Errorf("the other writer's timeout was lost: %v", vs.Spec.Http[0].Timeout)
	}
}

// Another writer reorders the route's destinations between our read and our write: the
// patch's test operations (host and subset at each index it writes) fail before any weight
// lands on the wrong destination; meshroll re-reads, re-plans and writes the right ones.
func TestReorderedDestinationsArePinned(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, fixtureText(t, "three-subsets.yaml")) // v1 60, v3 30, v2 10
	c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
	// Someone moves the canary to the front: v2 10, v1 60, v3 30.
	patchBeforeFirstWrite(t, env, ns, c, `[{"op":"move","from":"/spec/http/0/route/2","path":"/spec/http/0/route/0"}]`)
	applied, err := c.Apply(t.Context(), traffic.Desired{CanaryWeight: 25})
	if err != nil {
		t.Fatal(err)
	}
	if applied.Conflicts != 1 {
		t.Errorf("conflicts = %d, want 1", applied.Conflicts)
	}
	if got := traffic.DescribeWeights(applied.After.Destinations); got != "v2 25, v1 45, v3 30" {
		t.Errorf("weights = %s, want v2 25, v1 45, v3 30", got)
	}
}

// A writer that never stops changing the object makes meshroll give up when its budget ends,
// not loop forever, and say so.
func TestConflictRetryIsBounded(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml"))
	c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
	c.beforeWrite = func(ctx context.Context) {
		patch := `{"metadata":{"annotations":{"touched":"` + time.Now().Format(time.RFC3339Nano) + `"}}}`
		if _, err := env.Istio.NetworkingV1().VirtualServices(ns).Patch(ctx, "reviews", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil && ctx.Err() == nil {
			t.Error(err)
		}
	}
	ctx, cancel := context.WithTimeoutCause(t.Context(), 2*time.Second, errors.New("the write's budget of 2s ended"))
	defer cancel()
	_, err := c.Apply(ctx, traffic.Desired{CanaryWeight: 50})
	if err == nil || !strings.Contains(err.Error(), "the write's budget of 2s ended: another writer kept changing VirtualService "+ns+"/reviews") {
		t.Fatalf("err = %v", err)
	}
	vs := getRaw(t, env, "v1", ns)
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	if w := routes[0].(map[string]any)["route"].([]any)[1].(map[string]any)["weight"]; w != int64(10) {
		t.Errorf("canary weight = %v after giving up, want 10", w)
	}
}

// Objects created as v1alpha3 or v1beta1 are read and written through v1 and stay readable
// in their own version.
func TestOlderAPIVersions(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	for _, version := range []string{"v1alpha3", "v1beta1"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			env.Apply(t, ns, strings.Replace(fixtureText(t, "bookinfo-reviews.yaml"), "networking.istio.io/v1\n", "networking.istio.io/"+version+"\n", 1))
			c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
			if _, err := c.Apply(t.Context(), traffic.Desired{CanaryWeight: 30}); err != nil {
				t.Fatal(err)
			}
			obj := getRaw(t, env, version, ns)
			routes, _, _ := unstructured.NestedSlice(obj.Object, "spec", "http")
			got := mustJSON(t, routes[1].(map[string]any)["route"])
			if want := `[{"destination":{"host":"reviews","subset":"v1"},"weight":70},{"destination":{"host":"reviews","subset":"v2"},"weight":30}]`; got != want {
				t.Errorf("%s route = %s, want %s", version, got, want)
			}
		})
	}
}

// A cancelled context stops before anything is written.
func TestCancelledContext(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml"))
	rv := getRaw(t, env, "v1", ns).GetResourceVersion()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
	if _, err := c.Apply(ctx, traffic.Desired{CanaryWeight: 50}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := getRaw(t, env, "v1", ns).GetResourceVersion(); got != rv {
		t.Errorf("resourceVersion moved: %s → %s", rv, got)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func ptr[T any](v T) *T { return &v }

// flakyAPIServer is a loopback proxy in front of the test API server that answers the first
// fail PATCH requests with 503, as an API server does during a control-plane upgrade.
func flakyAPIServer(t *testing.T, env *testenv.Env, fail int32) (istioclient.Interface, kubernetes.Interface, *atomic.Int32) {
	t.Helper()
	transport, err := rest.TransportFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = transport
	var patches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch && patches.Add(1) <= fail {
			http.Error(w, "etcd leader changed", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL}
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ic, kc, &patches
}

// An API server that refuses writes for a moment (503s) is retried until the write lands;
// one that keeps refusing fails when the budget ends, naming the last answer.
func TestTransientErrorsAreRetried(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	t.Run("a few 503s", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml"))
		ic, kc, patches := flakyAPIServer(t, env, 3)
		c := NewClient(ic, kc, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		applied, err := c.Apply(ctx, traffic.Desired{CanaryWeight: 40})
		if err != nil {
			t.Fatal(err)
		}
		if got := traffic.DescribeWeights(applied.After.Destinations); got != "v1 60, v2 40" {
			t.Errorf("weights %s", got)
		}
		if n := patches.Load(); n != 4 {
			t.Errorf("%d patches sent, want 4 (3 refused, then the one that landed)", n)
		}
	})
	t.Run("refused until the budget ends", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml"))
		ic, kc, _ := flakyAPIServer(t, env, 1<<30)
		c := NewClient(ic, kc, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
		rv := getRaw(t, env, "v1", ns).GetResourceVersion()
		ctx, cancel := context.WithTimeoutCause(t.Context(), 2*time.Second, errors.New("no write to the route landed within 2s"))
		defer cancel()
		_, err := c.Apply(ctx, traffic.Desired{CanaryWeight: 40})
		if err == nil || !strings.Contains(err.Error(), "no write to the route landed within 2s: the write to VirtualService "+ns+"/reviews did not land in") || !strings.Contains(err.Error(), "the server is currently unable to handle the request") {
			t.Fatalf("err = %v", err)
		}
		if got := getRaw(t, env, "v1", ns).GetResourceVersion(); got != rv {
			t.Errorf("resourceVersion %s → %s", rv, got)
		}
	})
}
