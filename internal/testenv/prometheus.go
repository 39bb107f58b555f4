package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

const (
	// PrometheusBinary is looked up on PATH; Debian's package `prometheus` installs it as
	// /usr/bin/prometheus (2.42 on bookworm).
	PrometheusBinary = "prometheus"

	prometheusReadyTimeout = 60 * time.Second
	prometheusStartTries   = 3
	// Prometheus rejects a scrape_timeout longer than the scrape_interval; 10s is its default.
	maxScrapeTimeout = 10 * time.Second
)

// Prometheus is a prometheus server started by StartPrometheus, listening on loopback only
// (or by StartPrometheusAt, on the address given).
type Prometheus struct {
	URL string // http://127.0.0.1:port (or the host given), the base of /api/v1/...

	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, valid after done is closed

	stopOnce sync.Once
	stopErr  error
}

// StartPrometheus runs a Prometheus that scrapes /metrics on each target (host:port) every
// scrapeInterval, with its data in a temporary directory, and returns once it is ready. ctx
// bounds the start-up only; the server runs until Stop. A missing binary is an error wrapping
// ErrAssetsMissing.
//
// Ready is not scraping: Prometheus 2.42's discovery manager hands targets to the scrapers on
// a fixed 5s tick, so the first samples are queryable about 5s after start-up whatever the
// scrape interval. Start it early; WaitForSeries tells when data is there.
func StartPrometheus(ctx context.Context, targets []string, scrapeInterval time.Duration) (*Prometheus, error) {
	return StartPrometheusAt(ctx, "127.0.0.1", targets, scrapeInterval)
}

// StartPrometheusAt is StartPrometheus listening on host, an address of this machine: one from
// ServiceAddress, for a Prometheus the test API server reaches through its service proxy.
func StartPrometheusAt(ctx context.Context, host string, targets []string, scrapeInterval time.Duration) (*Prometheus, error) {
	bin, err := exec.LookPath(PrometheusBinary)
	if err != nil {
		return nil, fmt.Errorf("%w: no %s binary on PATH; run `make tools` (Debian package prometheus): %v", ErrAssetsMissing, PrometheusBinary, err)
	}
	if scrapeInterval < time.Millisecond {
		return nil, fmt.Errorf("failed to start prometheus: scrape interval %v is shorter than 1ms", scrapeInterval)
	}
	dir, err := os.MkdirTemp("", "meshroll-prometheus-")
	if err != nil {
		return nil, fmt.Errorf("failed to create prometheus temp dir: %w", err)
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, prometheusConfig(targets, scrapeInterval), 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("failed to write prometheus config: %w", err), os.RemoveAll(dir))
	}

	// The free port is found by listening and closing, so another process can take it before
	// Prometheus binds it: then Prometheus exits at once and we try again on another port.
	var errs []error
	for try := 0; try < prometheusStartTries; try++ {
		p, err := startPrometheus(ctx, bin, dir, config, host)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || !errors.Is(err, errExitedEarly) {
			break
		}
	}
	return nil, errors.Join(append(errs, os.RemoveAll(dir))...)
}

var errExitedEarly = errors.New("prometheus exited before it was ready")

