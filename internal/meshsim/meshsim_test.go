package meshsim_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.Main(m)
}

const virtualService = `
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
  - name: ghost
    match:
    - headers:
        end-user: {prefix: ghost}
    route:
    - destination: {host: reviews, subset: v3}
  - name: primary
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
`

var versions = []meshsim.Version{{Subset: "v1", Workload: "reviews-v1"}, {Subset: "v2", Workload: "reviews-v2"}}

const (
	v1Latency = 35 * time.Millisecond // Istio's bucket (25, 50]: room for a busy machine's delays
	v2Latency = 5 * time.Millisecond
)

func TestStartValidates(t *testing.T) {
	t.Parallel()
	_, err := meshsim.Start(t.Context(), meshsim.Options{Versions: []meshsim.Version{{Subset: "v1"}, {Subset: "v1", Workload: "x"}}})
	if err == nil {
		t.Fatal("Start with empty options: no error")
	}
	t.Log(err)
}

func TestStartCancelled(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	m, err := meshsim.Start(ctx, meshsim.Options{Istio: env.Istio, Namespace: "default", VirtualService: "none", Versions: versions})
	if err == nil {
		m.Close()
		t.Fatal("Start with a cancelled context: no error")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestMesh(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, virtualService)

	start := time.Now()
	mesh, err := meshsim.Start(t.Context(), meshsim.Options{Istio: env.Istio, Namespace: ns, VirtualService: "reviews", Versions: versions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mesh.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("mesh started in %v", time.Since(start).Round(time.Millisecond))
	if diff := cmp.Diff(map[string]int{"v1": 90, "v2": 10}, mesh.Weights()); diff != "" {
		t.Fatalf("weights right after Start (-want +got):\n%s", diff)
	}

	// Prometheus only scrapes ~5s after it starts: let it start while the traffic checks run.
	type started struct {
		p   *testenv.Prometheus
		err error
		in  time.Duration
	}
	promc := make(chan started, 1)
	go func() {
		start := time.Now()
		p, err := testenv.StartPrometheus(t.Context(), []string{mesh.MetricsAddr()}, time.Second)
		promc <- started{p, err, time.Since(start)}
	}()

	mesh.SetBehaviour("v1", 0, v1Latency)
	mesh.SetBehaviour("v2", 0, v2Latency)
	client := &http.Client{Timeout: 5 * time.Second}

	t.Run("header route", func(t *testing.T) {
		for range 20 {
			if code, subset := get(t, client, mesh, "tester"); code != http.StatusOK || subset != "v2" {
				t.Fatalf("end-user: tester: %d from %q, want 200 from v2", code, subset)
			}
		}
		if code, subset := get(t, client, mesh, "ghost-1"); code != http.StatusServiceUnavailable || subset != "" {
			t.Errorf("end-user: ghost-1 (subset v3 is unknown): %d from %q, want 503 from no backend", code, subset)
		}
	})

	t.Run("weighted split", func(t *testing.T) {
		served := drive(t, mesh, 200, 3*time.Second)
		checkShare(t, served, 0.10)
		// Never more than rps: 600 requests in 3s, with a little slack for the last tick.
		if n := served["v1"] + served["v2"]; n > 610 {
			t.Errorf("200 rps for 3s sent %d requests", n)
		}
	})

	t.Run("weight change followed", func(t *testing.T) {
		patch := `[
{"op":"test","path":"/spec/http/2/route/0/weight","value":90},
{"op":"replace","path":"/spec/http/2/route/0/weight","value":50},
{"op":"replace","path":"/spec/http/2/route/1/weight","value":50}]`
		start := time.Now()
		_, err := env.Istio.NetworkingV1().VirtualServices(ns).Patch(t.Context(), "reviews", types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("failed to patch virtualservice %s/reviews: %v", ns, err)
		}
		patched := time.Since(start)
		want := map[string]int{"v1": 50, "v2": 50}
		for !cmp.Equal(want, mesh.Weights()) {
			if time.Since(start) > 30*time.Second {
				t.Fatalf("weights 30s after the patch: %v, want %v", mesh.Weights(), want)
			}
			time.Sleep(time.Millisecond)
		}
		t.Logf("weight change in effect %v after the patch call began (the call took %v)",
			time.Since(start).Round(time.Millisecond), patched.Round(time.Millisecond))
		checkShare(t, drive(t, mesh, 200, time.Second), 0.5)
	})

	t.Run("errors", func(t *testing.T) {
		mesh.SetBehaviour("v2", 1, 0)
		for range 20 {
			if code, subset := get(t, client, mesh, "tester"); code != http.StatusServiceUnavailable || subset != "v2" {
				t.Fatalf("end-user: tester with v2 failing: %d from %q, want 503 from v2", code, subset)
			}
		}
		mesh.SetBehaviour("v2", 0.5, v2Latency)
	})

	t.Run("exposition", func(t *testing.T) {
		checkExposition(t, client, mesh, ns)
	})

	t.Run("prometheus", func(t *testing.T) {
		s := <-promc
		if errors.Is(s.err, testenv.ErrAssetsMissing) && os.Getenv("CI") != "true" {
			t.Skip(s.err)
		}
		if s.err != nil {
			t.Fatal(s.err)
		}
		t.Cleanup(func() {
			if err := s.p.Stop(); err != nil {
				t.Error(err)
			}
		})
		t.Logf("prometheus ready in %v", s.in.Round(time.Millisecond))
		checkPrometheus(t, mesh, s.p, ns)
	})
}

// get sends one request with the end-user header and returns the status and the subset that
// answered.
func get(t *testing.T, client *http.Client, mesh *meshsim.Mesh, user string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, mesh.FrontURL()+"/reviews/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("end-user", user)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", req.URL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get(meshsim.SubsetHeader)
}

// drive runs Load for d and returns how many requests each version served meanwhile.
func drive(t *testing.T, mesh *meshsim.Mesh, rps int, d time.Duration) map[string]int64 {
	t.Helper()
	before := map[string]int64{}
	for _, v := range versions {
		before[v.Subset] = mesh.Requests(v.Subset)
	}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	mesh.Load(ctx, rps, nil)
	served := map[string]int64{}
	for _, v := range versions {
		served[v.Subset] = mesh.Requests(v.Subset) - before[v.Subset]
	}
	t.Logf("%d rps for %v: served %v", rps, d, served)
	return served
}

// checkShare fails when v2's share is more than 5 standard deviations (binomial) from p, which
// a correct router does about once in two million runs.
func checkShare(t *testing.T, served map[string]int64, p float64) {
	t.Helper()
	n := float64(served["v1"] + served["v2"])
	if n < 100 {
		t.Fatalf("only %v requests served; the load generator did not keep up", n)
	}
	tolerance := 5 * math.Sqrt(n*p*(1-p))
	if got := float64(served["v2"]); math.Abs(got-n*p) > tolerance {
		t.Errorf("v2 served %v of %v requests, want %.0f ± %.0f", got, n, n*p, tolerance)
	}
}

func checkExposition(t *testing.T, client *http.Client, mesh *meshsim.Mesh, ns string) {
	resp, err := client.Get("http://" + mesh.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("failed to parse /metrics: %v", err)
	}
	wantLabels := []string{
		"connection_security_policy", "destination_canonical_revision", "destination_canonical_service",
		"destination_service", "destination_service_name", "destination_service_namespace",
		"destination_version", "destination_workload", "destination_workload_namespace",
		"reporter", "request_protocol", "response_code", "response_flags",
		"source_workload", "source_workload_namespace",
	}
	var nr, v2Errors int
	for _, name := range []string{"istio_requests_total", "istio_request_duration_milliseconds"} {
		f := families[name]
		if f == nil || len(f.GetMetric()) == 0 {
			t.Fatalf("/metrics has no %s", name)
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			var names []string
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
				names = append(names, l.GetName())
			}
			sort.Strings(names)
			if diff := cmp.Diff(wantLabels, names); diff != "" {
				t.Fatalf("%s label names (-want +got):\n%s", name, diff)
			}
			if name != "istio_requests_total" {
				var les []float64
				for _, b := range m.GetHistogram().GetBucket() {
					les = append(les, b.GetUpperBound())
				}
				// The text format adds the +Inf bucket that every histogram has.
				if diff := cmp.Diff(append(slices.Clone(meshsim.DurationBuckets), math.Inf(1)), les); diff != "" {
					t.Fatalf("%s buckets (-want +got):\n%s", name, diff)
				}
				continue
			}
			if labels["destination_service"] != "reviews."+ns+".svc.cluster.local" || labels["source_workload"] != "loadgen" {
				t.Errorf("istio_requests_total%v: unexpected service or source", labels)
			}
			switch {
			case labels["response_flags"] == "NR":
				nr++
				if labels["reporter"] != "source" || labels["response_code"] != "503" || labels["destination_workload"] != "unknown" {
					t.Errorf("no-route sample %v: want reporter source, 503 and workload unknown", labels)
				}
			case labels["destination_workload"] == "reviews-v2" && labels["response_code"] == "503":
				v2Errors++
				want := map[string]string{"source": "unknown", "destination": "mutual_tls"}[labels["reporter"]]
				if labels["connection_security_policy"] != want || labels["destination_version"] != "v2" ||
					labels["destination_canonical_service"] != "reviews" || labels["destination_canonical_revision"] != "v2" {
					t.Errorf("v2 error sample %v: unexpected labels", labels)
				}
			}
		}
	}
	if nr != 1 || v2Errors != 2 {
		t.Errorf("istio_requests_total has %d NR series (want 1) and %d series of v2 503s (want 2, one per reporter)", nr, v2Errors)
	}
}

func checkPrometheus(t *testing.T, mesh *meshsim.Mesh, p *testenv.Prometheus, ns string) {
	// Keep traffic flowing while Prometheus catches up: 50/50 now, v2 failing half the time.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		mesh.Load(ctx, 100, nil)
	}()
	defer func() { cancel(); <-done }()

	rateQuery := fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_workload="reviews-v2",destination_workload_namespace=%q}[10s]))`, ns)
	wait, cancelWait := context.WithTimeout(t.Context(), time.Minute)
	defer cancelWait()
	start := time.Now()
	if err := p.WaitForSeries(wait, rateQuery); err != nil {
		t.Fatal(err)
	}
	t.Logf("rate query answered %v after prometheus was ready", time.Since(start).Round(time.Millisecond))

	client, err := promapi.NewClient(promapi.Config{Address: p.URL})
	if err != nil {
		t.Fatal(err)
	}
	api := promv1.NewAPI(client)
	scalar := func(q string) float64 {
		t.Helper()
		v, warnings, _, err := api.Query(t.Context(), q, time.Now())
		if err != nil {
			t.Fatalf("query %s: %v", q, err)
		}
		if len(warnings) > 0 {
			t.Logf("query %s: warnings %v", q, warnings)
		}
		vec, ok := v.(model.Vector)
		if !ok || len(vec) != 1 {
			t.Fatalf("query %s = %v, want one sample", q, v)
		}
		return float64(vec[0].Value)
	}

	if rate := scalar(rateQuery); !(rate > 0) {
		t.Errorf("%s = %v, want > 0", rateQuery, rate)
	}
	// How long a change in behaviour takes to show in a query: v1 has not failed so far.
	mesh.SetBehaviour("v1", 0.2, v1Latency)
	start = time.Now()
	errQuery := fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_workload="reviews-v1",destination_workload_namespace=%q,response_code=~"5.*"}[10s])) > 0`, ns)
	if err := p.WaitForSeries(wait, errQuery); err != nil {
		t.Fatal(err)
	}
	t.Logf("v1's first errors visible to a rate query %v after they began", time.Since(start).Round(time.Millisecond))

	quantile := func(q float64) float64 {
		t.Helper()
		query := fmt.Sprintf(`histogram_quantile(%v, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="reviews-v1",destination_workload_namespace=%q}[10s])))`, q, ns)
		v := scalar(query)
		t.Logf("%s = %.2f with %v latency", query, v, v1Latency)
		return v
	}
	// Every request reports the configured 35ms, in Istio's bucket (25, 50]: quantiles
	// interpolate inside that bucket, however long the machine took to serve them.
	if p50 := quantile(0.5); !(p50 > 25 && p50 <= 50) {
		t.Errorf("p50 of reviews-v1 = %v, want in (25, 50]", p50)
	}
	if p99 := quantile(0.99); !(p99 > 25 && p99 <= 50) {
		t.Errorf("p99 of reviews-v1 = %v, want in (25, 50]", p99)
	}
}
