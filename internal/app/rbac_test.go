package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/meshroll/meshroll/internal/testenv"
)

// The least-privilege manifest of examples/rbac.yaml is enough for a whole progression with
// every feature that needs a permission (MESHROLL_SCALE_DOWN and MESHROLL_VERIFY_SECURITY among
// them), and each of its permissions is needed: without any one of them meshroll stops before
// writing, naming the verb and the resource.
func TestRBACExample(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	manifest, err := os.ReadFile(filepath.Join("..", "..", "examples", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vars := []string{"MESHROLL_STEPS=20,100", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2", "MESHROLL_STABLE_DEPLOYMENT=reviews-v1",
		"MESHROLL_SCALE_DOWN=true", "MESHROLL_SCALE_DOWN_DELAY=0s", "MESHROLL_VERIFY_SECURITY=true"}
	// setup applies the manifest for a fresh stack and root namespace, and a STRICT
	// PeerAuthentication so that the security verification passes; it returns the run's vars.
	setup := func(t *testing.T) (ns, root string, runVars []string) {
		t.Helper()
		ns, root = newStack(t, env), env.Namespace(t)
		env.Apply(t, ns, peerAuthentication("STRICT"))
		applyRBAC(t, env, string(manifest), ns, root)
		return ns, root, append(slices.Clone(vars), "MESHROLL_ISTIO_NAMESPACE="+root, "KUBECONFIG="+serviceAccountKubeconfig(t, env, ns))
	}

	t.Run("all rules", func(t *testing.T) {
		t.Parallel()
		ns, root, runVars := setup(t)
		for _, rule := range roleOf(t, string(manifest)).Rules {
			for _, verb := range rule.Verbs {
				waitForAccess(t, env, ns, verb, rule.APIGroups[0], rule.Resources[0], true)
			}
		}
		waitForAccessIn(t, env, ns, root, "list", "security.istio.io", "peerauthentications", true)
		got := runMain(t.Context(), t, env, ns, runVars...)
		if got.code != 0 || !strings.Contains(got.stdout, "result: promoted") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		if want := "Deployment " + ns + "/reviews-v1 scaled from 2 to 0"; !strings.Contains(got.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, got.stdout)
		}
		if strings.Contains(strings.ToLower(got.stdout), "warning") {
			t.Errorf("a permission was missing on the way:\n%s", got.stdout)
		}
	})

	t.Run("without the root namespace's Role", func(t *testing.T) {
		t.Parallel()
		ns, root, runVars := setup(t)
		if err := env.Kube.RbacV1().RoleBindings(root).Delete(t.Context(), "meshroll-mesh-policies", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitForAccessIn(t, env, ns, root, "list", "security.istio.io", "peerauthentications", false)
		_, rvBefore := weights(t, env, ns, "reviews")
		got := runMain(t.Context(), t, env, ns, runVars...)
		want := "forbidden: the credentials in use cannot list peerauthentications.security.istio.io in namespace " + root
		if got.code != 2 || !strings.Contains(got.stderr, want) {
			t.Fatalf("exit %d, stderr lacks %q\nstdout:\n%s\nstderr:\n%s", got.code, want, got.stdout, got.stderr)
		}
		if _, rvAfter := weights(t, env, ns, "reviews"); rvAfter != rvBefore {
			t.Errorf("the VirtualService was written: resourceVersion %s → %s", rvBefore, rvAfter)
		}
	})

	role := roleOf(t, string(manifest))
	for ri, rule := range role.Rules {
		for _, verb := range rule.Verbs {
			resource, sub, _ := strings.Cut(rule.Resources[0], "/")
			if rule.APIGroups[0] != "" {
				resource += "." + rule.APIGroups[0]
			}
			if sub != "" {
				resource += "/" + sub // deployments.apps/scale
			}
			t.Run("without "+verb+" "+resource, func(t *testing.T) {
				t.Parallel()
				ns, _, runVars := setup(t)
				reduced, err := env.Kube.RbacV1().Roles(ns).Get(t.Context(), "meshroll", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				r := &reduced.Rules[ri]
				r.Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == verb })
				if len(r.Verbs) == 0 {
					reduced.Rules = slices.Delete(reduced.Rules, ri, ri+1)
				}
				if _, err := env.Kube.RbacV1().Roles(ns).Update(t.Context(), reduced, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				// Every other permission granted and this one refused: the authorizer has seen
				// the binding and the reduced Role.
				for oi, other := range role.Rules {
					for _, v := range other.Verbs {
						waitForAccess(t, env, ns, v, other.APIGroups[0], other.Resources[0], oi != ri || v != verb)
					}
				}
				_, rvBefore := weights(t, env, ns, "reviews")
				got := runMain(t.Context(), t, env, ns, runVars...)
				want := fmt.Sprintf("forbidden: the credentials in use cannot %s %s in namespace %s", verb, resource, ns)
				if verb == "get" && resource == "virtualservices.networking.istio.io" {
					// Without it nothing can be read, not even to ask about the rest.
					want = fmt.Sprintf(`cannot get resource "virtualservices" in API group "networking.istio.io" in the namespace "%s"`, ns)
				}
				if got.code != 2 || !strings.Contains(got.stderr, want) {
					t.Fatalf("exit %d, stderr lacks %q\nstdout:\n%s\nstderr:\n%s", got.code, want, got.stdout, got.stderr)
				}
				if _, rvAfter := weights(t, env, ns, "reviews"); rvAfter != rvBefore {
					t.Errorf("the VirtualService was written: resourceVersion %s → %s", rvBefore, rvAfter)
				}
			})
		}
	}
}

// applyRBAC applies the manifest for the namespace ns: its objects in istio-system go to the
// root namespace root, every other one to ns.
func applyRBAC(t *testing.T, env *testenv.Env, manifest, ns, root string) {
	t.Helper()
	for _, doc := range strings.Split(strings.ReplaceAll(manifest, "namespace: shop", "namespace: "+ns), "\n---\n") {
		if strings.Contains(doc, "\n  namespace: istio-system\n") {
			env.Apply(t, root, doc)
		} else {
			env.Apply(t, ns, doc)
		}
	}
}

func roleOf(t *testing.T, manifest string) rbacv1.Role {
	t.Helper()
	for _, doc := range strings.Split(manifest, "\n---\n") {
		if !strings.Contains(doc, "\nkind: Role\n") {
			continue
		}
		var role rbacv1.Role
		if err := yamlUnmarshal(doc, &role); err != nil {
			t.Fatal(err)
		}
		return role
	}
	t.Fatal("examples/rbac.yaml has no Role")
	return rbacv1.Role{}
}

// waitForAccess waits until the API server's authorizer, which learns of Roles and
// RoleBindings through its own watch, says allowed to verb on resource for the meshroll
// ServiceAccount of ns: a run started before that would meet the old permissions.
func waitForAccess(t *testing.T, env *testenv.Env, ns, verb, group, resource string, allowed bool) {
	t.Helper()
	waitForAccessIn(t, env, ns, ns, verb, group, resource, allowed)
}

// waitForAccessIn is waitForAccess to resources in namespace in (Istio's root namespace).
func waitForAccessIn(t *testing.T, env *testenv.Env, ns, in, verb, group, resource string, allowed bool) {
	t.Helper()
	resource, sub, _ := strings.Cut(resource, "/") // deployments/scale: a subresource
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + ns + ":meshroll",
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: in, Verb: verb, Group: group, Resource: resource, Subresource: sub},
	}}
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := env.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return got.Status.Allowed == allowed, nil
	})
	if err != nil {
		t.Fatalf("the authorizer never said allowed=%v to %s %s.%s in %s: %v", allowed, verb, resource, group, in, err)
	}
}

// serviceAccountKubeconfig writes a kubeconfig that acts as the meshroll ServiceAccount of ns
// (the test's admin impersonates it, so every request is authorized as that account).
func serviceAccountKubeconfig(t *testing.T, env *testenv.Env, ns string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range cfg.AuthInfos {
		user.Impersonate = "system:serviceaccount:" + ns + ":meshroll"
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func yamlUnmarshal(doc string, v any) error { return yaml.Unmarshal([]byte(doc), v) }
