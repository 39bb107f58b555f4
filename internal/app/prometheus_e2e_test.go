package app

// MESHROLL_PROMETHEUS_SERVICE end to end: meshroll reaches the rig's real Prometheus only
// through the real kube-apiserver's service proxy, with the cluster credentials it was given.
// kube-apiserver proxies only to endpoints that are not loopback, so Prometheus listens on an
// address testenv adds to this machine for the test (needs root):
//
//	MESHROLL_TEST_ASSETS=$HOME/.cache/meshroll/k8s-v1.37.2 CI=true go test -count=1 -run TestPrometheusService ./internal/app/

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshroll/meshroll/internal/testenv"
)

// A progression judged on a Prometheus inside the cluster, named by its Service and reached
// through the API server as the meshroll ServiceAccount of examples/rbac.yaml (its Role in
// Prometheus's namespace included), is promoted with every step judged. Without get on
// services/proxy, a Service that does not exist, or a Service without endpoints, it stops
// before the first write, saying so on the first line.
func TestPrometheusService(t *testing.T) {
	t.Parallel()
	host := testenv.ServiceAddress(t)
	r := newRig(t, rigOptions{rps: 50, prometheusHost: host})
	promNs := r.env.Namespace(t)
	// Istio's addon: Service prometheus, port 9090 named http.
	r.env.ExposeService(t, promNs, "prometheus", "http", 9090, strings.TrimPrefix(r.prom.URL, "http://"), "/-/ready")
	manifest, err := os.ReadFile(filepath.Join("..", "..", "examples", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	applyRBAC(t, r.env, string(manifest), r.ns, promNs) // its istio-system objects in promNs
	waitForNamedAccess(t, r, promNs, "prometheus", "", true)
	waitForNamedAccess(t, r, promNs, "prometheus:9090", "proxy", true)
	asMeshroll := "KUBECONFIG=" + serviceAccountKubeconfig(t, r.env, r.ns)
	viaService := func(svc string) []string {
		return []string{"MESHROLL_PROMETHEUS_URL=", "MESHROLL_PROMETHEUS_SERVICE=" + promNs + "/" + svc}
	}

	t.Run("judged through the proxy", func(t *testing.T) {
		got := r.start(t, append(viaService("prometheus:9090"), asMeshroll)...).wait(t)
		got.expect(t, 0, "promoted")
		if !judgedWindow.MatchString(got.stdout) {
			t.Errorf("no judged window in step 1:\n%s", got.stdout)
		}
		r.expectWeights(t, "v1 0, v2 100")
	})

	t.Run("the Service's only port", func(t *testing.T) {
		reset(t, r)
		got := r.start(t, append(viaService("prometheus"), asMeshroll, "MESHROLL_STEPS=100")...).wait(t)
		got.expect(t, 0, "promoted")
	})

	t.Run("without get on services/proxy", func(t *testing.T) {
		reset(t, r)
		role, err := r.env.Kube.RbacV1().Roles(promNs).Get(t.Context(), "meshroll-prometheus", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "services/proxy") })
		if _, err := r.env.Kube.RbacV1().Roles(promNs).Update(t.Context(), role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitForNamedAccess(t, r, promNs, "prometheus:9090", "proxy", false)
		expectStopped(t, r, r.start(t, append(viaService("prometheus:9090"), asMeshroll)...).wait(t), 2, "invalid",
			"meshroll: invalid: failed to check the analysis queries: forbidden: the credentials in use cannot get services/proxy named prometheus:9090 in namespace "+promNs+
				", which MESHROLL_PROMETHEUS_SERVICE="+promNs+"/prometheus:9090 needs to query Prometheus through the API server; "+
				"grant it in a Role in namespace "+promNs+" (see examples/rbac.yaml)")
	})

	t.Run("a Service that does not exist", func(t *testing.T) {
		expectStopped(t, r, r.start(t, viaService("nope:9090")...).wait(t), 2, "invalid",
			"meshroll: invalid: failed to check the analysis queries: MESHROLL_PROMETHEUS_SERVICE="+promNs+"/nope:9090: Service "+promNs+"/nope does not exist; "+
				"name Prometheus's Service as namespace/name:port (kubectl get services --all-namespaces | grep prometheus)")
	})

	t.Run("a port the Service does not have", func(t *testing.T) {
		expectStopped(t, r, r.start(t, viaService("prometheus:web")...).wait(t), 2, "invalid",
			"meshroll: invalid: failed to check the analysis queries: MESHROLL_PROMETHEUS_SERVICE="+promNs+"/prometheus:web: Service "+promNs+"/prometheus has no port web; name one of its ports: 9090 (http)")
	})

	t.Run("a Service without endpoints", func(t *testing.T) {
		idle := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "idle"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 9090}}}}
		if _, err := r.env.Kube.CoreV1().Services(promNs).Create(t.Context(), idle, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		expectStopped(t, r, r.start(t, viaService("idle:9090")...).wait(t), 1, "failed",
			"meshroll: failed: failed to check the analysis queries: Prometheus Service "+promNs+"/idle:9090 (through the Kubernetes API server's service proxy at "+strings.TrimSuffix(r.env.Config.Host, "/")+
				") cannot be reached after 3 attempts: the API server answered 503 Service Unavailable: no endpoints available for service \"idle\"")
	})
}

// expectStopped fails the test unless the run ended with code and result before writing
// anything, the first line of stderr being firstLine and the query coming later.
func expectStopped(t *testing.T, r *rig, got run, code int, result, firstLine string) {
	t.Helper()
	got.expect(t, code, result)
	lines := strings.Split(got.stderr, "\n")
	if lines[0] != firstLine {
		t.Errorf("first line of stderr:\n%s\nwant:\n%s\nstderr:\n%s", lines[0], firstLine, got.stderr)
	}
	if strings.Contains(lines[0], "istio_requests_total") {
		t.Errorf("a query on the first line:\n%s", lines[0])
	}
	r.expectWeights(t, "v1 100, v2 0")
}

// reset returns all traffic to v1 between two runs of the rig.
func reset(t *testing.T, r *rig) {
	t.Helper()
	got := r.start(t, "MESHROLL_MODE=rollback", "MESHROLL_STEPS=").wait(t)
	got.expect(t, 0, "rolled-back")
	r.expectWeights(t, "v1 100, v2 0")
}

// waitForNamedAccess waits until the authorizer says allowed to get the Service name of
// namespace ns (sub "proxy": through the proxy, name being name:port) for the meshroll
// ServiceAccount of the rig.
func waitForNamedAccess(t *testing.T, r *rig, ns, name, sub string, allowed bool) {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + r.ns + ":meshroll",
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "services", Subresource: sub, Name: name},
	}}
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := r.env.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return got.Status.Allowed == allowed, nil
	})
	if err != nil {
		t.Fatalf("the authorizer never said allowed=%v to get services/%s %s in %s: %v", allowed, sub, name, ns, err)
	}
}
