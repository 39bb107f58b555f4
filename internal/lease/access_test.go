package lease

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

// ciUser is who the access tests act as (the test's admin impersonates it).
const ciUser = "ci-runner"

func impersonating(t *testing.T, env *testenv.Env, user string) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// grant gives ciUser verbs on leases in ns, and waits until the authorizer, which learns of
// Roles through its own watch, says so.
func grant(t *testing.T, env *testenv.Env, ns string, verbs []string) {
	t.Helper()
	if len(verbs) == 0 {
		return
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "leases"}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: verbs}}}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "leases"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "leases"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: ciUser}},
	}
	if _, err := env.Kube.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Kube.RbacV1().RoleBindings(ns).Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, verb := range verbs {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               ciUser,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: "coordination.k8s.io", Resource: "leases"},
		}}
		err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := env.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			return err == nil && got.Status.Allowed, err
		})
		if err != nil {
			t.Fatalf("the authorizer never allowed %s %s leases in %s: %v", ciUser, verb, ns, err)
		}
	}
}

// missingVerbs reads the verbs a forbidden error names: "cannot get, nor create leases…".
func missingVerbs(err error) []string {
	if err == nil {
		return nil
	}
	_, rest, _ := strings.Cut(err.Error(), "cannot ")
	verbs, _, ok := strings.Cut(rest, " leases.coordination.k8s.io")
	if !ok {
		return []string{"unreadable: " + err.Error()}
	}
	return strings.Split(verbs, ", nor ")
}

// forbidden checks that err is a missing permission found in preflight (exit 2), or nil.
func forbidden(t *testing.T, call string, want bool, err error) {
	t.Helper()
	switch {
	case want && !(errors.Is(err, traffic.ErrForbidden) && errors.Is(err, traffic.ErrPreflight)):
		t.Errorf("%s: %v, want a preflight failure for a missing permission", call, err)
	case !want && err != nil:
		t.Errorf("%s: %v", call, err)
	}
}

// Check names every verb the credentials lack on leases, and each call that meets a 403
// fails as a preflight failure (exit 2) rather than a runtime one.
func TestPermissions(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	for _, tc := range []struct {
		name    string
		granted []string
		missing []string
		// calls that meet the missing permission
		readForbidden, acquireForbidden, updateForbidden bool
	}{
		{name: "none", missing: []string{"get", "create", "update"}, readForbidden: true, acquireForbidden: true},
		{name: "get", granted: []string{"get"}, missing: []string{"create", "update"}, acquireForbidden: true},
		{name: "get update", granted: []string{"get", "update"}, missing: []string{"create"}, acquireForbidden: true},
		{name: "get create", granted: []string{"get", "create"}, missing: []string{"update"}, updateForbidden: true},
		{name: "get create update", granted: []string{"get", "create", "update"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := deadline(t)
			grant(t, env, ns, tc.granted)
			l := New(impersonating(t, env, ciUser), kind, ns, "reviews", time.Minute)

			err := l.Check(ctx)
			if diff := cmp.Diff(tc.missing, missingVerbs(err)); diff != "" {
				t.Errorf("Check: %v\nmissing verbs (-want +got):\n%s", err, diff)
			}
			forbidden(t, "Check", tc.missing != nil, err)
			if err != nil && !strings.Contains(err.Error(), "namespace "+ns) {
				t.Errorf("Check: %v, want the namespace named", err)
			}

			_, err = l.Read(ctx)
			forbidden(t, "Read", tc.readForbidden, err)
			rec := record("run", time.Now())
			_, err = l.Acquire(ctx, rec, false)
			forbidden(t, "Acquire", tc.acquireForbidden, err)
			if err != nil {
				return
			}
			forbidden(t, "Update", tc.updateForbidden, l.Update(ctx, rec))
			forbidden(t, "Release", tc.updateForbidden, l.Release(ctx, rec))
		})
	}
}

// Every call made with a cancelled context returns, with an error that says so, and writes
// nothing.
func TestCancelledContext(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	l, rec := New(env.Kube, kind, ns, "reviews", time.Minute), record("run", time.Now())
	if _, err := l.Acquire(deadline(t), rec, false); err != nil {
		t.Fatal(err)
	}
	held := getLease(t, env, ns, "reviews")
	fresh := New(env.Kube, kind, ns, "ratings", time.Minute) // no Lease yet: Acquire would create one

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Check", l.Check},
		{"Read", func(ctx context.Context) error { _, err := l.Read(ctx); return err }},
		{"Acquire", func(ctx context.Context) error { _, err := l.Acquire(ctx, rec, false); return err }},
		{"Acquire with takeOver", func(ctx context.Context) error {
			_, err := l.Acquire(ctx, record("other", time.Now()), true)
			return err
		}},
		{"Acquire of a new Lease", func(ctx context.Context) error { _, err := fresh.Acquire(ctx, rec, false); return err }},
		{"Update", func(ctx context.Context) error { return l.Update(ctx, rec) }},
		{"Release", func(ctx context.Context) error { return l.Release(ctx, rec) }},
	} {
		done := make(chan error, 1)
		go func() { done <- tc.call(ctx) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v, want an error that matches context.Canceled", tc.name, err)
			}
		case <-time.After(time.Minute): // generous: a call that honours ctx returns at once
			t.Fatalf("%s had not returned a minute after its context was cancelled", tc.name)
		}
	}
	if got := getLease(t, env, ns, "reviews"); got.ResourceVersion != held.ResourceVersion {
		t.Errorf("the Lease was written: %+v", got.Spec)
	}
	if got, err := fresh.Read(deadline(t)); err != nil || got.Record != nil {
		t.Errorf("a Lease was created: %+v, %v", got, err)
	}
}
