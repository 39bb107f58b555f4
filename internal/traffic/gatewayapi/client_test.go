package gatewayapi

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// services are the stable and canary Services of the Deployments reviews-v1 and reviews-v2.
const services = `
apiVersion: v1
kind: Service
metadata: {name: reviews-v1}
spec:
  selector: {app: reviews, version: v1}
  ports: [{port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2}
spec:
  selector: {app: reviews, version: v2}
  ports: [{port: 9080}]
`

// httpRoute is a mesh HTTPRoute (its parent the Service reviews, as GAMMA has it) with the
// fields meshroll must leave alone: a tester rule, filters, timeouts.
func httpRoute(refs string) string {
	return `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - name: tester
    matches: [{headers: [{name: x-tester, value: "yes"}]}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - name: default
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-via, value: mesh}]}}]
    timeouts: {request: 10s}
    backendRefs: [` + refs + `]
`
}

// stack creates the Services, the Deployments (Available) and the HTTPRoute in a new
// namespace, and marks the HTTPRoute Accepted by its parent when accepted is set.
func stack(t *testing.T, env *testenv.Env, refs string, accepted bool) string {
	t.Helper()
	ns := env.Namespace(t)
	env.Apply(t, ns, strings.Join([]string{services, testenv.DeploymentManifest("reviews-v1", "v1"), testenv.DeploymentManifest("reviews-v2", "v2"), httpRoute(refs)}, "\n---\n"))
	for _, d := range []string{"reviews-v1", "reviews-v2"} {
		if err := env.SetDeploymentStatus(t.Context(), ns, d, true); err != nil {
			t.Fatal(err)
		}
	}
	if accepted {
		setAccepted(t, env, ns, metav1.ConditionTrue, "Accepted", "")
	}
	return ns
}

