package testenv_test

import (
	"context"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshroll/meshroll/internal/testenv"
)

// Not parallel: it runs before the parallel tests start the shared Env, so two control planes
// never start at once on a small machine.
func TestPrivateAPIServerRestart(t *testing.T) {
	p := testenv.StartPrivate(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	// A client from the kubeconfig file, as a meshroll binary would make one.
	cfg, err := clientcmd.BuildConfigFromFlags("", p.Kubeconfig)
	if err != nil {
		t.Fatalf("failed to load kubeconfig: %v", err)
	}
	fromFile, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("failed to create client from kubeconfig: %v", err)
	}

	// No namespace cleanup: the namespace goes with the private control plane.
	ns, err := p.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "restart-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("failed to create namespace: %v", err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "state"}, Data: map[string]string{"phase": "before"}}
	if _, err := p.Kube.CoreV1().ConfigMaps(ns.Name).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("failed to create configmap: %v", err)
	}
	p.Apply(t, ns.Name, testenv.DestinationRuleManifest("v1", "v2"))

	begin := time.Now()
	if err := p.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver stopped in %v", time.Since(begin).Round(time.Millisecond))
	if err := p.StopAPIServer(); err != nil {
		t.Errorf("second StopAPIServer: %v", err)
	}

	down, cancelDown := context.WithTimeout(ctx, 30*time.Second)
	_, err = p.Kube.CoreV1().ConfigMaps(ns.Name).Get(down, "state", metav1.GetOptions{})
	cancelDown()
	if !utilnet.IsConnectionRefused(err) {
		t.Errorf("get while kube-apiserver is stopped: err = %v, want connection refused", err)
	}
	if conn, err := net.DialTimeout("tcp", p.APIServerAddr(), 5*time.Second); err == nil {
		conn.Close()
		t.Errorf("%s accepts connections while kube-apiserver is stopped", p.APIServerAddr())
	}

	begin = time.Now()
	if err := p.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver started again and ready in %v", time.Since(begin).Round(time.Millisecond))
	if err := p.StartAPIServer(ctx); err != nil {
		t.Errorf("StartAPIServer on a running API server: %v", err)
	}

	// The same clients as before the stop: same address, port, serving CA and client CA.
	for name, kube := range map[string]kubernetes.Interface{"Env.Kube": p.Kube, "kubeconfig client": fromFile} {
		got, err := kube.CoreV1().ConfigMaps(ns.Name).Get(ctx, "state", metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s: failed to get configmap after restart: %v", name, err)
		} else if got.Data["phase"] != "before" {
			t.Errorf("%s: configmap data after restart = %v, want phase=before", name, got.Data)
		}
	}
	cm.Data["phase"] = "after"
	if _, err := p.Kube.CoreV1().ConfigMaps(ns.Name).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Errorf("failed to update configmap after restart: %v", err)
	}
	dr, err := p.Istio.NetworkingV1().DestinationRules(ns.Name).Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("failed to get DestinationRule after restart: %v", err)
	}
	if n := len(dr.Spec.GetSubsets()); n != 2 {
		t.Errorf("DestinationRule after restart has %d subsets, want 2", n)
	}
}
