package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshroll/meshroll/internal/testenv"
)

// A runner killed with SIGKILL while its A/B route or its mirror was in place leaves it
// there (nothing could run); a later rollback, without MESHROLL_MATCH or
// MESHROLL_MIRROR_PERCENT, removes it and puts all traffic on stable.
func TestKilledRunIsRolledBack(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	bin := binary(t)
	for _, tt := range []struct {
		name  string
		shape map[string]string
		// placed says, from the steered route and the route names, that the shape is in place.
		placed func(names []string, mirrored bool) bool
	}{
		{"A/B route", map[string]string{"MESHROLL_MATCH": "[{headers: {end-user: {exact: jason}}}]"},
			func(names []string, _ bool) bool { return slices.Contains(names, "meshroll-ab-v2") }},
		{"mirror", map[string]string{"MESHROLL_MIRROR_PERCENT": "50"},
			func(_ []string, mirrored bool) bool { return mirrored }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := newStack(t, env)
			dir := t.TempDir()
			vars := map[string]string{
				"KUBECONFIG":               env.Kubeconfig,
				"HOME":                     dir,
				"MESHROLL_NAMESPACE":       ns,
				"MESHROLL_VIRTUAL_SERVICE": "reviews",
				"MESHROLL_STABLE_SUBSET":   "v1",
				"MESHROLL_CANARY_SUBSET":   "v2",
				"MESHROLL_STEPS":           "50,100",
				"MESHROLL_STEP_DURATION":   "10m", // the first stage is held until the kill
				"MESHROLL_OUTPUT_DIR":      filepath.Join(dir, "progress"),
			}
			for k, v := range tt.shape {
				vars[k] = v
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = append(environ(vars), "PATH="+os.Getenv("PATH"))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait until the shape is in the cluster, then kill the runner during its hold.
			err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				names, mirrored := vsRoutes(t, env, ns)
				return tt.placed(names, mirrored), nil
			})
			if err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("the %s never appeared: %v\n%s", tt.name, err, out.String())
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait() // "signal: killed"
			if names, mirrored := vsRoutes(t, env, ns); !tt.placed(names, mirrored) {
				t.Fatalf("the %s went away with the runner: nothing should have run after SIGKILL", tt.name)
			}

			rollback := map[string]string{}
			for k, v := range vars {
				if _, shape := tt.shape[k]; !shape {
					rollback[k] = v
				}
			}
			rollback["MESHROLL_MODE"], rollback["MESHROLL_STEPS"], rollback["MESHROLL_OUTPUT_DIR"] = "rollback", "", filepath.Join(dir, "rollback")
			got := runBinary(t, rollback)
			if got.code != 0 {
				t.Fatalf("rollback: exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
			}
			names, mirrored := vsRoutes(t, env, ns)
			if tt.placed(names, mirrored) || slices.Contains(names, "meshroll-ab-v2") || mirrored {
				t.Errorf("after the rollback: routes %v, mirrored %v", names, mirrored)
			}
		})
	}
}

// vsRoutes are the names of the reviews VirtualService's HTTP routes, and whether any of
// them mirrors.
func vsRoutes(t *testing.T, env *testenv.Env, ns string) ([]string, bool) {
	t.Helper()
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(context.Background(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	mirrored := false
	for _, r := range vs.Spec.Http {
		names = append(names, r.Name)
		mirrored = mirrored || r.Mirror != nil
	}
	return names, mirrored
}
