package rollout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// fakeLock keeps the lock in memory as the Lease does in the cluster; internal/lease has
// the tests against the API server.
type fakeLock struct {
	mu      sync.Mutex
	h       Holding
	now     func() time.Time
	history []Record // every record written, in order
	stealOn int      // the n-th Update finds another run holding the lock
	updates int
}

func newFakeLock() *fakeLock { return &fakeLock{now: time.Now} }

func (l *fakeLock) Check(context.Context) error { return nil }

func (l *fakeLock) Read(context.Context) (Holding, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.copy(), nil
}

func (l *fakeLock) copy() Holding {
	h := l.h
	if h.Record != nil {
		rec := *h.Record
		h.Record = &rec
	}
	return h
}

func (l *fakeLock) Acquire(_ context.Context, rec Record, takeOver bool) (Holding, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	found := l.copy()
	if found.Live(l.now()) && !takeOver {
		return found, ErrLocked
	}
	l.write(rec, true)
	return found, nil
}

func (l *fakeLock) write(rec Record, held bool) {
	l.h = Holding{Record: &rec, Held: held, Renewed: l.now(), Expires: l.now().Add(time.Minute)}
	l.history = append(l.history, rec)
}

func (l *fakeLock) Update(_ context.Context, rec Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.updates++
	if l.updates == l.stealOn {
		l.write(Record{Run: "other", Holder: "https://ci.example.com/rollback/9", Mode: config.ModeRollback, Doing: "starting"}, true)
	}
	if l.h.Record == nil || l.h.Record.Run != rec.Run || !l.h.Held {
		return fmt.Errorf("%w: %s holds it now", ErrLockLost, l.h.Record.Holder)
	}
	l.write(rec, true)
	return nil
}

func (l *fakeLock) Release(_ context.Context, rec Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h.Record == nil || l.h.Record.Run != rec.Run {
		return ErrLockLost
	}
	l.write(rec, false)
	return nil
}

func (l *fakeLock) held(by Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.write(by, true)
}

func lockedRunner(f *fakeTraffic, l *fakeLock, log *bytes.Buffer) *Runner {
	r := runner(f, log)
	r.Lock, r.Holder = l, "https://ci.example.com/run/1"
	return r
}

// A run records where it stands before and after every write, and frees the lock with its
// outcome.
func TestRunRecordsItsProgress(t *testing.T) {
	t.Parallel()
	f, l := newFake(t), newFakeLock()
	var log bytes.Buffer
	c := cfg(config.ModeProgress, func(c *config.Config) {
		c.Steps = []int{25, 100}
		c.StepDuration = time.Minute
		c.RunLink = "https://ci.example.com/run/1"
	})
	res := lockedRunner(f, l, &log).Run(t.Context(), c)
	if res.Outcome != Promoted {
		t.Fatalf("outcome %s: %v\n%s", res.Outcome, res.Err, log.String())
	}
	var doing []string
	for _, rec := range l.history {
		doing = append(doing, rec.Doing+" | "+rec.Weights)
	}
	want := []string{
		"starting | v1 90, v2 10",
		"writing step 1/2 (canary 25%, held 1m0s) | v1 90, v2 10",
		"holding step 1/2 (canary 25%, held 1m0s) | v1 75, v2 25",
		"writing step 2/2 (canary 100%) | v1 75, v2 25",
		"took step 2/2 (canary 100%) | v1 0, v2 100",
		"finished: promoted | v1 0, v2 100",
	}
	if diff := cmp.Diff(want, doing); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	h, _ := l.Read(t.Context())
	if h.Held || h.Record.Outcome != Promoted || h.Record.Holder != "https://ci.example.com/run/1" || h.Record.Inputs["MESHROLL_STEPS"] != "25,100" {
		t.Errorf("lock after the run: held %v, record %+v", h.Held, h.Record)
	}
}

