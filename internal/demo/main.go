// Command demo runs four canary releases with metric analysis on a local stack: etcd and
// kube-apiserver with Istio's and the Gateway API's CRDs, a simulated mesh (internal/meshsim)
// that routes steady traffic by the VirtualService (-api istio, the default) or by a mesh
// HTTPRoute (-api gateway) and exports Istio's metrics, and a Prometheus that scrapes it.
// The built meshroll binary first promotes a healthy v2 over v1, then rolls back a v3 that
// answers 30% of its requests with 503, then takes a healthy v4 through every traffic shape:
// a mirror stage (copies of half the requests, answers dropped), an A/B stage for Bookinfo's
// tester jason (end-user: jason), then weights, and promotes it. The weights the cluster holds
// are printed after every change, and its HTTP routes or rules (names, matches, mirror)
// whenever they change; everything started is stopped at the end, also on Ctrl-C. It ends by
// printing the summary.md of each rollout; every result file is kept under -out
// (demo-output). Run it with `make demo` (`make demo DEMO_API=gateway` for -api gateway); it
// exits non-zero when a rollout does not end as expected.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/meshroll/meshroll/internal/app"
	"github.com/meshroll/meshroll/internal/meshsim"
	"github.com/meshroll/meshroll/internal/testenv"
)

const (
	namespace  = "demo"
	rps        = 50                    // steady load through the mesh, jason's included
	jasonRPS   = 10                    // of which requests from Bookinfo's tester
	faultyRate = 0.3                   // share of v3's responses that are 503
	latency    = 20 * time.Millisecond // every version's response time
	scrape     = time.Second           // Prometheus's scrape interval
)

// versions are the deployed versions of reviews: subset vN, or Service reviews-vN, runs as
// Deployment reviews-vN.
var versions = []string{"v1", "v2", "v3", "v4", "v5"}

// jason is the header Bookinfo's productpage sends for its logged-in tester, jason.
var jason = http.Header{"End-User": {"jason"}}

// rollout is one meshroll progression and how it must end.
type rollout struct {
	stable, canary string // versions
	errorRate      float64
	shapes         []string // MESHROLL_* variables of its traffic shapes, before the weights
	how            string   // how the canary meets the traffic, told before the run
	wantExit       int
	wantResult     string
	wantCheck      string // the check that must fail the canary; "" when it must be promoted
	// quiet stops the mesh's own traffic first: meshroll's load generator sends what is judged,
	// and a pre-rollout webhook (the demo's smoke-test server) must pass before traffic moves.
	quiet bool
}

var rollouts = []rollout{
	{stable: "v1", canary: "v2", wantExit: 0, wantResult: "promoted"},
	{stable: "v2", canary: "v3", errorRate: faultyRate, wantExit: 3, wantResult: "canary-failed", wantCheck: "5xx"},
	{
		stable: "v2", canary: "v4",
		shapes: []string{"MESHROLL_MIRROR_PERCENT=50", "MESHROLL_MATCH=[{headers: {end-user: {exact: jason}}}]"},
		how: "first it gets copies of 50% of the requests (the mesh drops its answers), then only jason's requests " +
			"(end-user: jason), then its share of everyone's by the weights",
		wantExit: 0, wantResult: "promoted",
	},
	{
		stable: "v4", canary: "v5", quiet: true,
		how: fmt.Sprintf("reviews is quiet now (the mesh's own traffic stopped): a pre-rollout webhook runs a smoke test before any traffic moves, "+
			"and meshroll itself sends %d requests/s through the mesh during every hold (MESHROLL_LOAD_URL)", loadRPS),
		wantExit: 0, wantResult: "promoted",
	},
}

// loadRPS is the rate of meshroll's own load in the quiet rollout.
const loadRPS = 40

type options struct {
	api, bin, steps, out string
	hold, interval       time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.api, "api", "istio", "the routing the rollouts steer: istio (a VirtualService) or gateway (a Gateway API HTTPRoute)")
	flag.StringVar(&o.bin, "bin", "bin/meshroll", "the meshroll binary to run")
	flag.StringVar(&o.out, "out", "demo-output", "where each rollout's result files are kept (rollout-1 to rollout-4)")
	flag.StringVar(&o.steps, "steps", "20,50,100", "MESHROLL_STEPS of each rollout")
	flag.DurationVar(&o.hold, "hold", 6*time.Second, "MESHROLL_STEP_DURATION of each rollout")
	flag.DurationVar(&o.interval, "interval", 3*time.Second, "MESHROLL_ANALYSIS_INTERVAL of each rollout")
	flag.Parse()
	newRouting, ok := apis[o.api]
	if !ok {
		fmt.Fprintf(os.Stderr, "demo: -api %q is not a routing the demo knows: use istio (a VirtualService) or gateway (a Gateway API HTTPRoute)\n", o.api)
		os.Exit(2)
	}
	ctx, stop := app.SignalContext(context.Background())
	defer stop()
	ran, err := run(ctx, o, newRouting())
	// The summaries come last, once everything has stopped, also after a failed rollout.
	printSummaries(ran)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		stop()
		os.Exit(1)
	}
}

