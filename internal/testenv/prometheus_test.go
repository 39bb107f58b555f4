package testenv_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshroll/meshroll/internal/testenv"
)

// startPrometheus skips outside CI when the binary is missing, like testenv.Get.
func startPrometheus(t *testing.T, targets []string) *testenv.Prometheus {
	t.Helper()
	testenv.SkipShort(t)
	start := time.Now()
	p, err := testenv.StartPrometheus(t.Context(), targets, time.Second)
	if errors.Is(err, testenv.ErrAssetsMissing) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prometheus ready at %s after %v", p.URL, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func TestPrometheusScrapes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshroll_test_up", Help: "A constant."})
	g.Set(1)
	reg.MustRegister(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }() // ErrServerClosed at the end of the test
	t.Cleanup(func() { srv.Close() })

	p := startPrometheus(t, []string{l.Addr().String()})

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := p.WaitForSeries(ctx, `meshroll_test_up{job="mesh"} == 1`); err != nil {
		t.Fatal(err)
	}
	t.Logf("first sample queryable after %v", time.Since(start).Round(time.Millisecond))

	if err := p.WaitForSeries(ctx, `sum(`); err == nil {
		t.Error("WaitForSeries with a broken query: no error")
	} else if ctx.Err() != nil {
		t.Errorf("WaitForSeries with a broken query waited for the deadline: %v", err)
	}

	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := http.Get(p.URL + "/-/ready"); err == nil {
		t.Error("prometheus still answers after Stop")
	}
}
