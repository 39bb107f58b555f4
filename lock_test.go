package main

// The lock and record of a run, seen by the binary itself: a runner killed with SIGKILL
// during a hold leaves both behind, and the runs after it must read them right.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshroll/meshroll/internal/testenv"
)

const (
	ciServer = "https://github.example"
	ciRepo   = "shop/reviews"
)

// ciLink is the address meshroll makes of GitHub's variables: the holder of the lock.
func ciLink(runID, attempt string) string {
	link := ciServer + "/" + ciRepo + "/actions/runs/" + runID
	if attempt != "1" {
		link += "/attempts/" + attempt
	}
	return link
}

// lockRig runs the binary against one VirtualService, each run with an output dir of its own.
type lockRig struct {
	env *testenv.Env
	ns  string
	dir string
}

// vars are the variables of a run named name (its output dir) in GitHub's run runID/attempt,
// reported plainly (MESHROLL_CI=plain: no GitHub files), with more added.
func (r lockRig) vars(name, runID, attempt string, more map[string]string) map[string]string {
	vars := map[string]string{
		"KUBECONFIG":               r.env.Kubeconfig,
		"HOME":                     r.dir,
		"MESHROLL_CI":              "plain",
		"MESHROLL_NAMESPACE":       r.ns,
		"MESHROLL_VIRTUAL_SERVICE": "reviews",
		"MESHROLL_OUTPUT_DIR":      filepath.Join(r.dir, name),
		"GITHUB_SERVER_URL":        ciServer,
		"GITHUB_REPOSITORY":        ciRepo,
		"GITHUB_RUN_ID":            runID,
		"GITHUB_RUN_ATTEMPT":       attempt,
	}
	for k, v := range more {
		vars[k] = v
	}
	return vars
}

// progress are the variables of a progression 20,50,100 holding each step for hold.
func progress(hold, lease string) map[string]string {
	return map[string]string{
		"MESHROLL_STABLE_SUBSET":  "v1",
		"MESHROLL_CANARY_SUBSET":  "v2",
		"MESHROLL_STEPS":          "20,50,100",
		"MESHROLL_STEP_DURATION":  hold,
		"MESHROLL_LEASE_DURATION": lease,
	}
}

// lockRecord is the part of the Lease's meshroll.dev/rollout annotation the tests read.
type lockRecord struct {
	Holder, Link, Mode, Doing, Weights, Outcome string
	Stage, Of                                   int
}

