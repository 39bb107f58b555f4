// Package app wires meshroll together: configuration, clients, the rollout and its report.
// It is the only package that knows all the others.
package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/lease"
	"github.com/meshroll/meshroll/internal/report"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/gatewayapi"
	"github.com/meshroll/meshroll/internal/traffic/istio"
)

// Version is set at build time with -ldflags "-X github.com/meshroll/meshroll/internal/app.Version=...".
var Version = "dev"

// Main runs meshroll with the given command line (os.Args: the program's name first, then at
// most a mode or help) and environment, and returns the process exit code.
func Main(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	environ, code, done := command(args, environ, stdout, stderr)
	if done {
		return code
	}
	if strings.TrimSpace(getenv(environ)("MESHROLL_MODE")) == modeVersion {
		fmt.Fprintln(stdout, Version)
		return 0
	}
	cfg, err := config.Load(environ)
	if err != nil {
		// Reported too, so that a later CI step can read why the run did nothing.
		cfg = config.Reporting(environ)
		rep, repErr := newReporter(cfg, environ, stdout)
		if repErr != nil {
			rep = nil // no report then; the input's problems are printed all the same
		}
		return reject(rep, cfg, stderr, "invalid input, nothing was changed:\n"+bullets(err), err)
	}
	// The reporter comes first: on GitHub it registers the secrets' masks before any output.
	rep, err := newReporter(cfg, environ, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "meshroll: %s\nCheck MESHROLL_OUTPUT_DIR and MESHROLL_CI; nothing was changed.\n", report.Redact(err.Error(), cfg.Secrets()))
		return rollout.Invalid.ExitCode()
	}
	clients, err := kube.Connect(kube.Access{
		Kubeconfig: cfg.Kubeconfig,
		Data:       cfg.KubeconfigData,
		Home:       cfg.Home,
		Context:    cfg.KubeContext,
		Path:       getenv(environ)("PATH"), // where a kubeconfig's credential plugin is looked up
		UserAgent:  "meshroll/" + Version,
	})
	if err != nil {
		// Nothing has been sent to a server yet: the settings themselves are wrong.
		return reject(rep, cfg, stderr, err.Error()+"\nCheck KUBECONFIG, MESHROLL_KUBECONFIG and MESHROLL_KUBE_CONTEXT; nothing was changed.", err)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = clients.Namespace
	}
	analyzer, err := newAnalyzer(cfg, clients)
	if err != nil {
		return reject(rep, cfg, stderr, "invalid input, nothing was changed:\n"+bullets(err), err)
	}
	kind, name := cfg.RouteObject()
	lock := lease.New(clients.Kube, kind, cfg.Namespace, name, cfg.LeaseDuration)
	if cfg.Mode == config.ModeStatus && cfg.StableName() == "" {
		cfg = recordedVersions(ctx, lock, cfg)
	}
	runner := rollout.NewRunner(backend(cfg, clients), analyzer, rep)
	runner.Lock, runner.Holder = lock, holder(cfg)
	wireGates(ctx, runner, cfg, clients)
	res := runner.Run(ctx, cfg)
	if res.Err != nil {
		fmt.Fprintf(stderr, "meshroll: %s: %s\n", res.Outcome, report.Redact(res.Err.Error(), cfg.Secrets()))
	}
	return finish(rep, cfg, stderr, res)
}

func newReporter(cfg config.Config, environ []string, stdout io.Writer) (report.Reporter, error) {
	return report.New(report.Options{
		CI:        cfg.CI,
		OutputDir: cfg.OutputDir,
		Getenv:    getenv(environ),
		Stdout:    stdout,
		Secrets:   cfg.Secrets(),
		Version:   Version,
	})
}

// reject ends a run that stopped before the rollout began: it prints msg and, when there is
// a reporter, reports the run as invalid (exit 2).
func reject(rep report.Reporter, cfg config.Config, stderr io.Writer, msg string, err error) int {
	fmt.Fprintf(stderr, "meshroll: %s\n", report.Redact(msg, cfg.Secrets()))
	if rep == nil {
		return rollout.Invalid.ExitCode()
	}
	now := time.Now()
	return finish(rep, cfg, stderr, rollout.Result{
		Mode: cfg.Mode, Outcome: rollout.Invalid, Namespace: cfg.Namespace, VirtualService: cfg.VirtualService, HTTPRoute: cfg.HTTPRoute,
		StableSubset: cfg.StableSubset, CanarySubset: cfg.CanarySubset, StableService: cfg.StableService, CanaryService: cfg.CanaryService,
		StartedAt: now, FinishedAt: now,
		Reason: err.Error(), Err: err,
	})
}

