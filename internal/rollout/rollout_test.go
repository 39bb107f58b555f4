package rollout

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// fakeTraffic stands in for the API server where a failure cannot be produced on demand
// (a write that fails mid-progression, a rollback that fails). Its route plans with the
// backend-neutral weight split; the Istio planner has its own tests.
type fakeTraffic struct {
	state   traffic.State
	writes  []int
	failAt  map[int]error // the n-th Apply call (1-based) fails with this error
	onWrite func(n int)
	calls   int
	readErr error
	notes   []traffic.Why
}

func newFake(t *testing.T) *fakeTraffic {
	t.Helper()
	return &fakeTraffic{state: fakeRoute{traffic.Routing{
		Kind: "VirtualService", Namespace: "prod", Name: "reviews", ResourceVersion: "1", Route: "default",
		Destinations: []traffic.Destination{
			{Host: "reviews", Subset: "v1", Role: traffic.RoleStable, Weight: 90},
			{Host: "reviews", Subset: "v2", Role: traffic.RoleCanary, Weight: 10},
		},
	}}, failAt: map[int]error{}}
}

// fakeRoute is a route that does what it is told: the weights split as every backend splits
// them, the A/B route and mirror as flags.
type fakeRoute struct{ r traffic.Routing }

func (f fakeRoute) Routing() traffic.Routing { return f.r }

func (f fakeRoute) Plan(d traffic.Desired) (traffic.Change, error) {
	if err := d.CheckDrift(f.r); err != nil {
		return traffic.Change{}, err
	}
	next := f.r
	if !d.KeepWeights {
		ds := append([]traffic.Destination(nil), f.r.Destinations...)
		if next.CanaryWeight() == 0 && len(ds) == 1 {
			ds = append(ds, traffic.Destination{Host: "reviews", Subset: "v2", Role: traffic.RoleCanary})
		}
		var err error
		if next.Destinations, err = traffic.SplitWeights(ds, d.CanaryWeight, "route default of VirtualService prod/reviews"); err != nil {
			return traffic.Change{}, err
		}
	}
	next.ABRoute, next.MirrorPercent = "", d.MirrorPercent
	if d.AB {
		next.ABRoute = "meshroll-ab-v2"
	}
	return traffic.Change{Before: f.r, After: next, Changed: next.Summary() != f.r.Summary(), Next: fakeRoute{next}}, nil
}

func (f *fakeTraffic) Read(context.Context) (traffic.State, error) { return f.state, f.readErr }

func (f *fakeTraffic) Note(_ context.Context, why traffic.Why) error {
	f.notes = append(f.notes, why)
	return nil
}

func (f *fakeTraffic) Preflight(context.Context, traffic.Checks) (traffic.State, error) {
	return f.state, f.readErr
}

func (f *fakeTraffic) Apply(ctx context.Context, d traffic.Desired) (traffic.Applied, error) {
	f.calls++
	if err := f.failAt[f.calls]; err != nil {
		return traffic.Applied{}, err
	}
	if err := ctx.Err(); err != nil {
		return traffic.Applied{}, err
	}
	change, err := f.state.Plan(d)
	if err != nil {
		return traffic.Applied{}, err
	}
	if change.Changed {
		f.writes = append(f.writes, d.CanaryWeight)
		f.state = change.Next
	}
	if f.onWrite != nil {
		f.onWrite(f.calls)
	}
	return traffic.Applied{Change: change}, nil
}