// lockOf reads the reviews VirtualService's Lease and its record.
func lockOf(t *testing.T, env *testenv.Env, ns string) (*coordinationv1.Lease, lockRecord) {
	t.Helper()
	lease, err := env.Kube.CoordinationV1().Leases(ns).Get(context.Background(), "meshroll-reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rec lockRecord
	if err := json.Unmarshal([]byte(lease.Annotations["meshroll.dev/rollout"]), &rec); err != nil {
		t.Fatalf("the Lease's record: %v\n%s", err, lease.Annotations["meshroll.dev/rollout"])
	}
	return lease, rec
}

// holderOf is the Lease's holderIdentity, "" when nobody holds it.
func holderOf(lease *coordinationv1.Lease) string {
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// vsWeights are the weights of the reviews VirtualService's first route, "v1 80, v2 20",
// and its resourceVersion.
func vsWeights(t *testing.T, env *testenv.Env, ns string) (string, string) {
	t.Helper()
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(context.Background(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, d := range vs.Spec.Http[0].Route {
		parts = append(parts, fmt.Sprintf("%s %d", d.Destination.Subset, d.Weight))
	}
	return strings.Join(parts, ", "), vs.ResourceVersion
}

// written is what a run that writes nothing must leave as it is.
type written struct{ vs, lease, events string }

func snapshot(t *testing.T, env *testenv.Env, ns string) written {
	t.Helper()
	_, vs := vsWeights(t, env, ns)
	lease, _ := lockOf(t, env, ns)
	events, err := env.Kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return written{vs: vs, lease: lease.ResourceVersion, events: fmt.Sprint(len(events.Items))}
}

// wantRun fails unless got exited with code and its stdout and stderr hold every substring.
func wantRun(t *testing.T, what string, got binaryRun, code int, stdout, stderr []string) {
	t.Helper()
	if got.code != code {
		t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, got.code, code, got.stdout, got.stderr)
	}
	for _, c := range []struct {
		name, text string
		want       []string
	}{{"stdout", got.stdout, stdout}, {"stderr", got.stderr, stderr}} {
		for _, w := range c.want {
			if !strings.Contains(c.text, w) {
				t.Errorf("%s: %s lacks %q:\n%s", what, c.name, w, c.text)
			}
		}
	}
}

// killDuringHold starts a progression (run 4242, attempt 2) and kills it with SIGKILL once
// the route has v1 80, v2 20 and the Lease records the hold of step 1/3.
func killDuringHold(t *testing.T, r lockRig, lease string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t))
	cmd.Env = append(environ(r.vars("killed", "4242", "2", progress("10m", lease))), "PATH="+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		if w, _ := vsWeights(t, r.env, r.ns); w != "v1 80, v2 20" {
			return false, nil
		}
		_, rec := lockOf(t, r.env, r.ns)
		return strings.HasPrefix(rec.Doing, "holding step 1/3"), nil
	})
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the hold of step 1/3 was never recorded: %v\n%s", err, out.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || cmd.ProcessState.ExitCode() != -1 {
		t.Fatalf("the runner was not killed: %v\n%s", err, out.String())
	}
	lease2, rec := lockOf(t, r.env, r.ns)
	want := lockRecord{Holder: ciLink("4242", "2"), Link: ciLink("4242", "2"), Mode: "progress",
		Doing: "holding step 1/3 (canary 20%, held 10m0s)", Weights: "v1 80, v2 20", Stage: 1, Of: 3}
	if rec != want || holderOf(lease2) != want.Holder {
		t.Fatalf("after the kill: Lease held by %q, record %+v, want %+v", holderOf(lease2), rec, want)
	}
}

