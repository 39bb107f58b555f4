package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/istio"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack holds the VirtualServices every test starts from: reviews split v1 90 / v2 10, a
// three-subset one and an ambiguous one. newStack adds their DestinationRule and two
// Available Deployments (plus one that never becomes Available).
const stack = `
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
  - name: default
    retries: {attempts: 3, perTryTimeout: 2s}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: three
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 60
    - destination: {host: reviews, subset: v3}
      weight: 30
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ambiguous
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
  - route:
    - destination: {host: reviews, subset: v2}
`

// newStack creates the stack in a fresh namespace.
func newStack(t *testing.T, env *testenv.Env) string {
	t.Helper()
	ns := env.Namespace(t)
	env.Apply(t, ns, strings.Join([]string{testenv.DestinationRuleManifest("v1", "v2", "v3"), stack, testenv.DeploymentManifest("reviews-v1", "v1"), testenv.DeploymentManifest("reviews-v2", "v2"), testenv.DeploymentManifest("reviews-broken", "v2")}, "\n---\n"))
	for _, d := range []string{"reviews-v1", "reviews-v2"} {
		if err := env.SetDeploymentStatus(t.Context(), ns, d, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.SetDeploymentStatus(t.Context(), ns, "reviews-broken", false); err != nil {
		t.Fatal(err)
	}
	return ns
}

type run struct {
	code           int
	stdout, stderr string
}

// runMain runs meshroll in-process the way main.go does, with the test cluster's kubeconfig.
func runMain(ctx context.Context, t *testing.T, env *testenv.Env, ns string, vars ...string) run {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, []string{"meshroll"}, mainEnviron(t, env, ns, vars...), &stdout, &stderr)
	return run{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mainEnviron is the environment of runMain: the stack's reviews VirtualService steered from
// subset v1 to v2 without holds, then vars (later entries win, as in a shell).
func mainEnviron(t *testing.T, env *testenv.Env, ns string, vars ...string) []string {
	t.Helper()
	environ := []string{
		"KUBECONFIG=" + env.Kubeconfig,
		"HOME=" + t.TempDir(),
		"MESHROLL_NAMESPACE=" + ns,
		"MESHROLL_VIRTUAL_SERVICE=reviews",
		"MESHROLL_STABLE_SUBSET=v1",
		"MESHROLL_CANARY_SUBSET=v2",
		"MESHROLL_STEP_DURATION=0s",
		"MESHROLL_OUTPUT_DIR=" + t.TempDir(),
		"PATH=" + os.Getenv("PATH"),
	}
	return append(environ, vars...)
}

func weights(t *testing.T, env *testenv.Env, ns, name string) (string, string) {
	t.Helper()
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state, err := istio.NewState(ns, name, vs.ResourceVersion, specJSON(t, vs), istio.Target{Namespace: ns, VirtualService: name, StableSubset: "v1", CanarySubset: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	return traffic.DescribeWeights(state.Routing().Destinations), vs.ResourceVersion
}

func resourceVersion(t *testing.T, env *testenv.Env, ns, name string) string {
	t.Helper()
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return vs.ResourceVersion
}

func TestModes(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name       string
		vars       []string
		wantCode   int
		wantResult string
		wantAfter  string
		wantLog    []string
		readOnly   bool
	}{
		{name: "phase", vars: []string{"MESHROLL_MODE=phase", "MESHROLL_WEIGHT=20"}, wantResult: "result: weight-set", wantAfter: "v1 80, v2 20",
			wantLog: []string{"step 1/1: reviews v1 90 → 80, v2 10 → 20"}},
		{name: "phase with deployment check", vars: []string{"MESHROLL_MODE=phase", "MESHROLL_WEIGHT=30", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2"}, wantResult: "result: weight-set", wantAfter: "v1 70, v2 30"},
		{name: "phase already in place", vars: []string{"MESHROLL_MODE=phase", "MESHROLL_WEIGHT=10"}, wantResult: "result: unchanged", wantAfter: "v1 90, v2 10", readOnly: true,
			wantLog: []string{"already in place, nothing written"}},
		{name: "progress", vars: []string{"MESHROLL_MODE=progress", "MESHROLL_STEPS=25,50,100"}, wantResult: "result: promoted", wantAfter: "v1 0, v2 100",
			wantLog: []string{"step 1/3: reviews v1 90 → 75, v2 10 → 25", "step 2/3: reviews v1 75 → 50, v2 25 → 50", "step 3/3: reviews v1 50 → 0, v2 50 → 100"}},
		{name: "progress by default steps", vars: nil, wantResult: "result: promoted", wantAfter: "v1 0, v2 100",
			wantLog: []string{"skipping canary 10%: the canary already has 10% and a progression never lowers it", "step 1/3: reviews v1 90 → 75, v2 10 → 25", "step 3/3: reviews v1 50 → 0, v2 50 → 100"}},
		{name: "progress with holds", vars: []string{"MESHROLL_STEPS=20,40", "MESHROLL_STEP_DURATION=300ms"}, wantResult: "result: weight-set", wantAfter: "v1 60, v2 40",
			wantLog: []string{"step 1/2: holding 300ms", "step 2/2: holding 300ms"}},
		{name: "promote", vars: []string{"MESHROLL_MODE=promote"}, wantResult: "result: promoted", wantAfter: "v1 0, v2 100"},
		{name: "rollback", vars: []string{"MESHROLL_MODE=rollback"}, wantResult: "result: rolled-back", wantAfter: "v1 100, v2 0"},
		{name: "rollback while the canary deployment is broken", vars: []string{"MESHROLL_MODE=rollback", "MESHROLL_CANARY_DEPLOYMENT=reviews-broken"}, wantResult: "result: rolled-back", wantAfter: "v1 100, v2 0"},
		{name: "status", vars: []string{"MESHROLL_MODE=status"}, wantResult: "result: status", wantAfter: "v1 90, v2 10", readOnly: true,
			wantLog: []string{"route default: v1 90, v2 10"}},
		{name: "dry run", vars: []string{"MESHROLL_DRY_RUN=true", "MESHROLL_STEPS=50,100"}, wantResult: "result: dry-run", wantAfter: "v1 90, v2 10", readOnly: true,
			wantLog: []string{"dry run step 1/2: v1 90 → 50, v2 10 → 50", `patch: [{"op":"replace","path":"/metadata/resourceVersion"`, `{"op":"add","path":"/spec/http/1/route/0/weight","value":50}`, "dry run step 2/2: v1 50 → 0, v2 50 → 100", `"value":"<resourceVersion after step 1>"`,
				"route default: v1 90, v2 10; planned v1 0, v2 100, not written)"}},
		{name: "dry run promote", vars: []string{"MESHROLL_MODE=promote", "MESHROLL_DRY_RUN=1"}, wantResult: "result: dry-run", wantAfter: "v1 90, v2 10", readOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := newStack(t, env)
			_, rvBefore := weights(t, env, ns, "reviews")
			got := runMain(t.Context(), t, env, ns, tt.vars...)
			if got.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tt.wantCode, got.stdout, got.stderr)
			}
			if !strings.Contains(got.stdout, tt.wantResult) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantResult, got.stdout)
			}
			for _, line := range tt.wantLog {
				if !strings.Contains(got.stdout, line) {
					t.Errorf("stdout lacks %q:\n%s", line, got.stdout)
				}
			}
			after, rvAfter := weights(t, env, ns, "reviews")
			if after != tt.wantAfter {
				t.Errorf("weights after = %q, want %q", after, tt.wantAfter)
			}
			if tt.readOnly && rvAfter != rvBefore {
				t.Errorf("a read-only run wrote: resourceVersion %s → %s", rvBefore, rvAfter)
			}
			// The tester's pinned route is never touched.
			vs, _ := env.Istio.NetworkingV1().VirtualServices(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
			if r := vs.Spec.Http[0].Route; len(r) != 1 || r[0].Weight != 0 || r[0].Destination.Subset != "v2" {
				t.Errorf("the tester route changed: %v", r)
			}
		})
	}
}

// Every bad input exits 2 (1 for infrastructure) with a message that names the problem, and
// writes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := newStack(t, env)
	unreachable := filepath.Join(t.TempDir(), "unreachable")
	if err := os.WriteFile(unreachable, []byte(`apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: tok-9f3a1c7e}}]
contexts: [{name: gone, context: {cluster: gone, user: u}}]
current-context: gone
`), 0o600); err != nil {
		t.Fatal(err)
	}
	rvs := map[string]string{}
	for _, name := range []string{"reviews", "three", "ambiguous"} {
		rvs[name] = resourceVersion(t, env, ns, name)
	}
	tests := []struct {
		name     string
		vars     []string
		wantCode int
		wantMsg  string
	}{
		{"weight not a number", []string{"MESHROLL_MODE=phase", "MESHROLL_WEIGHT=ten"}, 2, "MESHROLL_WEIGHT"},
		{"weight above 100", []string{"MESHROLL_MODE=phase", "MESHROLL_WEIGHT=150"}, 2, "MESHROLL_WEIGHT=150: must be an integer from 0 to 100"},
		{"weight negative", []string{"MESHROLL_MODE=phase", "MESHROLL_WEIGHT=-5"}, 2, "MESHROLL_WEIGHT=-5"},
		{"weight fractional", []string{"MESHROLL_MODE=phase", "MESHROLL_WEIGHT=12.5"}, 2, "MESHROLL_WEIGHT=12.5"},
		{"weight missing in phase", []string{"MESHROLL_MODE=phase"}, 2, "MESHROLL_WEIGHT is required"},
		{"weight outside phase", []string{"MESHROLL_MODE=promote", "MESHROLL_WEIGHT=20"}, 2, "MESHROLL_WEIGHT"},
		{"steps descending", []string{"MESHROLL_STEPS=50,25"}, 2, "MESHROLL_STEPS"},
		{"steps duplicated", []string{"MESHROLL_STEPS=10,10,50"}, 2, "MESHROLL_STEPS"},
		{"steps not numbers", []string{"MESHROLL_STEPS=10,half"}, 2, "MESHROLL_STEPS"},
		{"steps out of range", []string{"MESHROLL_STEPS=10,200"}, 2, "MESHROLL_STEPS"},
		{"step duration bad", []string{"MESHROLL_STEP_DURATION=5 minutes"}, 2, "MESHROLL_STEP_DURATION"},
		{"step duration negative", []string{"MESHROLL_STEP_DURATION=-1m"}, 2, "MESHROLL_STEP_DURATION"},
		{"ready timeout bad", []string{"MESHROLL_READY_TIMEOUT=soon"}, 2, "MESHROLL_READY_TIMEOUT"},
		{"timeout bad", []string{"MESHROLL_TIMEOUT=1x"}, 2, "MESHROLL_TIMEOUT"},
		{"unknown mode", []string{"MESHROLL_MODE=yolo"}, 2, "MESHROLL_MODE=yolo"},
		{"dry run not a boolean", []string{"MESHROLL_DRY_RUN=maybe"}, 2, "MESHROLL_DRY_RUN"},
		{"virtual service missing from input", []string{"MESHROLL_VIRTUAL_SERVICE="}, 2, "MESHROLL_VIRTUAL_SERVICE is required"},
		{"stable equals canary", []string{"MESHROLL_CANARY_SUBSET=v1"}, 2, "MESHROLL_CANARY_SUBSET"},
		{"misspelt variable", []string{"MESHROLL_WIEGHT=20"}, 2, "MESHROLL_WIEGHT"},
		{"virtual service not in cluster", []string{"MESHROLL_VIRTUAL_SERVICE=nope"}, 2, "VirtualService " + ns + "/nope not found"},
		{"namespace wrong", []string{"MESHROLL_NAMESPACE=elsewhere"}, 2, "VirtualService elsewhere/reviews not found"},
		{"route name unknown", []string{"MESHROLL_ROUTE=web"}, 2, `MESHROLL_ROUTE="web"`},
		{"route has no stable subset", []string{"MESHROLL_ROUTE=tester"}, 2, "no destination with the stable subset"},
		{"ambiguous route", []string{"MESHROLL_VIRTUAL_SERVICE=ambiguous"}, 2, "several HTTP routes"},
		{"subsets in no route", []string{"MESHROLL_STABLE_SUBSET=blue", "MESHROLL_CANARY_SUBSET=green"}, 2, "no HTTP route with a destination of subset"},
		{"canary subset not in destination rule", []string{"MESHROLL_CANARY_SUBSET=v9", "MESHROLL_VIRTUAL_SERVICE=three"}, 2, `defines subset "v9"`},
		{"phase weight larger than what is left", []string{"MESHROLL_VIRTUAL_SERVICE=three", "MESHROLL_MODE=phase", "MESHROLL_WEIGHT=80"}, 2, "canary weight 80 is more than the 70 left"},
		{"a later step larger than what is left", []string{"MESHROLL_VIRTUAL_SERVICE=three", "MESHROLL_STEPS=20,50,100"}, 2, "canary weight 100 is more than the 70 left"},
		{"canary deployment not available", []string{"MESHROLL_CANARY_DEPLOYMENT=reviews-broken", "MESHROLL_READY_TIMEOUT=1s"}, 2, "is not Available after 1s"},
		{"canary deployment missing", []string{"MESHROLL_CANARY_DEPLOYMENT=reviews-v9"}, 2, "reviews-v9 not found"},
		{"canary deployment of the wrong version", []string{"MESHROLL_CANARY_DEPLOYMENT=reviews-v1"}, 2, "are labelled app=reviews,version=v1"},
		{"stable deployment not available", []string{"MESHROLL_STABLE_DEPLOYMENT=reviews-broken", "MESHROLL_READY_TIMEOUT=1s"}, 2, "is not Available after 1s"},
		{"stable deployment of the wrong version", []string{"MESHROLL_STABLE_DEPLOYMENT=reviews-v2"}, 2, `the stable subset "v1" selects version=v1 but the pods of Deployment`},
		{"analysis threshold without Prometheus", []string{"MESHROLL_MIN_SUCCESS_RATE=99.9"}, 2, "MESHROLL_MIN_SUCCESS_RATE is set but MESHROLL_PROMETHEUS_URL is empty"},
		{"custom check that is not a list", []string{"MESHROLL_PROMETHEUS_URL=http://127.0.0.1:1", "MESHROLL_CANARY_WORKLOAD=reviews-v2", "MESHROLL_STABLE_WORKLOAD=reviews-v1", "MESHROLL_STEP_DURATION=1m", "MESHROLL_CHECKS=name: x"}, 2, "MESHROLL_CHECKS: the checks must be a list"},
		{"Prometheus unreachable at preflight", []string{"MESHROLL_PROMETHEUS_URL=http://127.0.0.1:1", "MESHROLL_CANARY_WORKLOAD=reviews-v2", "MESHROLL_STABLE_WORKLOAD=reviews-v1", "MESHROLL_STEP_DURATION=1m"}, 1, "meshroll: failed: failed to check the analysis queries: Prometheus at http://127.0.0.1:1 cannot be reached after 3 attempts"},
		{"kube context unknown", []string{"MESHROLL_KUBE_CONTEXT=prod"}, 2, "prod"},
		{"kubeconfig unreadable", []string{"KUBECONFIG=" + filepath.Join(t.TempDir(), "missing")}, 2, "KUBECONFIG"},
		{"api server unreachable", []string{"KUBECONFIG=" + unreachable}, 1, "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := runMain(t.Context(), t, env, ns, tt.vars...)
			if got.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tt.wantCode, got.stdout, got.stderr)
			}
			if !strings.Contains(got.stderr, tt.wantMsg) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantMsg, got.stderr)
			}
			if strings.Contains(got.stdout+got.stderr, "tok-9f3a1c7e") {
				t.Errorf("the kubeconfig token leaked into the output")
			}
		})
	}
	t.Cleanup(func() {
		for name, rv := range rvs {
			if now := resourceVersion(t, env, ns, name); now != rv {
				t.Errorf("VirtualService %s was written by a bad input: resourceVersion %s → %s", name, rv, now)
			}
		}
	})
}