func cfg(mode config.Mode, vars func(*config.Config)) config.Config {
	c := config.Config{Mode: mode, Namespace: "prod", VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2", ReadyTimeout: time.Minute}
	if vars != nil {
		vars(&c)
	}
	return c
}

func runner(f *fakeTraffic, log *bytes.Buffer) *Runner {
	r := NewRunner(f, nil, WriterLog(log))
	r.Hold = func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	return r
}

func TestRunOutcomes(t *testing.T) {
	t.Parallel()
	apiDown := errors.New("connection refused")
	tests := []struct {
		name       string
		cfg        config.Config
		failAt     map[int]error
		readErr    error
		want       Outcome
		wantWrites []int
		wantFinal  string
	}{
		{name: "progress promoted", cfg: cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{25, 50, 100} }), want: Promoted, wantWrites: []int{25, 50, 100}, wantFinal: "v1 0, v2 100"},
		{name: "progress stops below 100", cfg: cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{25, 50} }), want: WeightSet, wantWrites: []int{25, 50}, wantFinal: "v1 50, v2 50"},
		{name: "phase unchanged", cfg: cfg(config.ModePhase, func(c *config.Config) { c.Weight = 10 }), want: Unchanged, wantFinal: "v1 90, v2 10"},
		{name: "phase to 100 is a promotion", cfg: cfg(config.ModePhase, func(c *config.Config) { c.Weight = 100 }), want: Promoted, wantWrites: []int{100}, wantFinal: "v1 0, v2 100"},
		{name: "rollback", cfg: cfg(config.ModeRollback, nil), want: RolledBack, wantWrites: []int{0}, wantFinal: "v1 100, v2 0"},
		{name: "dry run writes nothing", cfg: cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{50, 100}; c.DryRun = true }), want: DryRun, wantFinal: "v1 90, v2 10"},
		{name: "api down at preflight", cfg: cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{50} }), readErr: apiDown, want: Failed},
		{name: "write fails at step 2: back to stable", cfg: cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{25, 50, 100} }), failAt: map[int]error{2: apiDown}, want: Failed, wantWrites: []int{25, 0}, wantFinal: "v1 100, v2 0"},
		{name: "write and rollback fail", cfg: cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{25, 50} }), failAt: map[int]error{2: apiDown, 3: apiDown}, want: Failed, wantWrites: []int{25}, wantFinal: "v1 75, v2 25"},
		{name: "phase write fails: nothing to undo", cfg: cfg(config.ModePhase, func(c *config.Config) { c.Weight = 30 }), failAt: map[int]error{1: apiDown}, want: Failed, wantFinal: "v1 90, v2 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.readErr = tt.readErr
			for k, v := range tt.failAt {
				f.failAt[k] = v
			}
			var log bytes.Buffer
			res := runner(f, &log).Run(t.Context(), tt.cfg)
			if res.Outcome != tt.want {
				t.Fatalf("outcome %s, want %s (err %v)\n%s", res.Outcome, tt.want, res.Err, log.String())
			}
			if diff := cmp.Diff(tt.wantWrites, f.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if tt.wantFinal != "" {
				if got := traffic.DescribeWeights(f.state.Routing().Destinations); got != tt.wantFinal {
					t.Errorf("cluster weights %s, want %s", got, tt.wantFinal)
				}
			}
			if (res.Err != nil) != (res.Outcome.ExitCode() != 0) {
				t.Errorf("err %v with exit code %d", res.Err, res.Outcome.ExitCode())
			}
			if tt.name == "write and rollback fail" && !strings.Contains(res.Reason, "the canary may still receive traffic") {
				t.Errorf("reason does not warn that the rollback failed: %s", res.Reason)
			}
		})
	}
}

// The timeline records every step with its weights, in order, ending with the automatic
// rollback when there is one.
func TestTimeline(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	ctx, cancel := context.WithCancel(t.Context())
	f.onWrite = func(n int) {
		if n == 2 {
			cancel() // a signal arrives while step 2 is held
		}
	}
	var log bytes.Buffer
	res := runner(f, &log).Run(ctx, cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{25, 50, 100}; c.StepDuration = time.Minute }))
	if res.Outcome != Cancelled || res.Outcome.ExitCode() != 130 {
		t.Fatalf("outcome %s", res.Outcome)
	}
	type row struct {
		Index  int
		Action Action
		Weight int
		After  string
		Held   bool
	}
	var got []row
	for _, s := range res.Steps {
		got = append(got, row{s.Index, s.Action, s.CanaryWeight, traffic.DescribeWeights(s.After), !s.HeldUntil.IsZero()})
	}
	want := []row{
		{1, ActionSet, 25, "v1 75, v2 25", true},
		{2, ActionSet, 50, "v1 50, v2 50", true},
		{0, ActionRollback, 0, "v1 100, v2 0", false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}
	if !strings.Contains(log.String(), "rollback: reviews v1 50 → 100, v2 50 → 0") {
		t.Errorf("log lacks the rollback:\n%s", log.String())
	}
}