// A runner killed with SIGKILL during a hold: status shows the run, a new progression is
// refused while the lock is live and takes over once it expired, resume promotes, rollback
// breaks the lock. Where the lock must be live for a check, its duration is long enough
// that no machine is too slow for it (2m); where it must expire, it is the shortest (15s).
func TestLockAfterSIGKILL(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	killed := ciLink("4242", "2")
	liveChecks := func(t *testing.T, r lockRig) {
		t.Helper()
		before := snapshot(t, env, r.ns)
		got := runBinary(t, r.vars("status", "5000", "1", map[string]string{"MESHROLL_MODE": "status"})) // no versions
		wantRun(t, "status", got, 0, []string{
			"rollout in flight on VirtualService " + r.ns + "/reviews",
			"run:     " + killed + ", meshroll progress, v1 to v2",
			"stage:   holding step 1/3 (canary 20%, held 10m0s)",
			"weights: v1 80, v2 20 (as the run last wrote or found them)",
			"expires in ",
			r.ns + "/reviews route default: v1 80, v2 20",
			"result: status",
		}, nil)
		t.Logf("status while the lock is live:\n%s", got.stdout)
		if after := snapshot(t, env, r.ns); after != before {
			t.Errorf("status wrote: %+v, then %+v", before, after)
		}
		got = runBinary(t, r.vars("refused", "4243", "1", progress("1s", "2m")))
		wantRun(t, "a second progression", got, 2, nil, []string{
			"locked by another run: " + killed + " (meshroll progress, holding step 1/3 (canary 20%, held 10m0s); started ",
			", expires in ", "nothing was written",
		})
		t.Logf("the refusal:\n%s", got.stderr)
		if after := snapshot(t, env, r.ns); after != before {
			t.Errorf("the refused progression wrote: %+v, then %+v", before, after)
		}
	}
	wantEnded := func(t *testing.T, r lockRig, weights, holder, outcome string) {
		t.Helper()
		if w, _ := vsWeights(t, env, r.ns); w != weights {
			t.Errorf("weights %q, want %q", w, weights)
		}
		lease, rec := lockOf(t, env, r.ns)
		if holderOf(lease) != "" || rec.Holder != holder || rec.Outcome != outcome {
			t.Errorf("Lease held by %q, record of %q with outcome %q; want it free, recording %q with %q", holderOf(lease), rec.Holder, rec.Outcome, holder, outcome)
		}
	}

	t.Run("resume", func(t *testing.T) {
		t.Parallel()
		r := lockRig{env: env, ns: newStack(t, env), dir: t.TempDir()}
		killDuringHold(t, r, "2m")
		liveChecks(t, r)

		before := snapshot(t, env, r.ns)
		other := progress("1s", "2m")
		other["MESHROLL_MODE"], other["MESHROLL_STEPS"] = "resume", "20,100"
		got := runBinary(t, r.vars("resume-other", "4242", "3", other))
		wantRun(t, "resume with other steps", got, 2, nil, []string{
			"the inputs do not describe the rollout recorded on VirtualService " + r.ns + "/reviews by " + killed,
			`MESHROLL_STEPS: the rollout had "20,50,100", this run has "20,100"`,
		})
		if after := snapshot(t, env, r.ns); after != before {
			t.Errorf("the refused resume wrote: %+v, then %+v", before, after)
		}

		// The hold is no input of the rollout: a shorter one finishes it now.
		same := progress("1s", "2m")
		same["MESHROLL_MODE"] = "resume"
		got = runBinary(t, r.vars("resume", "4242", "3", same))
		wantRun(t, "resume", got, 0, []string{
			"NOTE: taking over the lock of " + killed + " (meshroll progress, holding step 1/3",
			"going on from step 1/3 (canary 20%, held 1s), held again in full",
			"result: promoted",
		}, nil)
		wantEnded(t, r, "v1 0, v2 100", ciLink("4242", "3"), "promoted")
	})

	t.Run("expiry", func(t *testing.T) {
		t.Parallel()
		r := lockRig{env: env, ns: newStack(t, env), dir: t.TempDir()}
		killDuringHold(t, r, "15s")
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
			lease, _ := lockOf(t, env, r.ns)
			s := lease.Spec
			if s.RenewTime == nil || s.LeaseDurationSeconds == nil {
				return false, fmt.Errorf("the Lease has no renewTime or leaseDurationSeconds: %+v", s)
			}
			return time.Now().After(s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)), nil
		})
		if err != nil {
			t.Fatalf("the lock never expired: %v", err)
		}

		before := snapshot(t, env, r.ns)
		got := runBinary(t, r.vars("status", "5000", "1", map[string]string{"MESHROLL_MODE": "status"})) // no versions
		wantRun(t, "status", got, 0, []string{
			"unfinished rollout on VirtualService " + r.ns + "/reviews: its runner stopped renewing the lock",
			"run:     " + killed, "stage:   holding step 1/3", "weights: v1 80, v2 20", " ago, expired ",
		}, nil)
		t.Logf("status once the lock expired:\n%s", got.stdout)
		if after := snapshot(t, env, r.ns); after != before {
			t.Errorf("status wrote: %+v, then %+v", before, after)
		}

		got = runBinary(t, r.vars("progress", "4244", "1", progress("1s", "15s")))
		wantRun(t, "a progression after the expiry", got, 0, []string{
			"NOTE: taking over the expired lock of " + killed,
			"skipping canary 20%, held 1s: the canary already has 20%",
			"result: promoted",
		}, nil)
		var result struct {
			Steps []struct {
				Index        int `json:"index"`
				Of           int `json:"of"`
				CanaryWeight int `json:"canaryWeight"`
			} `json:"steps"`
		}
		if err := json.Unmarshal([]byte(readFile(t, filepath.Join(got.out, "result.json"))), &result); err != nil {
			t.Fatal(err)
		}
		// The step at 20 is skipped and the steps left are numbered anew (Plan.from).
		if s := fmt.Sprint(result.Steps); s != "[{1 2 50} {2 2 100}]" {
			t.Errorf("steps (index, of, canary weight) %s, want [{1 2 50} {2 2 100}]", s)
		}
		wantEnded(t, r, "v1 0, v2 100", ciLink("4244", "1"), "promoted")
	})

	t.Run("rollback", func(t *testing.T) {
		t.Parallel()
		r := lockRig{env: env, ns: newStack(t, env), dir: t.TempDir()}
		killDuringHold(t, r, "2m")
		liveChecks(t, r)
		got := runBinary(t, r.vars("rollback", "4245", "1", map[string]string{
			"MESHROLL_MODE": "rollback", "MESHROLL_STABLE_SUBSET": "v1", "MESHROLL_CANARY_SUBSET": "v2",
		}))
		wantRun(t, "rollback", got, 0, []string{
			"NOTE: breaking the lock of " + killed + " (meshroll progress, holding step 1/3",
			"result: rolled-back",
		}, nil)
		wantEnded(t, r, "v1 100, v2 0", ciLink("4245", "1"), "rolled-back")
	})
}

