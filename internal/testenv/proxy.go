package testenv

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// The addresses ServiceAddress hands out: TEST-NET-2 (RFC 5737), documentation only, never
// routed, and apart from TEST-NET-1, which some sandboxes number their own network from.
var serviceNet = netip.MustParsePrefix("198.51.100.0/24")

// serviceAddresses counts the addresses this process asked for, so that its parallel tests
// start from different ones.
var serviceAddresses atomic.Uint32

// ServiceAddress returns an IPv4 address of this machine that is not loopback, for a server of
// the test's that the test API server must reach through its service proxy: kube-apiserver
// proxies to a Service's endpoints only, and no endpoint may be a loopback address (the
// EndpointSlice is refused: "may not be in the loopback range").
//
// The address comes from TEST-NET-2 (198.51.100.0/24), is added to the loopback interface as a
// /32 for the test and removed when it ends: only this machine has it, and what is sent to it
// never leaves the machine. Tests in other processes take other addresses (the kernel refuses
// one that is already assigned, and the next is tried). It needs root (CAP_NET_ADMIN) and the
// ip command (Debian package iproute2); without them the test is skipped, or fails under
// CI=true.
func ServiceAddress(t testing.TB) string {
	t.Helper()
	SkipShort(t)
	ip, err := exec.LookPath("ip")
	if err != nil {
		skipOrFail(t, fmt.Errorf("%w: no ip command to add an address for the service proxy's endpoints (Debian package iproute2): %v", ErrAssetsMissing, err))
	}
	first := os.Getpid()*31 + int(serviceAddresses.Add(1))*7
	var last string
	for try := range 253 {
		addr := serviceNet.Addr().As4()
		addr[3] = byte(1 + (first+try)%253)
		host := netip.AddrFrom4(addr).String()
		out, err := exec.Command(ip, "address", "add", host+"/32", "dev", "lo").CombinedOutput()
		if err == nil {
			t.Cleanup(func() {
				if out, err := exec.Command(ip, "address", "del", host+"/32", "dev", "lo").CombinedOutput(); err != nil {
					t.Errorf("testenv: failed to remove %s from lo: %v: %s", host, err, out)
				}
			})
			return host
		}
		last = strings.TrimSpace(string(out))
		if !strings.Contains(last, "already assigned") && !strings.Contains(last, "File exists") {
			break // not a matter of which address: permissions, most likely
		}
	}
	skipOrFail(t, fmt.Errorf("%w: failed to add an address of %s to the loopback interface for the service proxy's endpoints "+
		"(as root, with the ip command): %s", ErrAssetsMissing, serviceNet, last))
	return ""
}

// ExposeService makes target (host:port, the host from ServiceAddress) the port named portName
// of the Service namespace/name in the cluster, as the controllers that do not run here would
// for a Deployment behind a Service: the Service (one TCP port, port, to target's port), a Pod
// with target's address as its IP (the API server proxies only to endpoints that are Pods of
// that IP), and an EndpointSlice with that Pod ready at target's port. It returns once the API
// server's service proxy answers 200 from target at path readyPath.
func (e *Env) ExposeService(t testing.TB, namespace, name, portName string, port int32, target, readyPath string) {
	t.Helper()
	host, rawPort, err := net.SplitHostPort(target)
	if err != nil {
		t.Fatalf("testenv: target %q: %v", target, err)
	}
	targetPort, err := strconv.Atoi(rawPort)
	if err != nil {
		t.Fatalf("testenv: target %q: %v", target, err)
	}
	ctx := t.Context()
	labels := map[string]string{"app": name}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.ServiceSpec{
		Selector: labels,
		Ports:    []corev1.ServicePort{{Name: portName, Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(targetPort))}},
	}}
	if _, err := e.Kube.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("testenv: failed to create Service %s/%s: %v", namespace, name, err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-0", Labels: labels}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: name, Image: name, Ports: []corev1.ContainerPort{{Name: portName, ContainerPort: int32(targetPort)}}}},
	}}
	pod, err = e.Kube.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("testenv: failed to create Pod %s/%s: %v", namespace, name+"-0", err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: host, PodIPs: []corev1.PodIP{{IP: host}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if pod, err = e.Kube.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("testenv: failed to set the status of Pod %s/%s: %v", namespace, pod.Name, err)
	}
	ready, protocol, slicePort := true, corev1.ProtocolTCP, int32(targetPort)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-testenv", Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "testenv"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: pod.Name, UID: pod.UID}}},
		Ports: []discoveryv1.EndpointPort{{Name: &portName, Protocol: &protocol, Port: &slicePort}},
	}
	if _, err := e.Kube.DiscoveryV1().EndpointSlices(namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatalf("testenv: failed to create EndpointSlice %s/%s: %v", namespace, slice.Name, err)
	}
	// The API server finds endpoints through its own watch of EndpointSlices: wait until it
	// has seen this one.
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, last = e.Kube.CoreV1().Services(namespace).ProxyGet("", name, strconv.Itoa(int(port)), readyPath, nil).DoRaw(attempt)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("testenv: the API server's service proxy to Service %s/%s never reached %s%s: %v (last: %v)", namespace, name, target, readyPath, err, last)
	}
}
