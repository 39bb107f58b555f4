package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/testenv"
)

// Two runs that ask for a free lock at once: exactly one holds it, the other is told who.
// Every other round starts from a lock an earlier run left expired, so that both ways in
// race: two Creates, and two Updates of one resourceVersion.
func TestAcquireRace(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx := deadline(t)
	for round := range 20 {
		vs := fmt.Sprintf("reviews-%d", round)
		expired := round%2 == 1
		if expired {
			old := New(env.Kube, kind, ns, vs, 15*time.Second)
			old.now = at(time.Now().Add(-time.Hour))
			if _, err := old.Acquire(ctx, record(fmt.Sprintf("old-%d", round), time.Now()), false); err != nil {
				t.Fatal(err)
			}
		}
		recs := [2]rollout.Record{record(fmt.Sprintf("a-%d", round), time.Now()), record(fmt.Sprintf("b-%d", round), time.Now())}
		var found [2]rollout.Holding
		var errs [2]error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range recs {
			l := New(env.Kube, kind, ns, vs, time.Minute)
			wg.Go(func() {
				<-start
				found[i], errs[i] = l.Acquire(ctx, recs[i], false)
			})
		}
		close(start)
		wg.Wait()

		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d (expired %v): errors %v and %v, want exactly one nil", round, expired, errs[0], errs[1])
		}
		winner, loser := 0, 1
		if errs[0] != nil {
			winner, loser = 1, 0
		}
		if !errors.Is(errs[loser], rollout.ErrLocked) {
			t.Errorf("round %d: the loser's error %v, want ErrLocked", round, errs[loser])
		}
		if got := found[loser]; got.Record == nil || got.Record.Run != recs[winner].Run || !got.Live(time.Now()) {
			t.Errorf("round %d: the loser found %+v, want the winner's live lock (run %s)", round, got, recs[winner].Run)
		}
		lease := getLease(t, env, ns, vs)
		if got := lease.Spec.HolderIdentity; got == nil || *got != recs[winner].Holder {
			t.Errorf("round %d: holderIdentity %v, want %s", round, got, recs[winner].Holder)
		}
		wantTransitions := (*int32)(nil) // nobody held it before the winner
		if expired {
			wantTransitions = ptr(int32(1)) // one run took it from the old one; the loser wrote nothing
		}
		if diff := cmp.Diff(wantTransitions, lease.Spec.LeaseTransitions); diff != "" {
			t.Errorf("round %d: leaseTransitions (-want +got):\n%s", round, diff)
		}
	}
}

// A lock nobody renewed in time, or one its run freed, is taken without takeOver: the new
// run holds it, the old run's next Update learns who did.
func TestStaleLockIsTaken(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	for _, tc := range []struct {
		name  string
		leave func(ctx context.Context, old *Lease, rec rollout.Record) error // what the old run did
	}{
		{name: "expired", leave: func(ctx context.Context, old *Lease, rec rollout.Record) error {
			old.now = at(time.Now().Add(-time.Hour)) // it stopped renewing an hour ago
			_, err := old.Acquire(ctx, rec, false)
			return err
		}},
		{name: "expired a moment ago", leave: func(ctx context.Context, old *Lease, rec rollout.Record) error {
			old.now = at(time.Now().Add(-16 * time.Second))
			_, err := old.Acquire(ctx, rec, false)
			return err
		}},
		{name: "freed", leave: func(ctx context.Context, old *Lease, rec rollout.Record) error {
			if _, err := old.Acquire(ctx, rec, false); err != nil {
				return err
			}
			rec.Outcome = rollout.Promoted
			return old.Release(ctx, rec)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := deadline(t)
			old, oldRec := New(env.Kube, kind, ns, "reviews", 15*time.Second), record("old", time.Now())
			if err := tc.leave(ctx, old, oldRec); err != nil {
				t.Fatal(err)
			}
			before := getLease(t, env, ns, "reviews")

			now := time.Now().UTC().Truncate(time.Second)
			l, rec := New(env.Kube, kind, ns, "reviews", 15*time.Second), record("new", now)
			l.now = at(now)
			found, err := l.Acquire(ctx, rec, false)
			if err != nil {
				t.Fatalf("Acquire of a stale lock: %v", err)
			}
			if found.Record == nil || found.Record.Run != oldRec.Run || found.Live(now) {
				t.Errorf("found %+v, want the old run's stale lock", found)
			}
			after := getLease(t, env, ns, "reviews")
			want := coordinationv1.LeaseSpec{HolderIdentity: ptr(rec.Holder), LeaseDurationSeconds: ptr(int32(15)), AcquireTime: micro(now), RenewTime: micro(now), LeaseTransitions: ptr(int32(1))}
			if diff := cmp.Diff(want, after.Spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s\nbefore: %+v", diff, before.Spec)
			}

			old.now = time.Now
			err = old.Update(ctx, oldRec)
			if !errors.Is(err, rollout.ErrLockLost) || !strings.Contains(err.Error(), rec.Holder) {
				t.Errorf("the old run's Update: %v, want ErrLockLost naming %s", err, rec.Holder)
			}
			if got := getLease(t, env, ns, "reviews"); got.ResourceVersion != after.ResourceVersion {
				t.Errorf("the old run's Update wrote the Lease: %+v", got.Spec)
			}
		})
	}
}