// A run stopped by a signal or by MESHROLL_TIMEOUT says so, never "context canceled" or
// "context deadline exceeded"; a cancelled run exits 130 even when its rollback fails.
func TestReasonsSayWhatStopped(t *testing.T) {
	t.Parallel()
	sigterm := errors.New("cancelled by SIGTERM")
	tests := []struct {
		name    string
		timeout time.Duration
		cause   error // the signal's cause, cancelled during step 2's hold
		failAt  map[int]error
		want    Outcome
		reason  string
	}{
		{name: "signal during a hold", cause: sigterm, want: Cancelled, reason: "cancelled by SIGTERM"},
		{name: "cancel without a cause", cause: context.Canceled, want: Cancelled, reason: "cancelled"},
		{name: "signal, then the rollback fails", cause: sigterm, failAt: map[int]error{3: errors.New("connection refused")}, want: Cancelled,
			reason: "cancelled by SIGTERM; and the rollback to v1 failed, so the canary may still receive traffic: connection refused"},
		{name: "MESHROLL_TIMEOUT", timeout: time.Nanosecond, want: Failed, reason: "MESHROLL_TIMEOUT=1ns reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			for k, v := range tt.failAt {
				f.failAt[k] = v
			}
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			f.onWrite = func(n int) {
				if n == 2 && tt.cause != nil {
					cancel(tt.cause)
				}
			}
			var log bytes.Buffer
			res := runner(f, &log).Run(ctx, cfg(config.ModeProgress, func(c *config.Config) {
				c.Steps, c.StepDuration, c.Timeout = []int{25, 50, 100}, time.Minute, tt.timeout
			}))
			if res.Outcome != tt.want || res.Reason != tt.reason {
				t.Errorf("outcome %s, reason %q; want %s, %q\n%s", res.Outcome, res.Reason, tt.want, tt.reason, log.String())
			}
			for _, s := range res.Steps {
				if strings.Contains(s.Error, "context") {
					t.Errorf("step %d error %q", s.Index, s.Error)
				}
			}
		})
	}
}

// Another writer (a person, a GitOps tool re-applying the manifest) moves the route while a
// step is held, or between steps: the run stops without writing (interrupted, exit 1), names
// both versions, and leaves their weights in place; it never fights them.
func TestAnotherWriterInterrupts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		hold      time.Duration
		wantFinal string
	}{
		{name: "during a hold", hold: time.Minute, wantFinal: "v1 100, v2 0"},
		{name: "between steps (no hold)", wantFinal: "v1 100, v2 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.onWrite = func(n int) {
				if n == 1 {
					// A GitOps tool puts the manifest's weights back.
					reverted, err := f.state.Plan(traffic.Desired{CanaryWeight: 0})
					if err != nil {
						t.Error(err)
						return
					}
					f.state = reverted.Next
				}
			}
			var log bytes.Buffer
			r := runner(f, &log)
			r.DriftInterval = 10 * time.Second
			res := r.Run(t.Context(), cfg(config.ModeProgress, func(c *config.Config) { c.Steps, c.StepDuration = []int{25, 50, 100}, tt.hold }))
			if res.Outcome != Interrupted || res.Outcome.ExitCode() != 1 {
				t.Fatalf("outcome %s, want interrupted\n%s", res.Outcome, log.String())
			}
			if diff := cmp.Diff([]int{25}, f.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if got := traffic.DescribeWeights(f.state.Routing().Destinations); got != tt.wantFinal {
				t.Errorf("weights %s, want the other writer's %s", got, tt.wantFinal)
			}
			for _, want := range []string{"now has v1 100, v2 0, but this run left v1 75, v2 25", "stopping without writing"} {
				if !strings.Contains(res.Reason, want) {
					t.Errorf("reason %q lacks %q", res.Reason, want)
				}
			}
		})
	}
}

// A progression run again never lowers the canary: steps at or below its weight are
// skipped (and said so), and at its final weight already the run is unchanged.
func TestProgressionNeverLowersTheCanary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		from       int
		steps      []int
		want       Outcome
		wantWrites []int
		wantLog    string
	}{
		{name: "after a phase of 20", from: 20, steps: []int{10, 20, 50, 100}, want: Promoted, wantWrites: []int{50, 100}, wantLog: "skipping canary 10%"},
		{name: "after a promotion", from: 100, steps: []int{10, 50, 100}, want: Unchanged, wantLog: "nothing to do: the canary already has 100%"},
		{name: "beyond the last step", from: 60, steps: []int{10, 50}, want: Unchanged, wantLog: "as much as the progression's last step or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			start, err := f.state.Plan(traffic.Desired{CanaryWeight: tt.from})
			if err != nil {
				t.Fatal(err)
			}
			f.state = start.Next
			var log bytes.Buffer
			res := runner(f, &log).Run(t.Context(), cfg(config.ModeProgress, func(c *config.Config) { c.Steps = tt.steps }))
			if res.Outcome != tt.want {
				t.Fatalf("outcome %s, want %s\n%s", res.Outcome, tt.want, log.String())
			}
			if diff := cmp.Diff(tt.wantWrites, f.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, log.String())
			}
		})
	}
}
