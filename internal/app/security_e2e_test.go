package app

// End-to-end tests of the security checks on the real API server: the preflight reads real
// PeerAuthentications and AuthorizationPolicies (MESHROLL_VERIFY_SECURITY), and the mtls check
// judges a canary on what meshsim's proxies report to a real Prometheus. Istio's root
// namespace is a fresh one per test (MESHROLL_ISTIO_NAMESPACE), never a shared istio-system.

import (
	"maps"
	"regexp"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/lease"
	"github.com/meshroll/meshroll/internal/report"
	"github.com/meshroll/meshroll/internal/testenv"
)

// stableOnlyPolicy is an AuthorizationPolicy that protects the stable pods only: its selector
// names stable's version label, which the canary's pods do not carry.
const stableOnlyPolicy = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-callers
spec:
  selector:
    matchLabels: {version: v1}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/shop/sa/productpage"]
`

// bothVersionsPolicy protects every reviews pod, whatever its version.
const bothVersionsPolicy = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-all-versions
spec:
  selector:
    matchLabels: {app: reviews}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/shop/sa/productpage"]
`

// peerAuthentication is a PeerAuthentication named default without a selector: namespace-wide
// in a workload namespace, mesh-wide in the root namespace.
func peerAuthentication(mode string) string {
	return `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
spec:
  mtls: {mode: ` + mode + `}
`
}

// expectPodLabels fails the test unless the stack's Deployments label their pods as the
// policies here expect: app=reviews and the version.
func expectPodLabels(t *testing.T, env *testenv.Env, ns string) {
	t.Helper()
	for name, version := range map[string]string{"reviews-v1": "v1", "reviews-v2": "v2"} {
		d, err := env.Kube.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"app": "reviews", "version": version}; !maps.Equal(d.Spec.Template.Labels, want) {
			t.Fatalf("Deployment %s labels its pods %v, want %v", name, d.Spec.Template.Labels, want)
		}
	}
}

// The security preflight on real policies. Without MESHROLL_VERIFY_SECURITY a policy that
// protects stable only is a warning and the run proceeds; with it, that policy or a canary
// whose mTLS mode is not STRICT is a failed preflight (exit 2): nothing is written, no Lease
// is taken. A canary protected as stable is, with STRICT mTLS, proceeds.
func TestSecurityPreflight(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name     string
		policies string // in the VirtualService's namespace
		mesh     string // in the root namespace
		verify   bool
		wantCode int
		// want is in the output, given the namespace and the root namespace.
		want func(ns, root string) []string
	}{
		{
			name: "stable-only policy warns", policies: stableOnlyPolicy, wantCode: 0,
			want: func(ns, _ string) []string {
				return []string{"WARNING: security parity: AuthorizationPolicy " + ns + "/reviews-callers selects version=v1: the canary (version=v2) is not protected by it"}
			},
		},
		{
			name: "stable-only policy fails verification", policies: stableOnlyPolicy + "---" + peerAuthentication("STRICT"), verify: true, wantCode: 2,
			want: func(ns, _ string) []string {
				return []string{"the canary is not protected as required (MESHROLL_VERIFY_SECURITY=true)",
					"AuthorizationPolicy " + ns + "/reviews-callers selects version=v1: the canary (version=v2) is not protected by it"}
			},
		},
		{
			name: "strict and protected alike passes verification", policies: bothVersionsPolicy + "---" + peerAuthentication("STRICT"), verify: true, wantCode: 0,
			want: func(string, string) []string { return nil },
		},
		{
			name: "mesh-wide permissive fails verification", mesh: peerAuthentication("PERMISSIVE"), verify: true, wantCode: 2,
			want: func(_, root string) []string {
				return []string{"the canary's mTLS mode is PERMISSIVE (PeerAuthentication " + root + "/default (mesh-wide)), not STRICT"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns, root := newStack(t, env), env.Namespace(t)
			expectPodLabels(t, env, ns)
			if tt.policies != "" {
				env.Apply(t, ns, tt.policies)
			}
			if tt.mesh != "" {
				env.Apply(t, root, tt.mesh)
			}
			out := t.TempDir()
			vars := []string{"MESHROLL_STEPS=50,100", "MESHROLL_STABLE_DEPLOYMENT=reviews-v1", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2",
				"MESHROLL_ISTIO_NAMESPACE=" + root, "MESHROLL_OUTPUT_DIR=" + out, gateRunTimeout}
			if tt.verify {
				vars = append(vars, "MESHROLL_VERIFY_SECURITY=true")
			}
			rvBefore := resourceVersion(t, env, ns, "reviews")
			got := runMain(t.Context(), t, env, ns, vars...)
			want := tt.want(ns, root)
			switch tt.wantCode {
			case 0:
				got.expect(t, 0, "promoted")
				if w, _ := weights(t, env, ns, "reviews"); w != "v1 0, v2 100" {
					t.Errorf("weights = %s, want v1 0, v2 100", w)
				}
				if len(want) == 0 && strings.Contains(got.stdout+got.stderr, "WARNING") {
					t.Errorf("a canary protected as stable is was warned about:\n%s", got.stdout)
				}
			default:
				got.expect(t, 2, "invalid")
				if rv := resourceVersion(t, env, ns, "reviews"); rv != rvBefore {
					t.Errorf("the VirtualService was written: resourceVersion %s → %s", rvBefore, rv)
				}
				_, err := env.Kube.CoordinationV1().Leases(ns).Get(t.Context(), lease.Name("reviews"), metav1.GetOptions{})
				if !apierrors.IsNotFound(err) {
					t.Errorf("a failed security preflight wrote Lease %s (or it cannot be read: %v)", lease.Name("reviews"), err)
				}
			}
			got.expectOutput(t, want...)
			res := readResult(t, out)
			if tt.wantCode == 0 && len(want) > 0 {
				summary := outputFile(t, out, report.SummaryFile)
				policy := "AuthorizationPolicy " + ns + "/reviews-callers selects version=v1"
				if !strings.Contains(summary, "> [!WARNING]") || !strings.Contains(summary, policy) || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], policy) {
					t.Errorf("%s and %s do not carry the warning about %q:\n%s\nwarnings: %q", report.SummaryFile, report.ResultFile, policy, summary, res.Warnings)
				}
			}
		})
	}
}

