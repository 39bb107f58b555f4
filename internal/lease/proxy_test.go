package lease

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/testenv"
)

// proxied returns a client whose requests go through a loopback proxy in front of the test
// API server; intercept sees each request first and may answer it itself (returning true).
func proxied(t *testing.T, env *testenv.Env, intercept func(w http.ResponseWriter, r *http.Request) bool) kubernetes.Interface {
	t.Helper()
	transport, err := rest.TransportFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = transport
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !intercept(w, r) {
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	k, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// An API server that answers "later" (503, 429, 500: an upgrade, overload) is asked again:
// here every request is refused once, and every call still succeeds. One that never answers
// fails the call when its context ends, saying why.
func TestTransientErrorsAreRetried(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	t.Run("each request refused once", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		ctx := deadline(t)
		codes := []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError}
		var requests, refused atomic.Int32
		k := proxied(t, env, func(w http.ResponseWriter, r *http.Request) bool {
			n := requests.Add(1)
			if n%2 == 0 {
				return false
			}
			refused.Add(1)
			http.Error(w, "etcd leader changed", codes[int(n/2)%len(codes)])
			return true
		})
		l, rec := New(k, kind, ns, "reviews", time.Minute), record("run", time.Now())
		if err := l.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if _, err := l.Acquire(ctx, rec, false); err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		rec.Stage = 2
		if err := l.Update(ctx, rec); err != nil {
			t.Fatalf("Update: %v", err)
		}
		rec.Outcome = rollout.Promoted
		if err := l.Release(ctx, rec); err != nil {
			t.Fatalf("Release: %v", err)
		}
		got, err := l.Read(ctx)
		if err != nil || got.Held || got.Record == nil || got.Record.Outcome != rollout.Promoted {
			t.Errorf("Read = %+v, %v; want the freed lock with its outcome", got, err)
		}
		// Check 3 reviews, Acquire get+create, Update get+update, Release get+update, Read get.
		if n := refused.Load(); n < 10 {
			t.Errorf("%d requests refused, want one per request (at least 10)", n)
		}
	})
	t.Run("refused until the context ends", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		k := proxied(t, env, func(w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, "etcd leader changed", http.StatusServiceUnavailable)
			return true
		})
		l := New(k, kind, ns, "reviews", time.Minute)
		cause := errors.New("the lock was not taken within 2s")
		ctx, cancel := context.WithTimeoutCause(t.Context(), 2*time.Second, cause)
		defer cancel()
		_, err := l.Acquire(ctx, record("run", time.Now()), false)
		if !errors.Is(err, cause) || !strings.Contains(err.Error(), "the server is currently unable to handle the request") {
			t.Fatalf("Acquire: %v, want the cause and the server's last answer", err)
		}
	})
}

// betweenReadAndWrite returns a client that runs act once, just before the first write
// (create or update) of a Lease reaches the API server: after the caller read it.
func betweenReadAndWrite(t *testing.T, env *testenv.Env, act func(ctx context.Context) error) kubernetes.Interface {
	t.Helper()
	var once sync.Once
	return proxied(t, env, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			once.Do(func() {
				if err := act(r.Context()); err != nil {
					t.Errorf("the write between read and write: %v", err)
				}
			})
		}
		return false
	})
}

// A Lease written by someone else between a call's read and its write is read again, never
// overwritten: a change that leaves the lock alone is kept, a run that took it wins.
func TestWriteBetweenReadAndWrite(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)

	t.Run("Update keeps another's annotation", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		ctx := deadline(t)
		k := betweenReadAndWrite(t, env, func(ctx context.Context) error {
			lease, err := env.Kube.CoordinationV1().Leases(ns).Get(ctx, Name("reviews"), metav1.GetOptions{})
			if err != nil {
				return err
			}
			lease.Annotations["example.com/audited"] = "yes"
			_, err = env.Kube.CoordinationV1().Leases(ns).Update(ctx, lease, metav1.UpdateOptions{})
			return err
		})
		rec := record("run", time.Now())
		if _, err := New(env.Kube, kind, ns, "reviews", time.Minute).Acquire(ctx, rec, false); err != nil {
			t.Fatal(err)
		}
		rec.Stage = 3
		if err := New(k, kind, ns, "reviews", time.Minute).Update(ctx, rec); err != nil {
			t.Fatalf("Update: %v", err)
		}
		lease := getLease(t, env, ns, "reviews")
		if lease.Annotations["example.com/audited"] != "yes" || !strings.Contains(lease.Annotations[RecordAnnotation], `"stage":3`) {
			t.Errorf("annotations %v, want both writes", lease.Annotations)
		}
	})

	t.Run("Update after a takeover", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		ctx := deadline(t)
		other := record("rollback", time.Now())
		k := betweenReadAndWrite(t, env, func(ctx context.Context) error {
			_, err := New(env.Kube, kind, ns, "reviews", time.Minute).Acquire(ctx, other, true)
			return err
		})
		rec := record("run", time.Now())
		if _, err := New(env.Kube, kind, ns, "reviews", time.Minute).Acquire(ctx, rec, false); err != nil {
			t.Fatal(err)
		}
		err := New(k, kind, ns, "reviews", time.Minute).Update(ctx, rec)
		if !errors.Is(err, rollout.ErrLockLost) || !strings.Contains(err.Error(), other.Holder) {
			t.Fatalf("Update: %v, want ErrLockLost naming %s", err, other.Holder)
		}
		if got := getLease(t, env, ns, "reviews"); *got.Spec.HolderIdentity != other.Holder {
			t.Errorf("holderIdentity %s, want %s", *got.Spec.HolderIdentity, other.Holder)
		}
	})

	for _, existing := range []bool{false, true} {
		name := "Acquire of a new Lease after another run's"
		if existing {
			name = "Acquire of an expired lock after another run's"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := deadline(t)
			if existing {
				old := New(env.Kube, kind, ns, "reviews", 15*time.Second)
				old.now = at(time.Now().Add(-time.Hour))
				if _, err := old.Acquire(ctx, record("old", time.Now()), false); err != nil {
					t.Fatal(err)
				}
			}
			other := record("other", time.Now())
			k := betweenReadAndWrite(t, env, func(ctx context.Context) error {
				_, err := New(env.Kube, kind, ns, "reviews", time.Minute).Acquire(ctx, other, false)
				return err
			})
			found, err := New(k, kind, ns, "reviews", time.Minute).Acquire(ctx, record("run", time.Now()), false)
			if !errors.Is(err, rollout.ErrLocked) || found.Record == nil || found.Record.Run != other.Run {
				t.Fatalf("Acquire = %+v, %v; want ErrLocked by %s", found, err, other.Run)
			}
			if got := getLease(t, env, ns, "reviews"); *got.Spec.HolderIdentity != other.Holder {
				t.Errorf("holderIdentity %s, want %s", *got.Spec.HolderIdentity, other.Holder)
			}
		})
	}
}