// setAccepted writes the status a Gateway API implementation would: the parent Service
// reviews, with the condition Accepted.
func setAccepted(t *testing.T, env *testenv.Env, ns string, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	routes := env.Gateway.GatewayV1().HTTPRoutes(ns)
	hr, err := routes.Get(t.Context(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	group, kind := gatewayv1.Group(""), gatewayv1.Kind("Service")
	hr.Status.Parents = []gatewayv1.RouteParentStatus{{
		ParentRef:      gatewayv1.ParentReference{Group: &group, Kind: &kind, Name: "reviews"},
		ControllerName: "istio.io/gateway-controller",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: status, Reason: reason, Message: message,
			LastTransitionTime: metav1.Now(), ObservedGeneration: hr.Generation}},
	}}
	if _, err := routes.UpdateStatus(t.Context(), hr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

var checks = traffic.Checks{Canary: true, CanaryServes: true, StableServes: true, StableDeployment: "reviews-v1", CanaryDeployment: "reviews-v2", ReadyTimeout: 30 * time.Second, Write: true}

// spec reads the HTTPRoute's spec and status as generic values.
func spec(t *testing.T, env *testenv.Env, ns string) (map[string]any, string) {
	t.Helper()
	raw, err := env.Gateway.GatewayV1().RESTClient().Get().Namespace(ns).Resource("httproutes").Name("reviews").DoRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     map[string]any    `json:"spec"`
		Status   map[string]any    `json:"status"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatal(err)
	}
	o.Spec["status"] = o.Status // compared along with the spec: a write must not touch it
	return o.Spec, o.Metadata.ResourceVersion
}

// A progression's writes on the real API server: exact shares, the canary appended on the
// stable's port, every other field and the status untouched, Events recorded.
func TestApplyOnTheAPIServer(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name  string
		refs  string
		steps []int
		want  []string // the rule's weights after each step
	}{
		{name: "a lone stable backend", refs: `{name: reviews-v1, port: 9080}`, steps: []int{10, 50, 100, 0},
			want: []string{"reviews-v1 90, reviews-v2 10", "reviews-v1 50, reviews-v2 50", "reviews-v1 0, reviews-v2 100", "reviews-v1 100, reviews-v2 0"}},
		{name: "1/1", refs: `{name: reviews-v1, port: 9080}, {name: reviews-v2, port: 9080}`, steps: []int{50, 25},
			want: []string{"reviews-v1 1 (50%), reviews-v2 1 (50%)", "reviews-v1 75, reviews-v2 25"}},
		{name: "another backend keeps its share", refs: `{name: reviews-v1, port: 9080, weight: 2}, {name: legacy, port: 9080, weight: 1}`, steps: []int{25, 50},
			want: []string{"reviews-v1 5 (42%), legacy 4 (33%), reviews-v2 3 (25%)", "reviews-v1 2 (17%), legacy 4 (33%), reviews-v2 6 (50%)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := stack(t, env, tt.refs, true)
			c := NewClient(env.Gateway, env.Kube, Target{Namespace: ns, HTTPRoute: "reviews", StableService: "reviews-v1", CanaryService: "reviews-v2"})
			if _, err := c.Preflight(t.Context(), checks); err != nil {
				t.Fatal(err)
			}
			before, _ := spec(t, env, ns)
			for i, w := range tt.steps {
				applied, err := c.Apply(t.Context(), traffic.Desired{CanaryWeight: w, Why: traffic.Why{Reason: "Step", Message: "test"}})
				if err != nil {
					t.Fatalf("step to %d: %v", w, err)
				}
				if got := traffic.DescribeWeights(applied.After.Destinations); got != tt.want[i] {
					t.Errorf("after step to %d: %s, want %s", w, got, tt.want[i])
				}
				state, err := c.Read(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if got := state.Routing().CanaryWeight(); got != w {
					t.Errorf("the cluster gives the canary %d%%, want %d%%", got, w)
				}
			}
			after, _ := spec(t, env, ns)
			if diff := cmp.Diff(withoutWeights(t, mustJSON(t, before)), withoutWeights(t, mustJSON(t, after))); diff != "" {
				t.Errorf("the writes touched more than weights (-before +after):\n%s", diff)
			}
			events, err := env.Kube.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.kind=HTTPRoute,involvedObject.name=reviews"})
			if err != nil || len(events.Items) == 0 {
				t.Errorf("no Event on the HTTPRoute (%v)", err)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What the preflight refuses writes nothing: the resourceVersion stays.
func TestPreflightRefuses(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name    string
		refs    string
		setup   func(t *testing.T, ns string)
		target  func(tg *Target, other string)
		want    error
		message string
	}{
		{name: "no status: no implementation took it", refs: `{name: reviews-v1, port: 9080}`, want: ErrNotAccepted, message: "is not accepted by any parent (its status lists none)"},
		{name: "a parent refused it", refs: `{name: reviews-v1, port: 9080}`,
			setup: func(t *testing.T, ns string) {
				setAccepted(t, env, ns, metav1.ConditionFalse, "NotAllowedByListeners", "no listener allows this route")
			},
			want: ErrNotAccepted, message: "Service reviews (controller istio.io/gateway-controller) did not accept it: NotAllowedByListeners: no listener allows this route"},
		{name: "weights that sum to 0", refs: `{name: reviews-v1, port: 9080, weight: 0}, {name: reviews-v2, port: 9080, weight: 0}`,
			setup: func(t *testing.T, ns string) { setAccepted(t, env, ns, metav1.ConditionTrue, "Accepted", "") },
			want:  traffic.ErrInvalidWeights, message: "sum to 0"},
		{name: "a canary in another namespace without a ReferenceGrant", refs: `{name: reviews-v1, port: 9080}`,
			setup:  func(t *testing.T, ns string) { setAccepted(t, env, ns, metav1.ConditionTrue, "Accepted", "") },
			target: func(tg *Target, other string) { tg.CanaryService = other + "/reviews-v2" },
			want:   ErrNoReferenceGrant, message: "which no ReferenceGrant in namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := stack(t, env, tt.refs, false)
			if tt.setup != nil {
				tt.setup(t, ns)
			}
			tg := Target{Namespace: ns, HTTPRoute: "reviews", StableService: "reviews-v1", CanaryService: "reviews-v2"}
			if tt.target != nil {
				other := env.Namespace(t)
				env.Apply(t, other, services)
				tt.target(&tg, other)
			}
			_, rv := spec(t, env, ns)
			c := NewClient(env.Gateway, env.Kube, tg)
			state, err := c.Preflight(t.Context(), checks)
			if err == nil {
				_, err = state.Plan(traffic.Desired{CanaryWeight: 10})
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, traffic.ErrPreflight) || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("error %v, want %v saying %q", err, tt.want, tt.message)
			}
			if _, after := spec(t, env, ns); after != rv {
				t.Errorf("resourceVersion moved from %s to %s", rv, after)
			}
		})
	}
}

// A ReferenceGrant from HTTPRoutes of the route's namespace lets the canary live elsewhere.
func TestCrossNamespaceCanaryWithGrant(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := stack(t, env, `{name: reviews-v1, port: 9080}`, true)
	other := env.Namespace(t)
	env.Apply(t, other, services+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: from-reviews}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: `+ns+`}]
  to: [{group: "", kind: Service, name: reviews-v2}]
`)
	c := NewClient(env.Gateway, env.Kube, Target{Namespace: ns, HTTPRoute: "reviews", StableService: "reviews-v1", CanaryService: other + "/reviews-v2"})
	noDeployments := checks
	noDeployments.CanaryDeployment = "" // the canary's pods run in the other namespace
	if _, err := c.Preflight(t.Context(), noDeployments); err != nil {
		t.Fatal(err)
	}
	applied, err := c.Apply(t.Context(), traffic.Desired{CanaryWeight: 20})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := traffic.DescribeWeights(applied.After.Destinations), "reviews-v1 80, "+other+"/reviews-v2 20"; got != want {
		t.Errorf("weights %s, want %s", got, want)
	}
}

// An already-cancelled context sends nothing and says so.
func TestCancelledContext(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := NewClient(env.Gateway, env.Kube, Target{Namespace: "default", HTTPRoute: "reviews", StableService: "reviews-v1", CanaryService: "reviews-v2"})
	if _, err := c.Apply(ctx, traffic.Desired{CanaryWeight: 10}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context: %v, want context.Canceled", err)
	}
}

// Every traffic shape on the real API server, whose CRD validation (CEL rules included) must
// accept what meshroll writes: a mirror at a fraction, the A/B rule before the steered one,
// weights beside it, and the promotion that clears both.
func TestShapesOnTheAPIServer(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := stack(t, env, `{name: reviews-v1, port: 9080}`, true)
	tg := Target{Namespace: ns, HTTPRoute: "reviews", StableService: "reviews-v1", CanaryService: "reviews-v2",
		Match: []map[string]any{{"headers": map[string]any{"end-user": map[string]any{"exact": "jason"}}}}}
	c := NewClient(env.Gateway, env.Kube, tg)
	if _, err := c.Preflight(t.Context(), checks); err != nil {
		t.Fatal(err)
	}
	before, _ := spec(t, env, ns)
	stages := []struct {
		d    traffic.Desired
		want string // the Routing's summary after
	}{
		{traffic.Desired{KeepWeights: true, MirrorPercent: 12.5}, "reviews-v1 1 (100%); mirroring 12.5% to the canary"},
		{traffic.Desired{KeepWeights: true, AB: true}, "reviews-v1 1 (100%); A/B route meshroll-ab-reviews-v2"},
		{traffic.Desired{CanaryWeight: 20, AB: true}, "reviews-v1 80, reviews-v2 20; A/B route meshroll-ab-reviews-v2"},
		{traffic.Desired{CanaryWeight: 100}, "reviews-v1 0, reviews-v2 100"},
	}
	for _, st := range stages {
		applied, err := c.Apply(t.Context(), st.d)
		if err != nil {
			t.Fatalf("%+v: %v", st.d, err)
		}
		if got := applied.After.Summary(); got != st.want {
			t.Errorf("after %+v: %s, want %s", st.d, got, st.want)
		}
	}
	after, _ := spec(t, env, ns)
	if diff := cmp.Diff(withoutWeights(t, mustJSON(t, before)), withoutWeights(t, mustJSON(t, after))); diff != "" {
		t.Errorf("the A/B rule or the mirror was left behind, or another field changed (-before +after):\n%s", diff)
	}
	hr, err := env.Gateway.GatewayV1().HTTPRoutes(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
	if err != nil || hr.Annotations["meshroll.dev/mirror"] != "" {
		t.Errorf("the mirror's annotation is left: %v, %v", hr.Annotations, err)
	}
}