func startPrometheus(ctx context.Context, bin, dir, config, host string) (*Prometheus, error) {
	port, err := freePort(host)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	logPath := filepath.Join(dir, "prometheus-"+strconv.Itoa(port)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("failed to create prometheus log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor

	cmd := exec.Command(bin,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "data-"+strconv.Itoa(port)),
		"--storage.tsdb.retention.time=1h",
		"--web.listen-address="+addr,
		"--web.max-connections=64",
		"--query.max-concurrency=4",
		"--query.lookback-delta=1m",
		"--log.level=warn",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// One core is plenty for a handful of targets and leaves the other to the tests.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", bin, err)
	}
	p := &Prometheus{URL: "http://" + addr, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	if err := p.waitReady(ctx, logPath); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

func (p *Prometheus) waitReady(ctx context.Context, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, prometheusReadyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/-/ready", nil)
		if err != nil {
			return fmt.Errorf("failed to build readiness request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /-/ready: %s", resp.Status)
		}
		last = err
		select {
		case <-p.done:
			return fmt.Errorf("%w (%v): %s", errExitedEarly, p.err, tail(logPath))
		case <-ctx.Done():
			return fmt.Errorf("failed to wait for prometheus at %s to be ready: %w (last: %v): %s", p.URL, context.Cause(ctx), last, tail(logPath))
		case <-tick.C:
		}
	}
}

// Stop kills Prometheus and removes its directory. It is safe to call more than once.
func (p *Prometheus) Stop() error {
	p.stopOnce.Do(func() {
		p.kill()
		if err := os.RemoveAll(p.dir); err != nil {
			p.stopErr = fmt.Errorf("failed to remove %s: %w", p.dir, err)
		}
	})
	return p.stopErr
}

// kill ends the process and waits for it. Its data is thrown away, so there is nothing to flush.
func (p *Prometheus) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// WaitForSeries polls an instant query until it returns a non-empty vector: the targets have
// been scraped and the data is queryable. It fails at once on a query Prometheus rejects.
func (p *Prometheus) WaitForSeries(ctx context.Context, query string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		n, err := p.instantVectorLen(ctx, client, query)
		switch {
		case errors.Is(err, errBadQuery):
			return err
		case err == nil && n > 0:
			return nil
		case err == nil:
			err = errors.New("empty result")
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("failed to wait for series %q: %w (last: %v)", query, context.Cause(ctx), last)
		case <-tick.C:
		}
	}
}

var errBadQuery = errors.New("prometheus rejected the query")

func (p *Prometheus) instantVectorLen(ctx context.Context, client *http.Client, query string) (int, error) {
	u := p.URL + "/api/v1/query?" + url.Values{"query": {query}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("failed to build query request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("failed to decode query response (%s): %w", resp.Status, err)
	}
	switch {
	case body.Status != "success" && body.ErrorType == "bad_data":
		return 0, fmt.Errorf("%w: %q: %s", errBadQuery, query, body.Error)
	case body.Status != "success":
		return 0, fmt.Errorf("query %q: %s: %s", query, body.ErrorType, body.Error)
	case body.Data.ResultType != "vector":
		return 0, fmt.Errorf("%w: %q returns a %s, not a vector", errBadQuery, query, body.Data.ResultType)
	}
	return len(body.Data.Result), nil
}

// prometheusConfig is the configuration file, written as JSON (which is YAML) so that no
// target needs quoting by hand. Durations are whole milliseconds: Prometheus 2.42 reads "1500ms"
// but not Go's "1.5s".
func prometheusConfig(targets []string, interval time.Duration) []byte {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }
	if targets == nil {
		targets = []string{}
	}
	type staticConfig struct {
		Targets []string `json:"targets"`
	}
	type scrapeConfig struct {
		JobName       string         `json:"job_name"`
		StaticConfigs []staticConfig `json:"static_configs"`
	}
	cfg := struct {
		Global struct {
			ScrapeInterval     string `json:"scrape_interval"`
			ScrapeTimeout      string `json:"scrape_timeout"`
			EvaluationInterval string `json:"evaluation_interval"`
		} `json:"global"`
		ScrapeConfigs []scrapeConfig `json:"scrape_configs"`
	}{ScrapeConfigs: []scrapeConfig{{JobName: "mesh", StaticConfigs: []staticConfig{{Targets: targets}}}}}
	cfg.Global.ScrapeInterval = ms(interval)
	cfg.Global.ScrapeTimeout = ms(min(interval, maxScrapeTimeout))
	cfg.Global.EvaluationInterval = ms(interval)
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err) // plain strings cannot fail to marshal
	}
	return out
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("failed to find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the end of a log file for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const keep = 2000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "(empty log)"
	}
	return string(b)
}
