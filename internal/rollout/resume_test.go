package rollout

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

func progression(c *config.Config) {
	c.Steps, c.StepDuration = []int{10, 25, 50, 100}, time.Minute
}

// died is the record a progression leaves when its runner is killed: the lock expired, the
// route at weight, the run at stage of 4 (writing, when the write was in flight).
func died(stage, weight int, writing *traffic.Desired) Record {
	rec := Record{
		Run: "dead", Holder: "https://ci.example.com/run/7", Mode: config.ModeProgress, Stable: "v1", Canary: "v2",
		Stage: stage, Of: 4, Doing: "holding", Weights: fmt.Sprintf("v1 %d, v2 %d", 100-weight, weight),
		Writing: writing, Started: time.Now().Add(-10 * time.Minute), Inputs: inputsOf(cfg(config.ModeProgress, progression)),
	}
	return rec
}

func routeAt(f *fakeTraffic, weight int) {
	r := f.state.Routing()
	r.Destinations = []traffic.Destination{{Host: "reviews", Subset: "v1", Role: traffic.RoleStable, Weight: 100 - weight}, {Host: "reviews", Subset: "v2", Role: traffic.RoleCanary, Weight: weight}}
	f.state = fakeRoute{r}
}

func TestResume(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		rec        Record
		route      int // the canary's weight in the cluster
		vars       func(*config.Config)
		want       Outcome
		wantWrites []int
		wantReason string
	}{
		{name: "killed in a hold: the step is held again, then the rest", rec: died(2, 25, nil), route: 25, want: Promoted, wantWrites: []int{50, 100}},
		{name: "killed between a write and its record", rec: died(2, 25, &traffic.Desired{CanaryWeight: 50}), route: 50, want: Promoted, wantWrites: []int{100}},
		{name: "killed before the write landed", rec: died(3, 25, &traffic.Desired{CanaryWeight: 50}), route: 25, want: Promoted, wantWrites: []int{50, 100}},
		{name: "killed before its first write", rec: died(0, 0, nil), route: 0, want: Promoted, wantWrites: []int{10, 25, 50, 100}},
		{name: "someone moved the route since", rec: died(2, 25, nil), route: 0, want: Invalid,
			wantReason: "now has v1 100, v2 0, but the rollout left v1 75, v2 25"},
		{name: "other steps", rec: died(2, 25, nil), route: 25, vars: func(c *config.Config) { c.Steps = []int{25, 100} }, want: Invalid,
			wantReason: `MESHROLL_STEPS: the rollout had "10,25,50,100", this run has "25,100"`},
		{name: "another canary", rec: died(2, 25, nil), route: 25, vars: func(c *config.Config) { c.CanarySubset = "v3" }, want: Invalid,
			wantReason: `MESHROLL_CANARY_SUBSET: the rollout had "v2", this run has "v3"`},
		{name: "a finished rollout", rec: func() Record { r := died(4, 100, nil); r.Outcome = Promoted; return r }(), route: 100, want: Invalid,
			wantReason: "ended promoted"},
		{name: "a run that was rolling back", rec: func() Record { r := died(2, 25, nil); r.RollingBack = true; return r }(), route: 25, want: Invalid,
			wantReason: "finish that with MESHROLL_MODE=rollback"},
		{name: "a failed run (its API server went away) is resumed", rec: func() Record { r := died(2, 25, nil); r.Outcome = Failed; return r }(), route: 25,
			want: Promoted, wantWrites: []int{50, 100}},
		{name: "a phase", rec: func() Record { r := died(1, 25, nil); r.Mode = config.ModePhase; return r }(), route: 25, want: Invalid,
			wantReason: "not a progression"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, l := newFake(t), newFakeLock()
			routeAt(f, tt.route)
			l.held(tt.rec)
			l.h.Expires = time.Now().Add(-time.Second)
			c := cfg(config.ModeResume, progression)
			if tt.vars != nil {
				tt.vars(&c)
			}
			var log bytes.Buffer
			res := lockedRunner(f, l, &log).Run(t.Context(), c)
			if res.Outcome != tt.want {
				t.Fatalf("outcome %s (%v), want %s\n%s", res.Outcome, res.Err, tt.want, log.String())
			}
			if diff := cmp.Diff(tt.wantWrites, f.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if !strings.Contains(res.Reason, tt.wantReason) {
				t.Errorf("reason lacks %q: %s", tt.wantReason, res.Reason)
			}
			if tt.want == Invalid {
				if !errors.Is(res.Err, ErrNotResumable) || len(l.history) != 1 {
					t.Errorf("a refused resume: err %v, %d records written", res.Err, len(l.history)-1)
				}
				return
			}
			if h, _ := l.Read(t.Context()); h.Held || h.Record.Run == "dead" || h.Record.Outcome != tt.want {
				t.Errorf("lock after the resume: %+v", h)
			}
		})
	}
}

// status shows the rollout in flight, or the last one, and writes nothing.
func TestStatusShowsTheRollout(t *testing.T) {
	t.Parallel()
	f, l := newFake(t), newFakeLock()
	rec := died(2, 10, nil)
	rec.Link, rec.Doing = rec.Holder, "holding step 2/4 (canary 25%, held 1m0s)"
	l.held(rec)
	var log bytes.Buffer
	res := lockedRunner(f, l, &log).Run(t.Context(), cfg(config.ModeStatus, func(c *config.Config) { c.StableSubset, c.CanarySubset = "", "" }))
	if res.Outcome != Status || len(f.writes) != 0 || len(l.history) != 1 {
		t.Fatalf("outcome %s (%v), writes %v", res.Outcome, res.Err, f.writes)
	}
	for _, w := range []string{"rollout in flight on VirtualService prod/reviews", "run:     https://ci.example.com/run/7, meshroll progress, v1 to v2",
		"stage:   holding step 2/4", "started: ", "(10m0s ago)", "lock:    renewed 0s ago, expires in 1m0s", "no route read"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("status lacks %q:\n%s", w, log.String())
		}
	}
	l.h.Expires = time.Now().Add(-5 * time.Second)
	log.Reset()
	lockedRunner(f, l, &log).Run(t.Context(), cfg(config.ModeStatus, nil))
	for _, w := range []string{"unfinished rollout on VirtualService prod/reviews", "MESHROLL_MODE=resume", "expired 5s ago", "route default: v1 90, v2 10"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("status of a dead run lacks %q:\n%s", w, log.String())
		}
	}
}