// A second run on a routing object that a live run holds is refused before writing, naming
// the holder; a rollback breaks the lock and proceeds.
func TestLockedByAnotherRun(t *testing.T) {
	t.Parallel()
	other := Record{Run: "first", Holder: "https://ci.example.com/run/7", Mode: config.ModeProgress, Doing: "holding step 2/4 (canary 25%)", Started: time.Now().Add(-3 * time.Minute)}
	for _, mode := range []config.Mode{config.ModeProgress, config.ModePhase, config.ModePromote} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			f, l := newFake(t), newFakeLock()
			l.held(other)
			var log bytes.Buffer
			res := lockedRunner(f, l, &log).Run(t.Context(), cfg(mode, func(c *config.Config) { c.Steps, c.Weight = []int{50, 100}, 50 }))
			if res.Outcome != Invalid || res.Outcome.ExitCode() != 2 || !errors.Is(res.Err, ErrLocked) {
				t.Fatalf("outcome %s (%v), want invalid with ErrLocked", res.Outcome, res.Err)
			}
			for _, w := range []string{"https://ci.example.com/run/7", "holding step 2/4 (canary 25%)", "started 3m0s ago", "nothing was written", "MESHROLL_MODE=rollback"} {
				if !strings.Contains(res.Reason, w) {
					t.Errorf("reason lacks %q: %s", w, res.Reason)
				}
			}
			if len(f.writes) != 0 || len(l.history) != 1 {
				t.Errorf("a refused run wrote: weights %v, records %d", f.writes, len(l.history))
			}
		})
	}
	t.Run("rollback breaks it", func(t *testing.T) {
		t.Parallel()
		f, l := newFake(t), newFakeLock()
		l.held(other)
		var log bytes.Buffer
		res := lockedRunner(f, l, &log).Run(t.Context(), cfg(config.ModeRollback, nil))
		if res.Outcome != RolledBack {
			t.Fatalf("outcome %s (%v)", res.Outcome, res.Err)
		}
		if !strings.Contains(log.String(), "breaking the lock of https://ci.example.com/run/7") {
			t.Errorf("the log does not say whose lock was broken:\n%s", log.String())
		}
	})
	t.Run("an expired lock is taken over", func(t *testing.T) {
		t.Parallel()
		f, l := newFake(t), newFakeLock()
		l.held(other)
		l.h.Expires = time.Now().Add(-time.Second)
		var log bytes.Buffer
		res := lockedRunner(f, l, &log).Run(t.Context(), cfg(config.ModePhase, func(c *config.Config) { c.Weight = 30 }))
		if res.Outcome != WeightSet {
			t.Fatalf("outcome %s (%v)", res.Outcome, res.Err)
		}
		if !strings.Contains(log.String(), "taking over the expired lock of https://ci.example.com/run/7") {
			t.Errorf("the log does not say it took an expired lock:\n%s", log.String())
		}
	})
}

// A run whose lock another run took stops at once, leaves the route as it is (no
// rollback: the traffic is the other run's now) and does not free the other's lock.
func TestLockLostStopsWithoutWriting(t *testing.T) {
	t.Parallel()
	f, l := newFake(t), newFakeLock()
	l.stealOn = 3 // the record before step 2's write
	var log bytes.Buffer
	res := lockedRunner(f, l, &log).Run(t.Context(), cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{25, 50, 100}; c.StepDuration = time.Minute }))
	if res.Outcome != Interrupted || !errors.Is(res.Err, ErrLockLost) {
		t.Fatalf("outcome %s (%v), want interrupted by a lost lock\n%s", res.Outcome, res.Err, log.String())
	}
	if diff := cmp.Diff([]int{25}, f.writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if h, _ := l.Read(t.Context()); !h.Held || h.Record.Run != "other" {
		t.Errorf("the other run's lock was touched: %+v", h)
	}
}

// The renewals keep the lock while a step holds; one that finds another run holding it
// ends the hold at once.
func TestRenewalFindsTheLockTaken(t *testing.T) {
	t.Parallel()
	f, l := newFake(t), newFakeLock()
	l.stealOn = 4 // the first renewal, during step 1's hold
	var log bytes.Buffer
	r := lockedRunner(f, l, &log)
	r.Hold = sleep
	r.DriftInterval = 0
	c := cfg(config.ModeProgress, func(c *config.Config) {
		c.Steps, c.StepDuration, c.LeaseDuration = []int{25, 100}, time.Hour, 30*time.Millisecond
	})
	res := r.Run(t.Context(), c)
	if res.Outcome != Interrupted || !errors.Is(res.Err, ErrLockLost) {
		t.Fatalf("outcome %s (%v), want interrupted by a lost lock\n%s", res.Outcome, res.Err, log.String())
	}
	if diff := cmp.Diff([]int{25}, f.writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}

// Drift leaves an Event saying why the run stopped.
func TestDriftIsNoted(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.onWrite = func(n int) {
		if n == 1 { // a GitOps tool puts the original weights back during the hold
			f.state = fakeRoute{f.state.Routing()}
			r := f.state.Routing()
			r.Destinations = []traffic.Destination{{Host: "reviews", Subset: "v1", Role: traffic.RoleStable, Weight: 100}, {Host: "reviews", Subset: "v2", Role: traffic.RoleCanary}}
			f.state = fakeRoute{r}
		}
	}
	var log bytes.Buffer
	res := runner(f, &log).Run(t.Context(), cfg(config.ModeProgress, func(c *config.Config) {
		c.Steps = []int{25, 100}
		c.StepDuration = time.Minute
		c.RunLink = "https://ci.example.com/run/1"
	}))
	if res.Outcome != Interrupted {
		t.Fatalf("outcome %s (%v)", res.Outcome, res.Err)
	}
	if len(f.notes) != 1 || f.notes[0].Reason != "Interrupted" || !strings.Contains(f.notes[0].Message, "run https://ci.example.com/run/1") ||
		!strings.Contains(f.notes[0].Message, "v1 100, v2 0") {
		t.Errorf("notes %+v", f.notes)
	}
}