// finish writes the report of res, prints the result line last and returns the exit code.
func finish(rep report.Reporter, cfg config.Config, stderr io.Writer, res rollout.Result) int {
	code := res.Outcome.ExitCode()
	if err := rep.Finish(res); err != nil {
		fmt.Fprintf(stderr, "meshroll: %s\n", report.Redact(err.Error(), cfg.Secrets()))
		if code == 0 {
			code = rollout.Failed.ExitCode() // a later job would miss the result
		}
	}
	line := "result: " + string(res.Outcome)
	if now, planned := report.FinalWeights(res); len(now) > 0 {
		kind, name := res.Object()
		line += fmt.Sprintf(" (%s/%s %s %s: %s", res.Namespace, name, traffic.RouteWord(kind), res.Route, traffic.DescribeWeights(now))
		if planned != nil {
			line += "; planned " + traffic.DescribeWeights(planned) + ", not written"
		}
		line += ")"
	}
	rep.Printf("%s", line)
	return code
}

// backend is the traffic backend of the routing object cfg names.
func backend(cfg config.Config, clients kube.Clients) rollout.Traffic {
	if cfg.HTTPRoute != "" {
		return gatewayapi.NewClient(clients.Gateway, clients.Kube, gatewayapi.Target{
			Namespace:     cfg.Namespace,
			HTTPRoute:     cfg.HTTPRoute,
			Rule:          cfg.Route,
			StableService: cfg.StableService,
			CanaryService: cfg.CanaryService,
			Match:         cfg.Match,
		})
	}
	return istio.NewClient(clients.Istio, clients.Kube, istio.Target{
		Namespace:      cfg.Namespace,
		VirtualService: cfg.VirtualService,
		Route:          cfg.Route,
		StableSubset:   cfg.StableSubset,
		CanarySubset:   cfg.CanarySubset,
		StableService:  cfg.StableService,
		CanaryService:  cfg.CanaryService,
		Match:          cfg.Match,
	})
}

// getenv looks variables up in environ (later entries win, as in a shell), never in the
// process environment, so that tests and callers decide what meshroll sees.
func getenv(environ []string) func(string) string {
	vars := env.ToMap(environ)
	return func(k string) string { return vars[k] }
}

// newAnalyzer builds the metric analysis of cfg, or returns nil when it is off. A Prometheus
// inside the cluster (MESHROLL_PROMETHEUS_SERVICE) is reached through the API server the
// clients talk to, with their credentials.
func newAnalyzer(cfg config.Config, clients kube.Clients) (rollout.Analysis, error) {
	if !cfg.Analysis.Enabled() {
		return nil, nil
	}
	settings := analysis.Settings{Analysis: cfg.Analysis, Namespace: cfg.Namespace}
	if svc := cfg.Analysis.PrometheusService; svc.Name != "" {
		proxy, err := prometheusProxy(clients, svc)
		if err != nil {
			return nil, err
		}
		settings.Proxy = proxy
	}
	analyzer, err := analysis.New(settings)
	if err != nil {
		return nil, err
	}
	return analyzer, nil
}

// holder names this run in the lock it takes: the CI run's address, else host and pid.
func holder(cfg config.Config) string {
	if cfg.RunLink != "" {
		return cfg.RunLink
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/pid %d", host, os.Getpid())
}

// recordedVersions fills in, for a status run that did not name the versions, those of the
// last rollout recorded on the routing object (none: status reports the lock alone).
func recordedVersions(ctx context.Context, lock *lease.Lease, cfg config.Config) config.Config {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h, err := lock.Read(ctx)
	if err != nil || h.Record == nil {
		return cfg // the run's own read reports the error
	}
	in := h.Record.Inputs
	cfg.StableSubset, cfg.CanarySubset = in["MESHROLL_STABLE_SUBSET"], in["MESHROLL_CANARY_SUBSET"]
	cfg.StableService, cfg.CanaryService = in["MESHROLL_STABLE_SERVICE"], in["MESHROLL_CANARY_SERVICE"]
	if cfg.Route == "" {
		cfg.Route = in["MESHROLL_ROUTE"]
	}
	return cfg
}

// bullets renders a joined error one problem per line.
func bullets(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "  - " + l
	}
	return strings.Join(lines, "\n")
}
