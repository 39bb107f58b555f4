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
// every feature that needs a permission (MESHROLL_SCALE_DOWN among them), and each of its
// permissions is needed: without any one of them meshroll stops before writing, naming the
// verb and the resource.
func TestRBACExample(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	manifest, err := os.ReadFile(filepath.Join("..", "..", "examples", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vars := []string{"MESHROLL_STEPS=20,100", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2", "MESHROLL_STABLE_DEPLOYMENT=reviews-v1",
		"MESHROLL_SCALE_DOWN=true", "MESHROLL_SCALE_DOWN_DELAY=0s"}

	t.Run("all rules", func(t *testing.T) {
		t.Parallel()
		ns := newStack(t, env)
		env.Apply(t, ns, strings.ReplaceAll(string(manifest), "namespace: shop", "namespace: "+ns))
		for _, rule := range roleOf(t, string(manifest)).Rules {
			for _, verb := range rule.Verbs {
				waitForAccess(t, env, ns, verb, rule.APIGroups[0], rule.Resources[0], true)
			}
		}
		got := runMain(t.Context(), t, env, ns, append(vars, "KUBECONFIG="+serviceAccountKubeconfig(t, env, ns))...)
		if got.code != 0 || !strings.Contains(got.stdout, "result: promoted") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		if want := "Deployment " + ns + "/reviews-v1 scaled from 2 to 0"; !strings.Contains(got.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, got.stdout)
		}
		if strings.Contains(got.stdout, "warning") {
			t.Errorf("a permission was missing on the way:\n%s", got.stdout)
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
				ns := newStack(t, env)
				env.Apply(t, ns, strings.ReplaceAll(string(manifest), "namespace: shop", "namespace: "+ns))
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
				got := runMain(t.Context(), t, env, ns, append(vars, "KUBECONFIG="+serviceAccountKubeconfig(t, env, ns))...)
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
	resource, sub, _ := strings.Cut(resource, "/") // deployments/scale: a subresource
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + ns + ":meshroll",
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group, Resource: resource, Subresource: sub},
	}}
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := env.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return got.Status.Allowed == allowed, nil
	})
	if err != nil {
		t.Fatalf("the authorizer never said allowed=%v to %s %s.%s in %s: %v", allowed, verb, resource, group, ns, err)
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