// Two runs of the binary started together on one VirtualService: exactly one proceeds and
// promotes, the other stops before writing, naming the first. The hold (10s) is only there
// so that the first cannot have finished before the second looks at the lock.
func TestTwoBinariesAtOnce(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	bin := binary(t)
	for round := 1; round <= 3; round++ {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			t.Parallel()
			r := lockRig{env: env, ns: newStack(t, env), dir: t.TempDir()}
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			ids := []string{"7001", "7002"}
			type run struct {
				code           int
				stdout, stderr bytes.Buffer
			}
			runs := make([]*run, len(ids))
			var started, done sync.WaitGroup
			started.Add(1)
			for i, id := range ids {
				runs[i] = &run{}
				cmd := exec.CommandContext(ctx, bin)
				cmd.Env = append(environ(r.vars("run-"+id, id, "1", map[string]string{
					"MESHROLL_STABLE_SUBSET": "v1", "MESHROLL_CANARY_SUBSET": "v2",
					"MESHROLL_STEPS": "30,100", "MESHROLL_STEP_DURATION": "10s", "MESHROLL_LEASE_DURATION": "15s",
				})), "PATH="+os.Getenv("PATH"))
				cmd.Stdout, cmd.Stderr = &runs[i].stdout, &runs[i].stderr
				done.Add(1)
				go func() {
					defer done.Done()
					started.Wait() // both start at once
					if err := cmd.Run(); err != nil {
						if exit, ok := err.(*exec.ExitError); ok {
							runs[i].code = exit.ExitCode()
						} else {
							runs[i].code = -1
							fmt.Fprintf(&runs[i].stderr, "test: %v", err)
						}
					}
				}()
			}
			started.Done()
			done.Wait()

			codes := []int{runs[0].code, runs[1].code}
			if !slices.Equal(codes, []int{0, 2}) && !slices.Equal(codes, []int{2, 0}) {
				for i, id := range ids {
					t.Logf("run %s: exit %d\nstdout:\n%s\nstderr:\n%s", id, runs[i].code, runs[i].stdout.String(), runs[i].stderr.String())
				}
				t.Fatalf("exit codes %v, want one 0 and one 2", codes)
			}
			winner, loser := 0, 1
			if codes[0] == 2 {
				winner, loser = 1, 0
			}
			won := ciLink(ids[winner], "1")
			if s := runs[loser].stderr.String(); !strings.Contains(s, "locked by another run: "+won+" (meshroll progress, ") || !strings.Contains(s, "nothing was written") {
				t.Errorf("the refused run does not name the holder %s:\n%s", won, s)
			}
			if s := runs[winner].stdout.String(); !strings.Contains(s, "result: promoted") {
				t.Errorf("the run that proceeded did not promote:\n%s", s)
			}
			if w, _ := vsWeights(t, env, r.ns); w != "v1 0, v2 100" {
				t.Errorf("weights %q, want v1 0, v2 100", w)
			}
			lease, rec := lockOf(t, env, r.ns)
			if holderOf(lease) != "" || rec.Holder != won || rec.Outcome != "promoted" {
				t.Errorf("Lease held by %q, record of %q with outcome %q; want it free, recording %s promoted", holderOf(lease), rec.Holder, rec.Outcome, won)
			}
		})
	}
}
