package gates

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The pods of a Bookinfo-like reviews service, as testenv.DeploymentManifest labels them.
var (
	stableLabels = map[string]string{"app": "reviews", "version": "v1"}
	canaryLabels = map[string]string{"app": "reviews", "version": "v2"}
)

// meshNamespaces creates a fresh namespace for the workloads and another that plays Istio's
// root namespace, and applies the manifests in each.
func meshNamespaces(t *testing.T, env *testenv.Env, rootManifests, nsManifests string) (root, ns string) {
	t.Helper()
	root, ns = env.Namespace(t), env.Namespace(t)
	env.Apply(t, root, rootManifests)
	env.Apply(t, ns, nsManifests)
	return root, ns
}

// securityPolicy is a manifest document of one security.istio.io/v1 policy.
func securityPolicy(kind, name, spec string) string {
	return fmt.Sprintf("apiVersion: security.istio.io/v1\nkind: %s\nmetadata: {name: %s}\nspec: %s\n---\n", kind, name, spec)
}

func peerYAML(name, spec string) string  { return securityPolicy(KindPeerAuthentication, name, spec) }
func authzYAML(name, spec string) string { return securityPolicy(KindAuthorizationPolicy, name, spec) }
func jwtYAML(name, spec string) string   { return securityPolicy(KindRequestAuthentication, name, spec) }

func TestMTLSMode(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	for _, tc := range mtlsCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, ns := meshNamespaces(t, env, tc.root, tc.namespace)
			w := Workloads{Namespace: ns, StableLabels: stableLabels, CanaryLabels: canaryLabels}
			mode, source, err := MTLSMode(t.Context(), env.Istio, root, w, tc.ports...)
			if err != nil {
				t.Fatal(err)
			}
			want := mtlsDecision{tc.mode, strings.NewReplacer("{root}", root, "{ns}", ns).Replace(tc.source)}
			if diff := cmp.Diff(want, mtlsDecision{mode, source}, cmp.AllowUnexported(mtlsDecision{})); diff != "" {
				t.Errorf("MTLSMode (-want +got):\n%s", diff)
			}
		})
	}
}

