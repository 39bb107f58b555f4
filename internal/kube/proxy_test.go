package kube

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A Service as a cluster holds it, with the ports given.
func service(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Ports: ports}}
}

// The proxy's URL goes to the API server of the kubeconfig (behind the path of a proxy in
// front of it, as Rancher's is), names the Service's port as the input did, finds its only one
// when none is given, and says what the Service has when the port given is not among them.
func TestServiceProxyURL(t *testing.T) {
	t.Parallel()
	kubeconfig := write(t, "kubeconfig", `apiVersion: v1
kind: Config
clusters:
- name: behind-a-proxy
  cluster: {server: "https://rancher.example/k8s/clusters/c-1"}
users:
- name: ci
  user: {token: not-printed}
contexts:
- name: ci
  context: {cluster: behind-a-proxy, user: ci}
current-context: ci
`)
	clients, err := Connect(Access{Kubeconfig: []string{kubeconfig}})
	if err != nil {
		t.Fatal(err)
	}
	http := corev1.ServicePort{Name: "http", Port: 9090}
	grpc := corev1.ServicePort{Name: "grpc", Port: 10901}
	clients.Kube = fake.NewClientset(
		service("istio-system", "prometheus", http),
		service("monitoring", "thanos", http, grpc),
		service("monitoring", "unnamed", corev1.ServicePort{Port: 80}),
		service("monitoring", "headless"),
	)
	const base = "https://rancher.example/k8s/clusters/c-1/api/v1/namespaces/"
	tests := []struct {
		name, ns, svc, port string
		want                string
		wantErr             error
		wantMsg             string
	}{
		{name: "port number", ns: "istio-system", svc: "prometheus", port: "9090", want: base + "istio-system/services/prometheus:9090/proxy"},
		{name: "port name", ns: "monitoring", svc: "thanos", port: "http", want: base + "monitoring/services/thanos:http/proxy"},
		{name: "the only port", ns: "istio-system", svc: "prometheus", want: base + "istio-system/services/prometheus:9090/proxy"},
		{name: "the only port, unnamed", ns: "monitoring", svc: "unnamed", want: base + "monitoring/services/unnamed:80/proxy"},
		{name: "no such Service", ns: "istio-system", svc: "prom", port: "9090", wantErr: ErrServiceNotFound,
			wantMsg: "Service not found: Service istio-system/prom does not exist"},
		{name: "no such port", ns: "istio-system", svc: "prometheus", port: "9091", wantErr: ErrServicePort,
			wantMsg: "no such Service port: Service istio-system/prometheus has no port 9091; name one of its ports: 9090 (http)"},
		{name: "no such port name", ns: "monitoring", svc: "thanos", port: "web", wantErr: ErrServicePort,
			wantMsg: "no such Service port: Service monitoring/thanos has no port web; name one of its ports: 9090 (http), 10901 (grpc)"},
		{name: "several ports, none named", ns: "monitoring", svc: "thanos", wantErr: ErrServicePort,
			wantMsg: "no such Service port: Service monitoring/thanos has 2 ports (9090 (http), 10901 (grpc)): name one"},
		{name: "no ports", ns: "monitoring", svc: "headless", wantErr: ErrServicePort,
			wantMsg: "no such Service port: Service monitoring/headless has no ports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := clients.ServiceProxy(tt.ns, tt.svc, tt.port)
			if err != nil {
				t.Fatal(err)
			}
			if p.Server != "https://rancher.example/k8s/clusters/c-1" || p.Transport == nil {
				t.Errorf("server %q, transport %v", p.Server, p.Transport)
			}
			got, need, err := p.URL(t.Context())
			if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantMsg != "" && (err == nil || err.Error() != tt.wantMsg)) {
				t.Errorf("URL() = %q, %v\nwant %q, %q", got, err, tt.want, tt.wantMsg)
			}
			// The API server authorizes the proxy by the name:port of its path.
			if _, id, _ := strings.Cut(strings.TrimSuffix(tt.want, "/proxy"), "/services/"); tt.want != "" && need.String() != "get services/proxy named "+id+" in namespace "+tt.ns {
				t.Errorf("URL() needs %q, want get services/proxy named %s", need, id)
			}
		})
	}
}

// The permissions the proxy needs name the Service, and the proxy its name:port as the proxy's
// path does, as a Role's resourceNames must; without a port, only reading the Service tells.
func TestServiceProxyNeeds(t *testing.T) {
	t.Parallel()
	for port, want := range map[string][]string{
		"9090": {"get services named prometheus in namespace istio-system", "get services/proxy named prometheus:9090 in namespace istio-system"},
		"http": {"get services named prometheus in namespace istio-system", "get services/proxy named prometheus:http in namespace istio-system"},
		"":     {"get services named prometheus in namespace istio-system"},
	} {
		p := &ServiceProxy{Namespace: "istio-system", Name: "prometheus", Port: port}
		var got []string
		for _, n := range p.Needs() {
			got = append(got, n.String())
		}
		if strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("port %q: Needs() = %q, want %q", port, got, want)
		}
	}
}

// A cancelled run reads nothing and says so.
func TestServiceProxyCancelled(t *testing.T) {
	t.Parallel()
	loopback := strings.ReplaceAll(clusters, "staging.example:6443", "127.0.0.1:1")
	clients, err := Connect(Access{Kubeconfig: []string{write(t, "contexts", contexts), write(t, "clusters", loopback)}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := clients.ServiceProxy("istio-system", "prometheus", "9090")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := p.URL(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("URL() with a cancelled context = %v, want context.Canceled", err)
	}
}
