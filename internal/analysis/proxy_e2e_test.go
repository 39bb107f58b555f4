package analysis_test

// The analysis through the Kubernetes API server's service proxy, as MESHROLL_PROMETHEUS_SERVICE
// reaches a Prometheus inside the cluster: the real kube-apiserver proxies to a real Prometheus
// scraping meshsim. kube-apiserver proxies only to endpoints that are not loopback, so
// Prometheus listens on an address testenv adds to this machine for the test (needs root):
//
//	MESHROLL_TEST_ASSETS=$HOME/.cache/meshroll/k8s-v1.37.2 CI=true go test -count=1 -run TestThroughTheServiceProxyOnPrometheus ./internal/analysis/

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
)

// proxyStack sends a fifth of the requests to the canary v2.
const proxyStack = `
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
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20
`

// Through the API server's service proxy, with the test cluster's credentials, the preflight
// passes and a window is judged on every check, as with Prometheus's own URL; the counts are
// read the same way.
func TestThroughTheServiceProxyOnPrometheus(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	host := testenv.ServiceAddress(t)
	ns, promNs := env.Namespace(t), env.Namespace(t)
	env.Apply(t, ns, proxyStack)
	setup, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	mesh, err := meshsim.Start(setup, meshsim.Options{
		Istio: env.Istio, Namespace: ns, VirtualService: "reviews",
		Versions: []meshsim.Version{{Subset: "v1", Workload: "reviews-v1"}, {Subset: "v2", Workload: "reviews-v2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mesh.Close(); err != nil {
			t.Error(err)
		}
	})
	prom, err := testenv.StartPrometheusAt(setup, host, []string{mesh.MetricsAddr()}, time.Second)
	if errors.Is(err, testenv.ErrAssetsMissing) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := prom.Stop(); err != nil {
			t.Error(err)
		}
	})
	load, stopLoad := context.WithCancel(context.Background())
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		mesh.Load(load, 60, nil)
	}()
	t.Cleanup(func() { stopLoad(); <-loaded })
	// Istio's addon: Service prometheus, port 9090 named http.
	env.ExposeService(t, promNs, "prometheus", "http", 9090, strings.TrimPrefix(prom.URL, "http://"), "/-/ready")

	clients, err := kube.Connect(kube.Access{Kubeconfig: []string{env.Kubeconfig}})
	if err != nil {
		t.Fatal(err)
	}
	service := config.ServicePort{Namespace: promNs, Name: "prometheus", Port: "9090"}
	proxy, err := clients.ServiceProxy(service.Namespace, service.Name, service.Port)
	if err != nil {
		t.Fatal(err)
	}
	a, err := analysis.New(analysis.Settings{
		Analysis: config.Analysis{
			PrometheusService: service,
			Interval:          5 * time.Second,
			MinRequests:       5,
			MinSuccessRate:    99,
			MaxLatencyP99:     1000,
			CanaryWorkload:    "reviews-v2",
			StableWorkload:    "reviews-v1",
			Reporter:          "destination",
		},
		Namespace: ns,
		Proxy: &analysis.Proxy{Transport: proxy.Transport, Server: proxy.Server, Open: func(ctx context.Context) (string, error) {
			base, _, err := proxy.URL(ctx) // as cluster-admin: every permission
			return base, err
		}},
	})
	if err != nil {
		t.Fatal(err)
	}

	stableSeen := fmt.Sprintf(`sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace=%q,destination_workload="reviews-v1"}[300s])) > 0`, ns)
	if err := prom.WaitForSeries(setup, stableSeen); err != nil {
		t.Fatal(err)
	}
	if err := a.Preflight(setup); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for windows := 1; ; windows++ {
		w, err := a.Evaluate(setup, time.Time{})
		switch {
		case err != nil:
			t.Logf("window %d: %v", windows, err) // Prometheus slower than half the interval once
		case len(w.Failed()) > 0 || len(w.Errored()) > 0:
			t.Fatalf("window %d through the proxy: %+v", windows, w.Results)
		case w.Judged():
			for _, r := range w.Results {
				t.Logf("window %d: %s canary %s stable %s (%s): %s", windows, r.Check, analysis.Format(r.Canary), analysis.Format(r.Stable), r.Threshold, r.Verdict)
			}
			snap, counts, err := a.Count(setup, analysis.Snapshot{}, time.Now())
			if err != nil || counts.Canary.Requests == 0 || counts.Stable.Requests <= counts.Canary.Requests {
				t.Errorf("counts through the proxy: %+v, %v (snapshot at %s)", counts, err, snap.At)
			}
			return
		}
		select {
		case <-setup.Done():
			t.Fatalf("no judged window through the proxy before the deadline (last: %+v, %v)", w.Results, err)
		case <-tick.C:
		}
	}
}
