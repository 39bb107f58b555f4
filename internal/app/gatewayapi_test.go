package app

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshroll/meshroll/internal/testenv"
)

// gatewayStack is a mesh HTTPRoute (parent: the Service reviews, as GAMMA has it) whose
// default rule sends everything to reviews-v1, beside the Services and Deployments of v1 and
// v2.
const gatewayStack = `
apiVersion: v1
kind: Service
metadata: {name: reviews-v1}
spec: {selector: {app: reviews, version: v1}, ports: [{port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2}
spec: {selector: {app: reviews, version: v2}, ports: [{port: 9080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - name: default
    timeouts: {request: 10s}
    backendRefs: [{name: reviews-v1, port: 9080}]
`

// newGatewayStack creates it in a new namespace, the HTTPRoute accepted when accepted is set.
func newGatewayStack(t *testing.T, env *testenv.Env, accepted bool) string {
	t.Helper()
	ns := env.Namespace(t)
	env.Apply(t, ns, strings.Join([]string{gatewayStack, testenv.DeploymentManifest("reviews-v1", "v1"), testenv.DeploymentManifest("reviews-v2", "v2")}, "\n---\n"))
	for _, d := range []string{"reviews-v1", "reviews-v2"} {
		if err := env.SetDeploymentStatus(t.Context(), ns, d, true); err != nil {
			t.Fatal(err)
		}
	}
	if accepted {
		routes := env.Gateway.GatewayV1().HTTPRoutes(ns)
		hr, err := routes.Get(t.Context(), "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		group, kind := gatewayv1.Group(""), gatewayv1.Kind("Service")
		hr.Status.Parents = []gatewayv1.RouteParentStatus{{
			ParentRef: gatewayv1.ParentReference{Group: &group, Kind: &kind, Name: "reviews"}, ControllerName: "istio.io/gateway-controller",
			Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Now()}},
		}}
		if _, err := routes.UpdateStatus(t.Context(), hr, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// gatewayVars steer the stack's HTTPRoute instead of a VirtualService.
var gatewayVars = []string{"MESHROLL_VIRTUAL_SERVICE=", "MESHROLL_STABLE_SUBSET=", "MESHROLL_CANARY_SUBSET=",
	"MESHROLL_HTTP_ROUTE=reviews", "MESHROLL_STABLE_SERVICE=reviews-v1", "MESHROLL_CANARY_SERVICE=reviews-v2",
	"MESHROLL_STABLE_DEPLOYMENT=reviews-v1", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2"}

// The modes on an HTTPRoute, end to end: a progression promotes, the lock and the Events are
// the HTTPRoute's, status reads it, rollback returns traffic; a route no parent accepted is
// refused with nothing written.
func TestGatewayAPIModes(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)

	t.Run("progress, status, rollback", func(t *testing.T) {
		t.Parallel()
		ns := newGatewayStack(t, env, true)
		got := runMain(t.Context(), t, env, ns, append(gatewayVars, "MESHROLL_STEPS=10,50,100")...)
		if got.code != 0 || !strings.Contains(got.stdout, "result: promoted") {
			t.Fatalf("exit %d, want 0 promoted\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		for _, want := range []string{"meshroll progress: HTTPRoute " + ns + "/reviews", "step 1/3: reviews reviews-v1 1 → 90 (90%), reviews-v2 – → 10 (10%)"} {
			if !strings.Contains(got.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, got.stdout)
			}
		}
		hr, err := env.Gateway.GatewayV1().HTTPRoutes(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		refs := hr.Spec.Rules[0].BackendRefs
		if len(refs) != 2 || *refs[0].Weight != 0 || *refs[1].Weight != 100 || refs[1].Name != "reviews-v2" || *refs[1].Port != 9080 {
			t.Errorf("backendRefs after the promotion: %+v", refs)
		}
		if hr.Spec.Rules[0].Timeouts == nil || hr.Spec.Rules[0].Timeouts.Request == nil || *hr.Spec.Rules[0].Timeouts.Request != "10s" {
			t.Errorf("the rule's timeouts were lost: %+v", hr.Spec.Rules[0].Timeouts)
		}
		if _, err := env.Kube.CoordinationV1().Leases(ns).Get(t.Context(), "meshroll-reviews", metav1.GetOptions{}); err != nil {
			t.Errorf("no lock beside the HTTPRoute: %v", err)
		}
		events, err := env.Kube.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.kind=HTTPRoute,involvedObject.name=reviews"})
		if err != nil || len(events.Items) != 3 {
			t.Errorf("%d Events on the HTTPRoute, want one per step (%v)", len(events.Items), err)
		}

		status := runMain(t.Context(), t, env, ns, append(gatewayVars, "MESHROLL_MODE=status")...)
		if status.code != 0 || !strings.Contains(status.stdout, "reviews-v2 100") {
			t.Errorf("status: exit %d\n%s%s", status.code, status.stdout, status.stderr)
		}
		back := runMain(t.Context(), t, env, ns, append(gatewayVars, "MESHROLL_MODE=rollback")...)
		if back.code != 0 || !strings.Contains(back.stdout, "result: rolled-back") {
			t.Fatalf("rollback: exit %d\n%s%s", back.code, back.stdout, back.stderr)
		}
	})

	t.Run("dry run, phase, promote", func(t *testing.T) {
		t.Parallel()
		ns := newGatewayStack(t, env, true)
		routes := env.Gateway.GatewayV1().HTTPRoutes(ns)
		before, err := routes.Get(t.Context(), "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dry := runMain(t.Context(), t, env, ns, append(gatewayVars, "MESHROLL_STEPS=10,100", "MESHROLL_DRY_RUN=true")...)
		if dry.code != 0 || !strings.Contains(dry.stdout, "result: dry-run") || !strings.Contains(dry.stdout, `"path":"/spec/rules/0/backendRefs/-"`) {
			t.Fatalf("dry run: exit %d\n%s%s", dry.code, dry.stdout, dry.stderr)
		}
		if after, err := routes.Get(t.Context(), "reviews", metav1.GetOptions{}); err != nil || after.ResourceVersion != before.ResourceVersion {
			t.Fatalf("a dry run moved the resourceVersion from %s (%v)", before.ResourceVersion, err)
		}
		phase := runMain(t.Context(), t, env, ns, append(gatewayVars, "MESHROLL_MODE=phase", "MESHROLL_WEIGHT=30")...)
		if phase.code != 0 || !strings.Contains(phase.stdout, "result: weight-set") || !strings.Contains(phase.stdout, "reviews-v1 70, reviews-v2 30") {
			t.Fatalf("phase: exit %d\n%s%s", phase.code, phase.stdout, phase.stderr)
		}
		promote := runMain(t.Context(), t, env, ns, append(gatewayVars, "MESHROLL_MODE=promote")...)
		if promote.code != 0 || !strings.Contains(promote.stdout, "result: promoted") || !strings.Contains(promote.stdout, "reviews-v1 0, reviews-v2 100") {
			t.Fatalf("promote: exit %d\n%s%s", promote.code, promote.stdout, promote.stderr)
		}
	})

	t.Run("a route no parent accepted writes nothing", func(t *testing.T) {
		t.Parallel()
		ns := newGatewayStack(t, env, false)
		hr, err := env.Gateway.GatewayV1().HTTPRoutes(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := runMain(t.Context(), t, env, ns, append(gatewayVars, "MESHROLL_STEPS=10,100")...)
		if got.code != 2 || !strings.Contains(got.stderr, "is not accepted by any parent") {
			t.Fatalf("exit %d, want 2 naming the missing acceptance\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		after, err := env.Gateway.GatewayV1().HTTPRoutes(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
		if err != nil || after.ResourceVersion != hr.ResourceVersion {
			t.Errorf("resourceVersion moved from %s to %s (%v)", hr.ResourceVersion, after.ResourceVersion, err)
		}
		if _, err := env.Kube.CoordinationV1().Leases(ns).Get(t.Context(), "meshroll-reviews", metav1.GetOptions{}); err == nil {
			t.Errorf("a refused run took the lock")
		}
	})
}
