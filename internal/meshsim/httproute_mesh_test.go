package meshsim_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
)

// meshRoute is a mesh HTTPRoute (parent: the Service reviews) with a tester rule to v2, a rule
// to a Service that is no version, and a default rule split 9:1 that mirrors a quarter of its
// requests to v2.
const meshRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - name: default
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, port: 9080}, percent: 25}}]
    backendRefs:
    - {name: reviews-v1, port: 9080, weight: 9}
    - {name: reviews-v2, port: 9080, weight: 1}
  - name: tester
    matches: [{headers: [{name: end-user, value: tester}]}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - name: ghost
    matches: [{headers: [{name: end-user, value: ghost-1}]}]
    backendRefs: [{name: reviews-v3, port: 9080}]
`

var serviceVersions = []meshsim.Version{
	{Subset: "v1", Workload: "reviews-v1", Service: "reviews-v1"},
	{Subset: "v2", Workload: "reviews-v2", Service: "reviews-v2"},
}

// The mesh follows an HTTPRoute through the API server: its rules by precedence, its relative
// weights, its mirror, its changes and its deletion; the metrics name the backend Services.
func TestMeshHTTPRoute(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, meshRoute)
	mesh, err := meshsim.Start(t.Context(), meshsim.Options{Gateway: env.Gateway, Namespace: ns, HTTPRoute: "reviews", Versions: serviceVersions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mesh.Close(); err != nil {
			t.Error(err)
		}
	})
	if diff := cmp.Diff(map[string]int{"v1": 9, "v2": 1}, mesh.Weights()); diff != "" {
		t.Fatalf("weights right after Start (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"v2": 25}, mesh.Mirrors()); diff != "" {
		t.Fatalf("mirrors right after Start (-want +got):\n%s", diff)
	}
	client := &http.Client{Timeout: 5 * time.Second}

	t.Run("rules", func(t *testing.T) {
		// The tester rule is listed after the catch-all but has a header match: it comes first.
		for range 20 {
			if code, subset := get(t, client, mesh, "tester"); code != http.StatusOK || subset != "v2" {
				t.Fatalf("end-user: tester: %d from %q, want 200 from v2", code, subset)
			}
		}
		if code, subset := get(t, client, mesh, "ghost-1"); code != http.StatusInternalServerError || subset != "" {
			t.Errorf("end-user: ghost-1 (reviews-v3 is no version): %d from %q, want 500 from no backend", code, subset)
		}
	})

	t.Run("split and mirror", func(t *testing.T) {
		copiesBefore := mesh.Mirrored("v2")
		got := load(t, mesh, 200, 3*time.Second, nil)
		answered := got.Subsets["v1"] + got.Subsets["v2"]
		if got.Errors() != 0 || answered != got.Codes[http.StatusOK] {
			t.Errorf("callers saw %v", got)
		}
		checkBinomial(t, "v2's share of the answers", got.Subsets["v2"], answered, 0.1)
		// Every request the load sent was routed (the cut ones too): a quarter was copied.
		checkBinomial(t, "copies to v2", mesh.Mirrored("v2")-copiesBefore, got.Sent, 0.25)
	})

	t.Run("metrics", func(t *testing.T) {
		series := requestSeries(t, mesh)
		want := map[string]string{
			"destination reviews-v2 200": "reviews-v2." + ns + ".svc.cluster.local reviews-v2 reviews",
			"source reviews-v2 200":      "reviews-v2." + ns + ".svc.cluster.local reviews-v2 reviews",
			"destination reviews-v1 200": "reviews-v1." + ns + ".svc.cluster.local reviews-v1 reviews",
			"source reviews-v1 200":      "reviews-v1." + ns + ".svc.cluster.local reviews-v1 reviews",
			"source unknown 500":         "reviews." + ns + ".svc.cluster.local reviews unknown",
		}
		if diff := cmp.Diff(want, series); diff != "" {
			t.Errorf("destination_service, its name and the canonical service by reporter, workload and code (-want +got):\n%s", diff)
		}
	})

	t.Run("change followed", func(t *testing.T) {
		patch := `[
{"op":"test","path":"/spec/rules/0/name","value":"default"},
{"op":"replace","path":"/spec/rules/0/backendRefs/0/weight","value":1},
{"op":"remove","path":"/spec/rules/0/filters"}]`
		if _, err := env.Gateway.GatewayV1().HTTPRoutes(ns).Patch(t.Context(), "reviews", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatalf("failed to patch httproute %s/reviews: %v", ns, err)
		}
		waitFor(t, "the patch", func() bool {
			return cmp.Equal(map[string]int{"v1": 1, "v2": 1}, mesh.Weights()) && len(mesh.Mirrors()) == 0
		})
		got := load(t, mesh, 200, time.Second, nil)
		checkBinomial(t, "v2's share of the answers", got.Subsets["v2"], got.Subsets["v1"]+got.Subsets["v2"], 0.5)
	})

	t.Run("deleted", func(t *testing.T) {
		if err := env.Gateway.GatewayV1().HTTPRoutes(ns).Delete(t.Context(), "reviews", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// As the parent Service alone: any version.
		waitFor(t, "the deletion", func() bool { return cmp.Equal(map[string]int{"": 100}, mesh.Weights()) })
		if code, _ := get(t, client, mesh, "ghost-1"); code != http.StatusOK {
			t.Errorf("end-user: ghost-1 without the HTTPRoute: %d, want 200", code)
		}
	})
}

// waitFor polls cond until it holds, for at most 30s after what happened.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("not in effect 30s after %s", what)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("%s in effect after %v", what, time.Since(start).Round(time.Millisecond))
}

// requestSeries are istio_requests_total's "destination_service destination_service_name
// destination_canonical_service" by "reporter destination_workload response_code".
func requestSeries(t *testing.T, mesh *meshsim.Mesh) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + mesh.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("failed to parse /metrics: %v", err)
	}
	out := map[string]string{}
	for _, m := range families["istio_requests_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		out[l["reporter"]+" "+l["destination_workload"]+" "+l["response_code"]] = l["destination_service"] + " " + l["destination_service_name"] + " " + l["destination_canonical_service"]
	}
	return out
}