// ran is a meshroll run of the demo and the directory of its result files.
type ran struct{ name, dir string }

// run starts the stack (control plane, mesh, Prometheus, load) and runs the rollouts in
// order, returning those that ran. The deferred calls stop everything in reverse order, also
// when ctx is cancelled.
func run(ctx context.Context, o options, rt routing) ([]ran, error) {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return nil, err
	}
	fmt.Printf("demo: starting etcd and kube-apiserver with %s ...\n", rt.crds())
	env, err := testenv.Start(ctx)
	if err != nil {
		return nil, err
	}
	defer stopping("control plane", env.Stop)
	if err := setUp(ctx, env, rt); err != nil {
		return nil, err
	}
	fmt.Printf("demo: namespace %s has %s\n", namespace, rt.described())

	mesh, err := meshsim.Start(ctx, rt.meshOptions(env))
	if err != nil {
		return nil, err
	}
	defer stopping("mesh", mesh.Close)
	for _, v := range versions {
		mesh.SetBehaviour(v, 0, latency)
	}
	prom, err := testenv.StartPrometheus(ctx, []string{mesh.MetricsAddr()}, scrape)
	if err != nil {
		return nil, err
	}
	defer stopping("Prometheus", prom.Stop)
	stopLoad := background(ctx, func(ctx context.Context) { mesh.Load(ctx, rps-jasonRPS, nil) })
	defer stopLoad()
	stopJason := background(ctx, func(ctx context.Context) { mesh.Load(ctx, jasonRPS, jason) })
	defer stopJason()
	smoke, err := startSmokeTest()
	if err != nil {
		return nil, err
	}
	defer stopping("smoke-test webhook", smoke.Close)
	fmt.Printf("demo: the mesh sends %d requests/s to reviews, %d of them from Bookinfo's tester (end-user: jason), by the %s (every version answers in %s); Prometheus at %s scrapes its Istio metrics every %s\n",
		rps, jasonRPS, rt.kind(), latency, prom.URL, scrape)
	if err := waitForStable(ctx, prom, "reviews-v1", o.interval); err != nil {
		return nil, err
	}

	w, err := watchWeights(ctx, env, rt)
	if err != nil {
		return nil, err
	}
	defer background(ctx, func(ctx context.Context) { printWeights(ctx, w, rt) })()

	common := slices.Concat([]string{"MESHROLL_NAMESPACE=" + namespace}, rt.vars(), []string{
		"MESHROLL_MODE=progress",
		"MESHROLL_STEPS=" + o.steps,
		"MESHROLL_STEP_DURATION=" + o.hold.String(),
		"MESHROLL_PROMETHEUS_URL=" + prom.URL,
		"MESHROLL_ANALYSIS_INTERVAL=" + o.interval.String(),
		"MESHROLL_MIN_REQUESTS=10",
		"MESHROLL_FAILURE_THRESHOLD=2",
		"MESHROLL_CI=plain",
	})
	d := &demo{bin: bin, relBin: o.bin, env: env, rt: rt, mesh: mesh, smokeURL: "http://" + smoke.Addr, quiet: func() { stopLoad(); stopJason() }, common: common}
	fmt.Printf("demo: every run has KUBECONFIG=%s\n      %s\n", env.Kubeconfig, strings.Join(quoted(d.common), "\n      "))
	runs := make([]ran, len(rollouts))
	for i := range rollouts {
		runs[i] = ran{fmt.Sprintf("rollout %d", i+1), filepath.Join(out, fmt.Sprintf("rollout-%d", i+1))}
		// Files left by an earlier demo would read as this one's.
		if err := os.RemoveAll(runs[i].dir); err != nil {
			return nil, err
		}
	}
	var headlines []string
	for i, r := range rollouts {
		headline, err := d.rollout(ctx, runs[i].name, runs[i].dir, r)
		if err != nil {
			return runs[:i+1], err
		}
		headlines = append(headlines, headline)
	}
	fmt.Printf("\ndemo: done\n    %s\n", strings.Join(headlines, "\n    "))
	return runs, nil
}

