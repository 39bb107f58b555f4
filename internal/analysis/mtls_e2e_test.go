package analysis_test

// The mtls check against a real Prometheus scraping meshsim, a data plane that routes real
// HTTP requests by the VirtualService and exports Istio's standard metrics:
//
//	MESHROLL_TEST_ASSETS=$HOME/.cache/meshroll/k8s-v1.37.2 CI=true go test -count=1 -run TestMTLSOnPrometheus ./internal/analysis/

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.Main(m)
}

// mtlsStack sends half of the requests to the stable v1 and a quarter to each of two
// canaries: v2, reached over mutual TLS like v1, and v3, reached in plaintext.
const mtlsStack = `
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
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 25
    - destination: {host: reviews, subset: v3}
      weight: 25
`

// plaintextCounts reads the figures of a failed mtls result.
var plaintextCounts = regexp.MustCompile(`^(\d+) of (\d+) canary requests in the last 5s \(([0-9.]+)%\) were not mutual TLS: `)

// A canary whose requests all came over mutual TLS passes mtls with exactly 100%; a canary
// reached in plaintext fails it, all of its requests counted as not mutual TLS. Both are
// judged on the destination reporter although MESHROLL_REPORTER is source, whose requests
// say "unknown": judged on those, the mutual-TLS canary would fail too.
func TestMTLSOnPrometheus(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, mtlsStack)
	setup, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	mesh, err := meshsim.Start(setup, meshsim.Options{
		Istio: env.Istio, Namespace: ns, VirtualService: "reviews",
		Versions: []meshsim.Version{{Subset: "v1", Workload: "reviews-v1"}, {Subset: "v2", Workload: "reviews-v2"}, {Subset: "v3", Workload: "reviews-v3"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mesh.Close(); err != nil {
			t.Error(err)
		}
	})
	mesh.SetPlaintext("v3", true)
	prom, err := testenv.StartPrometheus(setup, []string{mesh.MetricsAddr()}, time.Second)
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
	// Cleanups run last in, first out: the load stops before the mesh closes.
	load, stopLoad := context.WithCancel(context.Background())
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		mesh.Load(load, 60, nil)
	}()
	t.Cleanup(func() { stopLoad(); <-loaded })

	analyzer := func(canary string) *analysis.Analyzer {
		a, err := analysis.New(analysis.Settings{
			Analysis: config.Analysis{
				PrometheusURL:  prom.URL,
				Interval:       5 * time.Second,
				MinRequests:    5,
				CanaryWorkload: canary,
				StableWorkload: "reviews-v1",
				Reporter:       "source",
				MTLS:           true,
			},
			Namespace: ns,
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	secure, plaintext := analyzer("reviews-v2"), analyzer("reviews-v3")

	// The preflight needs the stable's requests in Prometheus (its own probe, so that it runs
	// as soon as it can pass); then it sends every query once, mtls's among them, and
	// Prometheus takes them all.
	stableSeen := fmt.Sprintf(`sum(increase(istio_requests_total{reporter="source",destination_workload_namespace=%q,destination_workload="reviews-v1"}[300s])) > 0`, ns)
	if err := prom.WaitForSeries(setup, stableSeen); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*analysis.Analyzer{secure, plaintext} {
		if err := a.Preflight(setup); err != nil {
			t.Fatal(err)
		}
	}

	// Windows until both canaries' mtls results are judged (a pass or a fail): at first
	// Prometheus has too few samples for increase(). Each pair is evaluated at the instant of
	// a scrape already stored, so that no sample at or before it can arrive between one query
	// and the next: all of v3's requests, and those without mutual TLS, then read the same.
	var gotSecure, gotPlaintext analysis.Result
	var at time.Time
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for windows := 1; ; windows++ {
		at = lastScrape(t, setup, prom)
		ws, errSecure := secure.Evaluate(setup, at)
		wp, errPlaintext := plaintext.Evaluate(setup, at)
		if err := errors.Join(errSecure, errPlaintext); err != nil {
			if setup.Err() != nil {
				t.Fatalf("no judged mtls window before the deadline: %v", err)
			}
			t.Logf("window %d: %v", windows, err) // Prometheus slower than half the interval once
		} else {
			gotSecure, gotPlaintext = mtlsResult(t, ws), mtlsResult(t, wp)
			if gotSecure.Verdict == analysis.VerdictFail {
				t.Fatalf("window %d: the mutual-TLS canary failed mtls: %+v", windows, gotSecure)
			}
			if judged(gotSecure) && judged(gotPlaintext) {
				t.Logf("both judged in window %d", windows)
				break
			}
		}
		select {
		case <-setup.Done():
			t.Fatalf("no judged mtls window before the deadline: mutual TLS %+v, plaintext %+v", gotSecure, gotPlaintext)
		case <-tick.C:
		}
	}

	// The counts behind the pass: mtls's queries (the last four: canary and stable without
	// mutual TLS, then all of their requests) at the window's instant.
	queries := secure.Queries()
	var counts []string
	for _, q := range queries[len(queries)-4:] {
		counts = append(counts, fmt.Sprint(instant(t, setup, prom, q, at)))
	}
	t.Logf("mutual TLS canary: %s%% (stable %s%%), %s; not mutual TLS: canary %s, stable %s; all: canary %s, stable %s",
		analysis.Format(gotSecure.Canary), analysis.Format(gotSecure.Stable), gotSecure.Verdict, counts[0], counts[1], counts[2], counts[3])
	if counts[0] != "0" || counts[1] != "0" {
		t.Errorf("requests without mutual TLS: canary %s, stable %s, want exactly 0", counts[0], counts[1])
	}
	if gotSecure.Verdict != analysis.VerdictPass || gotSecure.Canary == nil || *gotSecure.Canary != 100 {
		t.Errorf("mutual-TLS canary: %+v, want a pass at exactly 100%%", gotSecure)
	}
	if gotSecure.Stable == nil || *gotSecure.Stable != 100 {
		t.Errorf("stable beside the mutual-TLS canary: %s, want exactly 100", analysis.Format(gotSecure.Stable))
	}

	t.Logf("plaintext canary: %s%% (stable %s%%), %s: %s", analysis.Format(gotPlaintext.Canary), analysis.Format(gotPlaintext.Stable), gotPlaintext.Verdict, gotPlaintext.Message)
	if gotPlaintext.Verdict != analysis.VerdictFail || gotPlaintext.Canary == nil || *gotPlaintext.Canary != 0 {
		t.Errorf("plaintext canary: %+v, want a failure at 0%% mutual TLS", gotPlaintext)
	}
	// Every request of v3 is plaintext: its requests without mutual TLS and all its requests
	// are the same series, so the two counts are equal.
	m := plaintextCounts.FindStringSubmatch(gotPlaintext.Message)
	if m == nil {
		t.Fatalf("message %q does not say how many requests were not mutual TLS", gotPlaintext.Message)
	}
	bad, _ := strconv.Atoi(m[1])
	all, _ := strconv.Atoi(m[2])
	if bad < 1 || bad != all || m[3] != "100" {
		t.Errorf("plaintext canary: %d of %d requests (%s%%) not mutual TLS, want all of them", bad, all, m[3])
	}
	if gotPlaintext.Stable == nil || *gotPlaintext.Stable != 100 {
		t.Errorf("stable beside the plaintext canary: %s, want exactly 100", analysis.Format(gotPlaintext.Stable))
	}
}

// lastScrape is the instant of the latest scrape Prometheus has stored. A scrape's samples and
// its up are stored together, and the one target is scraped one scrape after the other.
func lastScrape(t *testing.T, ctx context.Context, prom *testenv.Prometheus) time.Time {
	t.Helper()
	v := instant(t, ctx, prom, `max(timestamp(up{job="mesh"}))`, time.Now())
	return time.UnixMilli(int64(math.Round(v * 1000)))
}

// instant is the one value of query at at.
func instant(t *testing.T, ctx context.Context, prom *testenv.Prometheus, query string, at time.Time) float64 {
	t.Helper()
	client, err := promapi.NewClient(promapi.Config{Address: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	v, _, _, err := promv1.NewAPI(client).Query(ctx, query, at)
	if err != nil {
		t.Fatalf("query %s: %v", query, err)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		t.Fatalf("query %s = %v, want one value", query, v)
	}
	return float64(vec[0].Value)
}

// mtlsResult is the window's mtls result.
func mtlsResult(t *testing.T, w analysis.Window) analysis.Result {
	t.Helper()
	for _, r := range w.Results {
		if r.Check == analysis.CheckMTLS {
			return r
		}
	}
	t.Fatalf("window without an mtls result: %+v", w.Results)
	return analysis.Result{}
}

func judged(r analysis.Result) bool {
	return r.Verdict == analysis.VerdictPass || r.Verdict == analysis.VerdictFail
}
