package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshroll/meshroll/internal/lease"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/istio"
)

// The plumbing of the fault tests: waiting on conditions, the lock's record as the cluster
// holds it, and a recorder of every version of the VirtualService.

// faultWait bounds a wait for something that takes a second or two on an idle machine.
const faultWait = 2 * time.Minute

// waitUntil polls cond until it holds, failing the test after timeout with what it waited for.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waited %v for %s: %v", timeout, what, err)
	}
}

// currentWeights is weights without failing the test: a read the API server does not
// answer (or answers with an error) is "".
func currentWeights(env *testenv.Env, ns string) string {
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(context.Background(), "reviews", metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return describeReviews(vs)
}

// describeReviews is the reviews route's weights ("v1 80, v2 20"), or why they cannot be read.
func describeReviews(vs *networkingv1.VirtualService) string {
	spec, err := json.Marshal(&vs.Spec)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	state, err := istio.NewState(vs.Namespace, vs.Name, vs.ResourceVersion, spec, istio.Target{Namespace: vs.Namespace, VirtualService: vs.Name, StableSubset: "v1", CanarySubset: "v2"})
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return traffic.DescribeWeights(state.Routing().Destinations)
}

// lockOf is the reviews VirtualService's lock as the cluster holds it: the run's record in
// the Lease's annotation, and the holder ("" when free). ok is false while the Lease cannot
// be read.
func lockOf(env *testenv.Env, ns string) (rec rollout.Record, holder string, ok bool) {
	l, err := env.Kube.CoordinationV1().Leases(ns).Get(context.Background(), lease.Name("reviews"), metav1.GetOptions{})
	if err != nil {
		return rollout.Record{}, "", false
	}
	if err := json.Unmarshal([]byte(l.Annotations[lease.RecordAnnotation]), &rec); err != nil {
		return rollout.Record{}, "", false
	}
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	return rec, holder, true
}

// mustLock is lockOf for a test that needs the Lease there.
func mustLock(t *testing.T, env *testenv.Env, ns string) (rollout.Record, string) {
	t.Helper()
	rec, holder, ok := lockOf(env, ns)
	if !ok {
		t.Fatalf("no readable Lease %s/%s", ns, lease.Name("reviews"))
	}
	return rec, holder
}

// version is one version of the reviews VirtualService as a watch reported it.
type version struct {
	rv         string
	weights    string // the steered route's: "v1 80, v2 20"
	timeout    string // the steered route's timeout, "" when none
	annotation string // the annotation other writers set, "" when none
	managers   string // the field managers of the object, for failure messages
}

// otherAnnotation is the annotation the tests' other writers set.
const otherAnnotation = "example.com/synced"

// versionLog records every version of the reviews VirtualService the API server reports
// (resourceVersion, weights, and the fields other writers touch), in order.
type versionLog struct {
	mu   sync.Mutex
	seen []version
}

// recordVersions starts recording in ns of env until the test ends.
func recordVersions(t *testing.T, env *testenv.Env, ns string) *versionLog {
	t.Helper()
	l := &versionLog{}
	(&rig{env: env, ns: ns}).watchReviews(t, func(vs *networkingv1.VirtualService) {
		v := version{rv: vs.ResourceVersion, weights: describeReviews(vs), annotation: vs.Annotations[otherAnnotation]}
		for _, h := range vs.Spec.GetHttp() {
			if h.GetName() == "default" && h.GetTimeout() != nil {
				v.timeout = h.GetTimeout().AsDuration().String()
			}
		}
		var managers []string
		for _, m := range vs.ManagedFields {
			managers = append(managers, m.Manager)
		}
		v.managers = strings.Join(managers, ",")
		l.mu.Lock()
		defer l.mu.Unlock()
		if n := len(l.seen); n > 0 && l.seen[n-1].rv == v.rv {
			return // a watch resumed from this version may report it again
		}
		l.seen = append(l.seen, v)
	})
	return l
}

// versions is every version recorded so far.
func (l *versionLog) versions() []version {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]version(nil), l.seen...)
}

// settled waits until the log has seen the VirtualService's current version, so that no
// write the test checks is still on its way through the watch.
func (l *versionLog) settled(t *testing.T, env *testenv.Env, ns string) []version {
	t.Helper()
	rv := resourceVersion(t, env, ns, "reviews")
	waitUntil(t, faultWait, "the watch to report resourceVersion "+rv, func() bool {
		vs := l.versions()
		return len(vs) > 0 && vs[len(vs)-1].rv == rv
	})
	return l.versions()
}

// weightChanges is the sequence of weights the versions went through, repeats folded.
func weightChanges(vs []version) []string {
	var out []string
	for _, v := range vs {
		if len(out) == 0 || out[len(out)-1] != v.weights {
			out = append(out, v.weights)
		}
	}
	return out
}

func (v version) String() string {
	return fmt.Sprintf("rv %s: %s, timeout %q, %s %q (managers %s)", v.rv, v.weights, v.timeout, otherAnnotation, v.annotation, v.managers)
}

func describeVersions(vs []version) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	return b.String()
}