// mtlsPass matches a window's mtls row with the verdict pass.
var mtlsPass = regexp.MustCompile(`\n  mtls {2,}100 {2,}\S+ {2,}100% mutual TLS {2,}pass`)

// The mtls check end to end, with MESHROLL_VERIFY_SECURITY=true and a STRICT PeerAuthentication
// (so the preflight passes): a canary whose traffic arrives in plaintext, as meshsim's proxy
// reports it to a real Prometheus, fails the check mtls and traffic goes back to stable; a
// canary served over mutual TLS passes it in every window and is promoted.
func TestSecurityMTLSCheck(t *testing.T) {
	t.Parallel()
	for _, plaintext := range []bool{true, false} {
		name := "mutual TLS canary promoted"
		if plaintext {
			name = "plaintext canary fails"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigOptions{rps: 80})
			r.env.Apply(t, r.ns, peerAuthentication("STRICT"))
			r.mesh.SetPlaintext("v2", plaintext)
			out := t.TempDir()
			got := r.start(t, "MESHROLL_VERIFY_SECURITY=true", "MESHROLL_STABLE_DEPLOYMENT=reviews-v1",
				"MESHROLL_ISTIO_NAMESPACE="+r.env.Namespace(t), "MESHROLL_OUTPUT_DIR="+out).wait(t)
			res := readResult(t, out)
			verdicts := map[analysis.Verdict]int{}
			for _, s := range res.Steps {
				for _, w := range s.Windows {
					for _, c := range w.Results {
						if c.Check == analysis.CheckMTLS {
							verdicts[c.Verdict]++
						}
					}
				}
			}
			t.Logf("mtls verdicts over the run: %v", verdicts)
			if plaintext {
				got.expect(t, 3, "canary-failed")
				r.expectWeights(t, "v1 100, v2 0")
				got.expectOutput(t, "check mtls failed", "rollback: reviews")
				if res.FailedCheck != analysis.CheckMTLS || verdicts[analysis.VerdictPass] > 0 {
					t.Errorf("failedCheck = %q with mtls verdicts %v, want mtls failed and never passed", res.FailedCheck, verdicts)
				}
				return
			}
			got.expect(t, 0, "promoted")
			r.expectWeights(t, "v1 0, v2 100")
			if verdicts[analysis.VerdictPass] == 0 || verdicts[analysis.VerdictFail] > 0 || !mtlsPass.MatchString(got.stdout) {
				t.Errorf("mtls verdicts %v, want passes only, shown in a window's table:\n%s", verdicts, got.stdout)
			}
		})
	}
}
