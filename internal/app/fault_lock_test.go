package app

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/testenv"
)

// Promise: two runs started together on one VirtualService never both steer it. Exactly one
// proceeds (promoted, exit 0); the other stops before its first write (exit 2), naming the
// run that holds the lock, and writes nothing: every version of the VirtualService is one of
// the winner's steps. Several rounds, each in a fresh namespace, to catch races.
func TestFaultTwoRunsTogether(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	const rounds = 5
	for round := range rounds {
		t.Run(fmt.Sprintf("round %d", round+1), func(t *testing.T) {
			t.Parallel()
			ns := newStack(t, env)
			log := recordVersions(t, env, ns)
			// Each run says who it is as a Jenkins build would: the refusal must name the other.
			builds := []string{"https://ci.example/job/reviews/1/", "https://ci.example/job/reviews/2/"}
			results := make([]run, len(builds))
			ready := make(chan struct{})
			var wg sync.WaitGroup
			for i, build := range builds {
				wg.Go(func() {
					<-ready
					// The hold keeps the winner's lock live while the other run checks it.
					results[i] = runMain(t.Context(), t, env, ns, "MESHROLL_STEPS=30,100", "MESHROLL_STEP_DURATION=5s", "BUILD_URL="+build)
				})
			}
			close(ready)
			wg.Wait()

			won := slices.IndexFunc(results, func(r run) bool { return r.code == 0 })
			if won < 0 || results[1-won].code == 0 {
				t.Fatalf("want exactly one run to exit 0:\n%s", describeRuns(builds, results))
			}
			winner, loser := results[won], results[1-won]
			if !strings.Contains(winner.stdout, "result: promoted") {
				t.Errorf("the run that proceeded did not promote:\n%s", describeRuns(builds, results))
			}
			if loser.code != 2 || !strings.Contains(loser.stdout, "result: invalid") ||
				!strings.Contains(loser.stderr, "locked by another run: "+builds[won]) || !strings.Contains(loser.stderr, "nothing was written") {
				t.Errorf("the refused run: want exit 2 naming the lock's holder %s and that nothing was written:\n%s", builds[won], describeRuns(builds, results))
			}
			if strings.Contains(loser.stdout, "step 1/2: reviews") {
				t.Errorf("the refused run logged a step:\n%s", loser.stdout)
			}

			vs := log.settled(t, env, ns)
			want := []string{"v1 90, v2 10", "v1 70, v2 30", "v1 0, v2 100"}
			if got := weightChanges(vs); !slices.Equal(got, want) || len(vs) != len(want) {
				t.Errorf("the VirtualService went through\n%swant exactly the winner's two writes: %q", describeVersions(vs), want)
			}
			rec, holder := mustLock(t, env, ns)
			if rec.Holder != builds[won] || rec.Outcome != rollout.Promoted || holder != "" {
				t.Errorf("the Lease records %s, outcome %q, holder %q; want the winner %s, promoted, released", rec.Holder, rec.Outcome, holder, builds[won])
			}
		})
	}
}

func describeRuns(builds []string, results []run) string {
	var b strings.Builder
	for i, r := range results {
		fmt.Fprintf(&b, "%s: exit %d\nstdout:\n%s\nstderr:\n%s\n", builds[i], r.code, r.stdout, r.stderr)
	}
	return b.String()
}