// demo is what every rollout needs.
type demo struct {
	bin, relBin string // the meshroll binary, absolute and as given
	env         *testenv.Env
	rt          routing
	mesh        *meshsim.Mesh
	common      []string // the MESHROLL_* variables every run has
	smokeURL    string   // the smoke-test webhook
	quiet       func()   // stops the mesh's own traffic (every later call does nothing)
}

// rollout makes the canary behave as r says, runs meshroll from r.stable to r.canary with its
// result files in dir and returns its headline, or an error when the rollout did not end as r
// expects.
func (d *demo) rollout(ctx context.Context, name, dir string, r rollout) (string, error) {
	d.mesh.SetBehaviour(r.canary, r.errorRate, latency)
	health := "healthy"
	if r.errorRate > 0 {
		health = fmt.Sprintf("faulty: %.0f%% of its responses are 503", 100*r.errorRate)
	}
	fmt.Printf("\ndemo: %s: %s → %s, and %s is %s\n", name, r.stable, r.canary, r.canary, health)
	if r.how != "" {
		fmt.Printf("demo: %s: %s\n", name, r.how)
	}

	if r.quiet {
		d.quiet()
		r.shapes = append(r.shapes,
			"MESHROLL_WEBHOOKS=[{name: smoke-test, type: pre-rollout, url: '"+d.smokeURL+"/smoke', metadata: {cmd: 'curl -sf reviews-canary/health'}}]",
			"MESHROLL_LOAD_URL="+d.mesh.FrontURL()+"/reviews/1",
			fmt.Sprintf("MESHROLL_LOAD_RPS=%d", loadRPS))
	}
	vars := slices.Concat(d.rt.versionVars(r.stable, r.canary), []string{
		// Both Deployments must be Available; their names are also the workloads compared.
		"MESHROLL_STABLE_DEPLOYMENT=reviews-" + r.stable,
		"MESHROLL_CANARY_DEPLOYMENT=reviews-" + r.canary,
		"MESHROLL_OUTPUT_DIR=" + relative(dir),
	}, r.shapes)
	fmt.Printf("$ %s %s\n", strings.Join(quoted(vars), " "), d.relBin)
	environ := append([]string{"KUBECONFIG=" + d.env.Kubeconfig, "HOME=" + os.Getenv("HOME")}, append(d.common, vars...)...)
	code, err := meshroll(ctx, d.bin, environ)
	time.Sleep(300 * time.Millisecond) // let the watcher print the last change first
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}

	result, check := outcome(dir)
	headline := fmt.Sprintf("%s: %s %s (exit %d)", name, r.canary, describe(result, check), code)
	fmt.Println("demo:", headline)
	if code != r.wantExit || result != r.wantResult || check != r.wantCheck {
		want := fmt.Sprintf("%s, exit %d", r.wantResult, r.wantExit)
		if r.wantCheck != "" {
			want = "rolled back by check " + r.wantCheck + ", " + want
		}
		return "", fmt.Errorf("%s did not end as expected (%s)", name, want)
	}
	if err := d.rt.checkRestored(ctx, d.env); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return headline, nil
}

// quoted renders NAME=value variables for a shell command line, quoting values a shell would
// split or expand.
func quoted(vars []string) []string {
	out := make([]string, len(vars))
	for i, v := range vars {
		name, value, _ := strings.Cut(v, "=")
		if strings.ContainsAny(value, " \t\n'\"\\$`*?[]{}();&|<>!#") {
			value = "'" + strings.ReplaceAll(value, "'", `'\''`) + "'"
		}
		out[i] = name + "=" + value
	}
	return out
}

// waitForStable waits until Prometheus can compute the stable workload's request rate over
// one analysis window, so that the first window of the first step has something to compare.
func waitForStable(ctx context.Context, prom *testenv.Prometheus, workload string, window time.Duration) error {
	fmt.Printf("demo: waiting for Prometheus to have %s's requests ...\n", workload)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	query := fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace=%q,destination_workload=%q}[%ds])) > 0`,
		namespace, workload, int(window.Seconds()))
	return prom.WaitForSeries(ctx, query)
}

// meshroll runs the binary with exactly the environment environ, streams its output and
// returns its exit code.
func meshroll(ctx context.Context, bin string, environ []string) (code int, err error) {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = environ
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// On Ctrl-C meshroll gets the signal too and returns the traffic to stable: let it finish.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return 0, fmt.Errorf("interrupted: %w", context.Cause(ctx))
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		return 0, err
	}
	return code, nil
}

// background runs f until the returned function cancels it and waits for it to return.
func background(ctx context.Context, f func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f(ctx) }()
	return func() { cancel(); <-done }
}

func stopping(what string, stop func() error) {
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: failed to stop the %s: %v\n", what, err)
		return
	}
	fmt.Printf("demo: %s stopped\n", what)
}