// A signal during a held step returns traffic to stable and exits 130; a whole-run deadline
// does the same and exits 1.
func TestInterruptedProgress(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name     string
		vars     []string
		cancel   bool
		wantCode int
		wantMsg  string
	}{
		{name: "cancelled", vars: []string{"MESHROLL_STEPS=30,60", "MESHROLL_STEP_DURATION=1h"}, cancel: true, wantCode: 130, wantMsg: "cancelled"},
		{name: "deadline", vars: []string{"MESHROLL_STEPS=30,60", "MESHROLL_STEP_DURATION=1h", "MESHROLL_TIMEOUT=2s"}, wantCode: 1, wantMsg: "MESHROLL_TIMEOUT=2s reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := newStack(t, env)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var got run
			var wg sync.WaitGroup
			wg.Go(func() { got = runMain(ctx, t, env, ns, tt.vars...) })
			if tt.cancel {
				// Cancel once the first step is in place, during its hold.
				err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
					w, _ := weights(t, env, ns, "reviews")
					return w == "v1 70, v2 30", nil
				})
				if err != nil {
					t.Fatalf("the first step never landed: %v", err)
				}
				cancel()
			}
			wg.Wait()
			if got.code != tt.wantCode || !strings.Contains(got.stderr, tt.wantMsg) {
				t.Fatalf("exit %d (want %d), stderr lacks %q?\nstdout:\n%s\nstderr:\n%s", got.code, tt.wantCode, tt.wantMsg, got.stdout, got.stderr)
			}
			if w, _ := weights(t, env, ns, "reviews"); w != "v1 100, v2 0" {
				t.Errorf("weights after the interruption = %s, want all on stable", w)
			}
			if !strings.Contains(got.stdout, "rollback: reviews v1 70 → 100, v2 30 → 0") {
				t.Errorf("stdout lacks the rollback line:\n%s", got.stdout)
			}
		})
	}
}