// Creation times cannot be set through the API server, so which of two policies in one scope
// wins is tested on policies built here.
func TestMTLSModeOldestPolicyWins(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pa := func(ns, name string, created time.Time, selector map[string]string, mode securityapi.PeerAuthentication_MutualTLS_Mode) *securityv1.PeerAuthentication {
		p := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created)}}
		p.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: mode}
		if selector != nil {
			p.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: selector}
		}
		return p
	}
	strict, permissive := securityapi.PeerAuthentication_MutualTLS_STRICT, securityapi.PeerAuthentication_MutualTLS_PERMISSIVE
	app := map[string]string{"app": "reviews"}
	for _, tc := range []struct {
		name  string
		ns    string // the workloads'
		peers []*securityv1.PeerAuthentication
		want  mtlsDecision
	}{
		{"older workload policy wins over a newer one", "shop",
			[]*securityv1.PeerAuthentication{pa("shop", "a-new", t0.Add(time.Second), app, permissive), pa("shop", "z-old", t0, app, strict)},
			mtlsDecision{MTLSStrict, "PeerAuthentication shop/z-old (workload-specific)"}},
		{"same second: the name that sorts first wins", "shop",
			[]*securityv1.PeerAuthentication{pa("shop", "b", t0, app, strict), pa("shop", "a", t0, app, permissive)},
			mtlsDecision{MTLSPermissive, "PeerAuthentication shop/a (workload-specific)"}},
		{"older namespace-wide policy wins, the newer is ignored", "shop",
			[]*securityv1.PeerAuthentication{pa("shop", "new", t0.Add(time.Hour), nil, permissive), pa("shop", "old", t0, nil, strict)},
			mtlsDecision{MTLSStrict, "PeerAuthentication shop/old (namespace-wide)"}},
		{"older mesh-wide policy wins", "shop",
			[]*securityv1.PeerAuthentication{pa("istio-system", "old", t0, nil, permissive), pa("istio-system", "new", t0.Add(time.Hour), nil, strict)},
			mtlsDecision{MTLSPermissive, "PeerAuthentication istio-system/old (mesh-wide)"}},
		{"a policy in another namespace does not apply", "shop",
			[]*securityv1.PeerAuthentication{pa("other", "default", t0, nil, strict), pa("other", "reviews", t0, app, strict)},
			mtlsDecision{MTLSPermissive, "Istio's default: no PeerAuthentication sets a mode for it"}},
		{"workloads in the root namespace: its namespace-wide policy is the mesh-wide one", "istio-system",
			[]*securityv1.PeerAuthentication{pa("istio-system", "default", t0, nil, strict), pa("istio-system", "reviews", t0, app, permissive)},
			mtlsDecision{MTLSStrict, "PeerAuthentication istio-system/default (mesh-wide)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := Workloads{Namespace: tc.ns, StableLabels: stableLabels, CanaryLabels: canaryLabels}
			got := effectiveMTLS("istio-system", w, tc.peers, nil)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(mtlsDecision{})); diff != "" {
				t.Errorf("effectiveMTLS (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParity(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	for _, tc := range parityCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, ns := meshNamespaces(t, env, tc.root, tc.namespace)
			w := Workloads{Namespace: ns, StableLabels: stableLabels, CanaryLabels: canaryLabels}
			got, err := Parity(t.Context(), env.Istio, root, w)
			if err != nil {
				t.Fatal(err)
			}
			var want []Miss
			for _, m := range tc.want {
				m.Namespace = map[string]string{"root": root, "ns": ns}[m.Namespace]
				want = append(want, m)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parity (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParityMissMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		selector map[string]string
		want     string
	}{
		{name: "version pinned", selector: map[string]string{"version": "v1"},
			want: "AuthorizationPolicy shop/reviews-viewer selects version=v1: the canary (version=v2) is not protected by it"},
		{name: "a label the canary lacks", selector: map[string]string{"app": "reviews", "track": "stable", "version": "v1"},
			want: "AuthorizationPolicy shop/reviews-viewer selects app=reviews,track=stable,version=v1: the canary (no label track, version=v2) is not protected by it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := Miss{Kind: KindAuthorizationPolicy, Namespace: "shop", Name: "reviews-viewer", Selector: selectorString(tc.selector), Canary: canaryOn(tc.selector, canaryLabels)}
			if diff := cmp.Diff(tc.want, m.String()); diff != "" {
				t.Errorf("Miss.String (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSecurityReadWorkloads(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, testenv.DeploymentManifest("reviews-v1", "v1")+"\n---\n"+testenv.DeploymentManifest("reviews-v2", "v2"))
	got, err := ReadWorkloads(t.Context(), env.Kube, ns, "reviews-v1", "reviews-v2")
	if err != nil {
		t.Fatal(err)
	}
	want := Workloads{Namespace: ns, StableLabels: stableLabels, CanaryLabels: canaryLabels}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadWorkloads (-want +got):\n%s", diff)
	}
	if _, err := ReadWorkloads(t.Context(), env.Kube, ns, "reviews-v1", "reviews-v3"); !apierrors.IsNotFound(err) {
		t.Errorf("ReadWorkloads of a missing Deployment: got %v, want a NotFound error", err)
	}
}

// The context ends before any request: each function says why, not "context canceled".
func TestSecurityCancelledContext(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	cause := errors.New("the preflight was cancelled")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	w := Workloads{Namespace: ns, StableLabels: stableLabels, CanaryLabels: canaryLabels}
	_, _, mtlsErr := MTLSMode(ctx, env.Istio, "istio-system", w)
	_, parityErr := Parity(ctx, env.Istio, "istio-system", w)
	_, readErr := ReadWorkloads(ctx, env.Kube, ns, "reviews-v1", "reviews-v2")
	for name, err := range map[string]error{"MTLSMode": mtlsErr, "Parity": parityErr, "ReadWorkloads": readErr} {
		if !errors.Is(err, cause) {
			t.Errorf("%s with a cancelled context: got %v, want it to wrap %q", name, err, cause)
		}
	}
}

// Inputs that would read every namespace (an empty namespace lists all) are refused.
func TestSecurityInputChecks(t *testing.T) {
	t.Parallel()
	w := Workloads{Namespace: "shop", StableLabels: stableLabels, CanaryLabels: canaryLabels}
	for _, tc := range []struct {
		name string
		root string
		w    Workloads
	}{
		{"no root namespace", "", w},
		{"no workload namespace", "istio-system", Workloads{StableLabels: stableLabels, CanaryLabels: canaryLabels}},
		{"no canary labels", "istio-system", Workloads{Namespace: "shop", StableLabels: stableLabels}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A nil client: the check must come before any request.
			if _, _, err := MTLSMode(t.Context(), nil, tc.root, tc.w); err == nil {
				t.Error("MTLSMode: got no error")
			}
			if _, err := Parity(t.Context(), nil, tc.root, tc.w); err == nil {
				t.Error("Parity: got no error")
			}
		})
	}
	if _, err := Parity(t.Context(), nil, "istio-system", Workloads{Namespace: "shop", CanaryLabels: canaryLabels}); err == nil {
		t.Error("Parity without stable labels: got no error")
	}
}
