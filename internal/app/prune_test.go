package app

import (
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/testenv"
)

// cycle is a VirtualService after a few releases: an older version left at 0, v1 with all
// the traffic.
const cycle = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: cycle
spec:
  hosts: [reviews]
  http:
  - name: default
    timeout: 5s
    route:
    - destination: {host: reviews, subset: v3}
      weight: 0
    - destination: {host: reviews, subset: v1}
      weight: 100
`

// MESHROLL_PRUNE=true end to end: the promotion removes every destination left at 0 in its
// write and marks the route; a run again is unchanged, status reads it, a rollback appends
// the stable destination again and drops the mark.
func TestPruneAfterPromotion(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := newStack(t, env)
	env.Apply(t, ns, cycle)
	vars := []string{"MESHROLL_VIRTUAL_SERVICE=cycle", "MESHROLL_PRUNE=true", "MESHROLL_STEPS=50,100"}
	vs := func() (string, map[string]string) {
		t.Helper()
		got, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(t.Context(), "cycle", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, d := range got.Spec.Http[0].Route {
			parts = append(parts, d.Destination.Subset+" "+itoa(d.Weight))
		}
		if got.Spec.Http[0].Timeout.AsDuration().String() != "5s" {
			t.Errorf("the route's timeout was lost: %v", got.Spec.Http[0].Timeout)
		}
		return strings.Join(parts, ", "), got.Annotations
	}

	promoted := runMain(t.Context(), t, env, ns, vars...)
	if promoted.code != 0 || !strings.Contains(promoted.stdout, "result: promoted") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", promoted.code, promoted.stdout, promoted.stderr)
	}
	if !strings.Contains(promoted.stdout, "v3 0 → removed, v1 50 → removed") {
		t.Errorf("the log does not say what was removed:\n%s", promoted.stdout)
	}
	if route, annotations := vs(); route != "v2 100" || annotations["meshroll.dev/pruned"] != "default" {
		t.Fatalf("after the promotion: %s, annotations %v; want v2 100, marked pruned", route, annotations)
	}

	again := runMain(t.Context(), t, env, ns, vars...)
	if again.code != 0 || !strings.Contains(again.stdout, "result: unchanged") {
		t.Errorf("run again: exit %d\n%s%s", again.code, again.stdout, again.stderr)
	}
	status := runMain(t.Context(), t, env, ns, "MESHROLL_VIRTUAL_SERVICE=cycle", "MESHROLL_MODE=status")
	if status.code != 0 || !strings.Contains(status.stdout, "v2 100") {
		t.Errorf("status: exit %d\n%s%s", status.code, status.stdout, status.stderr)
	}

	back := runMain(t.Context(), t, env, ns, "MESHROLL_VIRTUAL_SERVICE=cycle", "MESHROLL_MODE=rollback")
	if back.code != 0 || !strings.Contains(back.stdout, "result: rolled-back") {
		t.Fatalf("rollback: exit %d\n%s%s", back.code, back.stdout, back.stderr)
	}
	if route, annotations := vs(); route != "v2 0, v1 100" || annotations["meshroll.dev/pruned"] != "" {
		t.Errorf("after the rollback: %s, annotations %v; want v2 0, v1 100, no longer marked", route, annotations)
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
