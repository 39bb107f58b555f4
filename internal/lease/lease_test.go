package lease

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const kind = "VirtualService"

// record is a run's record as the runner keeps it, at a time of the test's choosing.
func record(run string, at time.Time) rollout.Record {
	link := "https://ci.example.com/shop/pipelines/" + run
	return rollout.Record{
		Run: run, Holder: link, Link: link, Mode: config.ModeProgress,
		Stable: "v1", Canary: "v2", Route: "http[0]", Stage: 1, Of: 4,
		Doing: "holding step 1/4 (canary 10%)", Weights: "v1 90, v2 10",
		Inputs:  map[string]string{"MESHROLL_STEPS": "10,25,50,100"},
		Started: at, Updated: at,
	}
}

// at returns a clock stopped at t, for a Lease's now.
func at(t time.Time) func() time.Time { return func() time.Time { return t } }

// deadline bounds a test's calls to the API server; generous, since the machine is shared.
func deadline(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func getLease(t *testing.T, env *testenv.Env, ns, vs string) *coordinationv1.Lease {
	t.Helper()
	lease, err := env.Kube.CoordinationV1().Leases(ns).Get(t.Context(), Name(vs), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return lease
}

func ptr[T any](v T) *T { return &v }

func micro(t time.Time) *metav1.MicroTime { return ptr(metav1.NewMicroTime(t)) }

// The whole life of a lock: taken where there was none, renewed with a new record, freed
// with the outcome kept, each step as Read and as the Lease object shows it.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx := deadline(t)
	l := New(env.Kube, kind, ns, "reviews", 30*time.Second)
	t0 := time.Now().UTC().Truncate(time.Second) // a Lease keeps microseconds
	l.now = at(t0)

	if got, err := l.Read(ctx); err != nil || !cmp.Equal(got, rollout.Holding{}) {
		t.Fatalf("Read before any run = %+v, %v; want the zero Holding", got, err)
	}
	rec := record("run-1", t0)
	found, err := l.Acquire(ctx, rec, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rollout.Holding{}, found); diff != "" {
		t.Errorf("Acquire found (-want +got):\n%s", diff)
	}

	lease := getLease(t, env, ns, "reviews")
	if lease.Name != "meshroll-reviews" {
		t.Errorf("name %q", lease.Name)
	}
	if diff := cmp.Diff(map[string]string{"app.kubernetes.io/managed-by": "meshroll"}, lease.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if got, want := lease.Annotations[ObjectAnnotation], "VirtualService "+ns+"/reviews"; got != want {
		t.Errorf("%s = %q, want %q", ObjectAnnotation, got, want)
	}
	wantSpec := coordinationv1.LeaseSpec{HolderIdentity: ptr(rec.Holder), LeaseDurationSeconds: ptr(int32(30)), AcquireTime: micro(t0), RenewTime: micro(t0)}
	if diff := cmp.Diff(wantSpec, lease.Spec); diff != "" {
		t.Errorf("spec after Acquire (-want +got):\n%s", diff)
	}
	if len(lease.ManagedFields) == 0 || lease.ManagedFields[0].Manager != traffic.FieldManager {
		t.Errorf("managedFields %+v, want written by %s", lease.ManagedFields, traffic.FieldManager)
	}
	wantHolding := func(rec rollout.Record, held bool, renewed time.Time) rollout.Holding {
		return rollout.Holding{Record: &rec, Held: held, Renewed: renewed, Expires: renewed.Add(30 * time.Second)}
	}
	read := func(step string, want rollout.Holding) {
		t.Helper()
		got, err := l.Read(ctx)
		if err != nil {
			t.Fatalf("Read after %s: %v", step, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Read after %s (-want +got):\n%s", step, diff)
		}
	}
	read("Acquire", wantHolding(rec, true, t0))

	// The same run acquiring again (its runner retried) renews its own lock.
	if found, err := l.Acquire(ctx, rec, false); err != nil || found.Record == nil || found.Record.Run != rec.Run {
		t.Fatalf("Acquire by the holding run = %+v, %v", found, err)
	}

	t1 := t0.Add(10 * time.Second)
	l.now = at(t1)
	rec.Stage, rec.Doing, rec.Weights, rec.Updated = 2, "moving to step 2/4 (canary 25%)", "v1 90, v2 10", t1
	rec.Writing = &traffic.Desired{CanaryWeight: 25}
	if err := l.Update(ctx, rec); err != nil {
		t.Fatal(err)
	}
	read("Update", wantHolding(rec, true, t1))
	wantSpec.RenewTime = micro(t1)
	if diff := cmp.Diff(wantSpec, getLease(t, env, ns, "reviews").Spec); diff != "" {
		t.Errorf("spec after Update (-want +got):\n%s", diff)
	}

	t2 := t1.Add(10 * time.Second)
	l.now = at(t2)
	rec.Stage, rec.Doing, rec.Weights, rec.Writing, rec.Updated = 4, "done", "v2 100", nil, t2
	rec.Outcome, rec.Reason = rollout.Promoted, "every step passed"
	if err := l.Release(ctx, rec); err != nil {
		t.Fatal(err)
	}
	read("Release", wantHolding(rec, false, t2))
	wantSpec.HolderIdentity, wantSpec.RenewTime = nil, micro(t2)
	if diff := cmp.Diff(wantSpec, getLease(t, env, ns, "reviews").Spec); diff != "" {
		t.Errorf("spec after Release (-want +got):\n%s", diff)
	}

	// Freed, the lock is no longer this run's to renew or free.
	if err := l.Update(ctx, rec); !errors.Is(err, rollout.ErrLockLost) || !strings.Contains(err.Error(), "was freed") {
		t.Errorf("Update after Release: %v, want ErrLockLost saying the lock was freed", err)
	}
}

// long returns a valid object name of n characters: labels of a's, b's… joined by dots.
func long(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strings.Repeat(string(rune('a'+i%26)), 40))
	}
	return b.String()[:n]
}

// dotAt returns a valid object name of n characters with a dot at index i.
func dotAt(n, i int) string {
	return strings.Repeat("x", i) + "." + strings.Repeat("y", n-i-1)
}

var nameCases = []struct {
	name, object, want string
}{
	{name: "short", object: "reviews", want: "meshroll-reviews"},
	{name: "dotted", object: "reviews.shop", want: "meshroll-reviews.shop"},
	{name: "longest kept whole", object: strings.Repeat("r", 244), want: "meshroll-" + strings.Repeat("r", 244)},
	{name: "one too long", object: strings.Repeat("r", 245)},
	{name: "253 characters", object: long(253)},
	{name: "253 characters, last differs", object: long(252) + "z"},
	// "meshroll-" (9) + 233 characters kept: a dot at index 232 would end the kept part.
	{name: "dot where it is cut", object: dotAt(253, 232)},
	{name: "dot before where it is cut", object: dotAt(253, 231)},
}

// A Lease is named after its object; a name too long to prefix is shortened with a hash of
// the whole, so it stays a valid object name, stable across runs and distinct per object.
func TestName(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, tc := range nameCases {
		got := Name(tc.object)
		if prior, ok := seen[got]; ok {
			t.Errorf("%s and %s share the Lease name %q", prior, tc.name, got)
		}
		seen[got] = tc.name
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.want != "" && got != tc.want {
				t.Errorf("Name = %q, want %q", got, tc.want)
			}
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Errorf("Name(%q) = %q is not a valid object name: %v", tc.object, got, errs)
			}
			if !strings.HasPrefix(got, "meshroll-") || len(got) > 253 {
				t.Errorf("Name = %q (%d characters)", got, len(got))
			}
			if again := Name(tc.object); again != got {
				t.Errorf("Name is not stable: %q, then %q", got, again)
			}
		})
	}
}

// The API server takes the shortened names: each long object gets a Lease of its own.
func TestLongNamesOnTheAPIServer(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx := deadline(t)
	for i, tc := range nameCases {
		rec := record("run-"+string(rune('a'+i)), time.Now())
		l := New(env.Kube, kind, ns, tc.object, time.Minute)
		// Each its own run: a name shared with an earlier case would be found locked.
		if _, err := l.Acquire(ctx, rec, false); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := l.Read(ctx)
		if err != nil || got.Record == nil || got.Record.Run != rec.Run {
			t.Errorf("%s: Read = %+v, %v", tc.name, got, err)
		}
	}
}
