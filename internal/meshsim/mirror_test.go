package meshsim_test

import (
	"context"
	"math"
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

// mirroredService mirrors a quarter of the catch-all's requests to v2 and every request of a
// tester to v2, while v1 answers all of them: the shape of meshroll's mirror stage.
const mirroredService = `
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
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v2}
  - name: default
    route:
    - destination: {host: reviews, subset: v1}
      weight: 100
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 25}
`

// A route's mirror gets a copy of its share of the requests, which its sidecar alone reports,
// and whose answer no caller ever sees.
func TestMirror(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, mirroredService)
	mesh, err := meshsim.Start(t.Context(), meshsim.Options{Istio: env.Istio, Namespace: ns, VirtualService: "reviews", Versions: versions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mesh.Close(); err != nil {
			t.Error(err)
		}
	})
	if diff := cmp.Diff(map[string]float64{"v2": 25}, mesh.Mirrors()); diff != "" {
		t.Fatalf("mirrors right after Start (-want +got):\n%s", diff)
	}
	// v2 fails every request: a caller that ever got v2's answer would see a 503.
	mesh.SetBehaviour("v1", 0, 0)
	mesh.SetBehaviour("v2", 1, v2Latency)

	t.Run("share", func(t *testing.T) {
		got := load(t, mesh, 200, 3*time.Second, nil)
		if got.Errors() != 0 || got.Subsets["v2"] != 0 {
			t.Errorf("callers saw %d errors and %d answers from v2 (%v); the mirror's answers must be dropped", got.Errors(), got.Subsets["v2"], got)
		}
		waitForAnswers(t, mesh, "v2")
		// Only the mirror's sidecar reports the copies: reporter destination, workload
		// reviews-v2, v2's answers (all 503). A request the end of the load cut may still be
		// on its way through the front: wait until the counts settle.
		var primaries, copies int64
		var diff string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			primaries, copies = mesh.Requests("v1"), mesh.Mirrored("v2")
			want := map[string]float64{
				`destination reviews-v1 200`: float64(primaries),
				`source reviews-v1 200`:      float64(primaries),
				`destination reviews-v2 503`: float64(copies),
			}
			if diff = cmp.Diff(want, requestCounts(t, mesh)); diff == "" || time.Now().After(deadline) {
				break
			}
		}
		if diff != "" {
			t.Errorf("istio_requests_total by reporter, destination_workload and response_code (-want +got):\n%s", diff)
		}
		t.Logf("v1 answered %d requests; %d copies went to v2", primaries, copies)
		checkBinomial(t, "copies to v2 of v1's requests", copies, primaries, 0.25)
	})

	t.Run("every request of a route without mirrorPercentage", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second}
		before := mesh.Mirrored("v2")
		for range 20 {
			if code, subset := get(t, client, mesh, "tester"); code != http.StatusOK || subset != "v1" {
				t.Fatalf("end-user: tester: %d from %q, want 200 from v1", code, subset)
			}
		}
		if n := mesh.Mirrored("v2") - before; n != 20 {
			t.Errorf("20 requests of the tester route sent %d copies to v2, want 20", n)
		}
		waitForAnswers(t, mesh, "v2")
	})

	t.Run("callers do not wait for the mirror", func(t *testing.T) {
		// A copy now takes an hour: a mirror the front waited for would time the client out.
		mesh.SetBehaviour("v2", 1, time.Hour)
		client := &http.Client{Timeout: 30 * time.Second}
		before, answered := mesh.Mirrored("v2"), mesh.Requests("v2")
		for range 5 {
			if code, subset := get(t, client, mesh, "tester"); code != http.StatusOK || subset != "v1" {
				t.Fatalf("end-user: tester: %d from %q, want 200 from v1", code, subset)
			}
		}
		if sent, got := mesh.Mirrored("v2")-before, mesh.Requests("v2")-answered; sent != 5 || got != 0 {
			t.Errorf("5 answered requests: %d copies sent to v2 and %d answered, want 5 sent, none answered yet", sent, got)
		}
		mesh.SetBehaviour("v2", 1, v2Latency) // the copies in flight end when the mesh closes
	})

	t.Run("mirror removed", func(t *testing.T) {
		patch := `[
{"op":"test","path":"/spec/http/1/name","value":"default"},
{"op":"remove","path":"/spec/http/1/mirror"},
{"op":"remove","path":"/spec/http/1/mirrorPercentage"}]`
		if _, err := env.Istio.NetworkingV1().VirtualServices(ns).Patch(t.Context(), "reviews", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatalf("failed to patch virtualservice %s/reviews: %v", ns, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(mesh.Mirrors()) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("mirrors 30s after the patch: %v", mesh.Mirrors())
			}
			time.Sleep(time.Millisecond)
		}
		before := mesh.Mirrored("v2")
		got := load(t, mesh, 200, time.Second, nil)
		if n := mesh.Mirrored("v2") - before; n != 0 || got.Errors() != 0 {
			t.Errorf("without a mirror: %d copies sent to v2 and %d errors, want none", n, got.Errors())
		}
	})
}

// load runs Load for d and returns what its callers saw.
func load(t *testing.T, mesh *meshsim.Mesh, rps int, d time.Duration, header http.Header) meshsim.LoadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	got := mesh.Load(ctx, rps, header)
	t.Logf("%d rps for %v: %+v", rps, d, got)
	if got.Sent < 100 {
		t.Fatalf("only %d requests sent; the load generator did not keep up", got.Sent)
	}
	return got
}

// checkBinomial fails when k of n is more than 5 standard deviations (binomial) from the
// share p, which a correct draw does about once in two million runs.
func checkBinomial(t *testing.T, what string, k, n int64, p float64) {
	t.Helper()
	tolerance := 5 * math.Sqrt(float64(n)*p*(1-p))
	if math.Abs(float64(k)-float64(n)*p) > tolerance {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f", what, k, n, float64(n)*p, tolerance)
	}
}

// waitForAnswers waits until the version has answered every copy sent to it (it serves no
// other request in these tests).
func waitForAnswers(t *testing.T, mesh *meshsim.Mesh, subset string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for mesh.Requests(subset) != mesh.Mirrored(subset) {
		if time.Now().After(deadline) {
			t.Fatalf("%s answered %d of %d copies 30s later", subset, mesh.Requests(subset), mesh.Mirrored(subset))
		}
		time.Sleep(time.Millisecond)
	}
}

// requestCounts are istio_requests_total's values by "reporter destination_workload
// response_code", from the mesh's /metrics.
func requestCounts(t *testing.T, mesh *meshsim.Mesh) map[string]float64 {
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
	counts := map[string]float64{}
	for _, m := range families["istio_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		counts[labels["reporter"]+" "+labels["destination_workload"]+" "+labels["response_code"]] += m.GetCounter().GetValue()
	}
	return counts
}