// takeOver (rollback, resume) breaks the live lock of another run; that run then finds its
// lock lost and leaves the new holder's Lease alone, even when it ends and frees it.
func TestTakeOverBreaksLiveLock(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx := deadline(t)
	old, oldRec := New(env.Kube, kind, ns, "reviews", time.Minute), record("old", time.Now())
	if _, err := old.Acquire(ctx, oldRec, false); err != nil {
		t.Fatal(err)
	}
	held := getLease(t, env, ns, "reviews")

	l, rec := New(env.Kube, kind, ns, "reviews", time.Minute), record("rollback", time.Now())
	found, err := l.Acquire(ctx, rec, false)
	if !errors.Is(err, rollout.ErrLocked) || found.Record == nil || found.Record.Run != oldRec.Run || !found.Live(time.Now()) {
		t.Fatalf("Acquire of a live lock without takeOver = %+v, %v; want ErrLocked and the old run's lock", found, err)
	}
	if got := getLease(t, env, ns, "reviews"); got.ResourceVersion != held.ResourceVersion {
		t.Errorf("a refused Acquire wrote the Lease: %+v", got.Spec)
	}

	found, err = l.Acquire(ctx, rec, true)
	if err != nil {
		t.Fatalf("Acquire with takeOver: %v", err)
	}
	if found.Record == nil || found.Record.Run != oldRec.Run || !found.Held {
		t.Errorf("found %+v, want the old run's lock", found)
	}
	taken := getLease(t, env, ns, "reviews")
	if got := taken.Spec.LeaseTransitions; got == nil || *got != 1 {
		t.Errorf("leaseTransitions %v, want 1", got)
	}

	for name, call := range map[string]func() error{
		"Update":  func() error { return old.Update(ctx, oldRec) },
		"Release": func() error { oldRec.Outcome = rollout.Interrupted; return old.Release(ctx, oldRec) },
	} {
		if err := call(); !errors.Is(err, rollout.ErrLockLost) || !strings.Contains(err.Error(), rec.Holder) {
			t.Errorf("the old run's %s: %v, want ErrLockLost naming %s", name, err, rec.Holder)
		}
	}
	if got := getLease(t, env, ns, "reviews"); got.ResourceVersion != taken.ResourceVersion {
		t.Errorf("the old run wrote the Lease it lost: %+v", got.Spec)
	}
	got, err := l.Read(ctx)
	if err != nil || !got.Held || got.Record == nil || got.Record.Run != rec.Run {
		t.Errorf("Read = %+v, %v; want the new run holding", got, err)
	}
}

// A lock deleted under its run (by hand, or with its namespace) is lost, and is not
// recreated by the run that lost it.
func TestDeletedUnderHolder(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx := deadline(t)
	l, rec := New(env.Kube, kind, ns, "reviews", time.Minute), record("run", time.Now())
	if _, err := l.Acquire(ctx, rec, false); err != nil {
		t.Fatal(err)
	}
	if err := env.Kube.CoordinationV1().Leases(ns).Delete(ctx, Name("reviews"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Update(ctx, rec); !errors.Is(err, rollout.ErrLockLost) || !strings.Contains(err.Error(), "deleted") {
		t.Errorf("Update: %v, want ErrLockLost saying the Lease was deleted", err)
	}
	if err := l.Release(ctx, rec); !errors.Is(err, rollout.ErrLockLost) {
		t.Errorf("Release: %v, want ErrLockLost", err)
	}
	if _, err := env.Kube.CoordinationV1().Leases(ns).Get(ctx, Name("reviews"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Get after the lost run's calls: %v, want NotFound", err)
	}
	if got, err := l.Read(ctx); err != nil || !cmp.Equal(got, rollout.Holding{}) {
		t.Errorf("Read = %+v, %v; want the zero Holding", got, err)
	}
}

// A Lease some other program holds (no record of ours) is a lock all the same while live,
// described by its holder; expired, it is taken.
func TestForeignHolder(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	for _, tc := range []struct {
		name    string
		renewed time.Duration // before now
		wantErr error
	}{
		{name: "live", renewed: 0, wantErr: rollout.ErrLocked},
		{name: "expired", renewed: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := deadline(t)
			foreign := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: Name("reviews"), Namespace: ns},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("someone-else"), LeaseDurationSeconds: ptr(int32(60)),
					RenewTime: micro(time.Now().Add(-tc.renewed))},
			}
			if _, err := env.Kube.CoordinationV1().Leases(ns).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			l := New(env.Kube, kind, ns, "reviews", time.Minute)
			found, err := l.Acquire(ctx, record("run", time.Now()), false)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Acquire: %v, want %v", err, tc.wantErr)
			}
			if found.Record == nil || found.Record.Holder != "someone-else" || !found.Held {
				t.Errorf("found %+v, want the foreign holder", found)
			}
		})
	}
}
