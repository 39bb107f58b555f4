package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Errors of ServiceProxy.URL that the input causes, for callers that branch on them.
var (
	ErrServiceNotFound = errors.New("Service not found")
	ErrServicePort     = errors.New("no such Service port")
)

// ServiceProxy is the way to an HTTP port of a Service inside the cluster through the API
// server's service proxy (/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/), with the
// credentials and TLS of the cluster access: a CI runner outside the cluster reaches what only
// resolves inside it (prometheus.istio-system) with what it already has.
type ServiceProxy struct {
	Namespace, Name string
	// Port is the Service's port number or name as given; "" stands for its only port.
	Port string
	// Transport carries requests to the API server with the cluster's credentials and TLS
	// (certificates, tokens, credential plugins, impersonation), as the clients do.
	Transport http.RoundTripper
	// Server is the API server's address, for messages.
	Server string

	base *url.URL // the API server's URL, with the path prefix of a proxy in front of it
	kube kubernetes.Interface
}

// ServiceProxy returns the way to port of the Service namespace/name through the API server
// the clients talk to. It does no I/O: URL reads the Service.
func (c Clients) ServiceProxy(namespace, name, port string) (*ServiceProxy, error) {
	if c.Config == nil {
		return nil, errors.New("failed to reach the Service through the API server: no cluster access")
	}
	transport, err := rest.TransportFor(c.Config)
	if err != nil {
		return nil, fmt.Errorf("failed to build the transport to the API server %s: %w", c.Host, err)
	}
	base, _, err := rest.DefaultServerUrlFor(c.Config)
	if err != nil {
		return nil, fmt.Errorf("failed to read the API server's address: %w", err)
	}
	return &ServiceProxy{Namespace: namespace, Name: name, Port: port, Transport: transport, Server: c.Host, base: base, kube: c.Kube}, nil
}

// Needs are the permissions URL and the requests through the proxy need, as far as they are
// known before the Service is read: reading the Service, and, when the port is given, the
// proxy to it (see ProxyPermission).
func (p *ServiceProxy) Needs() []Permission {
	needs := []Permission{{Verb: "get", Resource: "services", Namespace: p.Namespace, Name: p.Name}}
	if p.Port != "" {
		needs = append(needs, p.proxyPermission(p.Port))
	}
	return needs
}

// proxyPermission is what requests through the proxy to port need: get on services/proxy (GET
// requests; the API server authorizes each HTTP method as its verb), on the object the proxy's
// path names, name:port (e.g. prometheus:9090), which is what a Role's resourceNames must hold.
func (p *ServiceProxy) proxyPermission(port string) Permission {
	return Permission{Verb: "get", Resource: "services", Subresource: "proxy", Namespace: p.Namespace, Name: p.Name + ":" + port}
}

// URL reads the Service and returns the base URL of the proxy to its port (without a trailing
// slash) and the permission requests through it need: the port given, which the Service must
// have, or else its only one (by its number). A Service that does not exist wraps
// ErrServiceNotFound, a port it lacks ErrServicePort.
func (p *ServiceProxy) URL(ctx context.Context) (string, Permission, error) {
	var svc *corev1.Service
	err := Retry(ctx, func(ctx context.Context) error {
		var err error
		svc, err = p.kube.CoreV1().Services(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		return err
	})
	switch {
	case apierrors.IsNotFound(err):
		return "", Permission{}, fmt.Errorf("%w: Service %s/%s does not exist", ErrServiceNotFound, p.Namespace, p.Name)
	case err != nil:
		return "", Permission{}, fmt.Errorf("failed to read Service %s/%s: %w", p.Namespace, p.Name, err)
	}
	port, err := p.port(svc)
	if err != nil {
		return "", Permission{}, err
	}
	return p.base.JoinPath("api", "v1", "namespaces", p.Namespace, "services", p.Name+":"+port, "proxy").String(), p.proxyPermission(port), nil
}

// port finds p.Port among the Service's ports, or its only one, and returns how the proxy's
// path names it: as given, or the only port's number (the API server looks its name up).
func (p *ServiceProxy) port(svc *corev1.Service) (string, error) {
	ports := svc.Spec.Ports
	for _, sp := range ports {
		if p.Port == sp.Name && p.Port != "" {
			return sp.Name, nil
		}
		if p.Port == strconv.Itoa(int(sp.Port)) {
			return p.Port, nil
		}
	}
	switch {
	case p.Port == "" && len(ports) == 1:
		return strconv.Itoa(int(ports[0].Port)), nil
	case len(ports) == 0:
		return "", fmt.Errorf("%w: Service %s/%s has no ports", ErrServicePort, p.Namespace, p.Name)
	case p.Port == "":
		return "", fmt.Errorf("%w: Service %s/%s has %d ports (%s): name one", ErrServicePort, p.Namespace, p.Name, len(ports), describePorts(ports))
	}
	return "", fmt.Errorf("%w: Service %s/%s has no port %s; name one of its ports: %s", ErrServicePort, p.Namespace, p.Name, p.Port, describePorts(ports))
}

// describePorts lists a Service's ports for messages: "9090 (http), 9091 (grpc)".
func describePorts(ports []corev1.ServicePort) string {
	out := make([]string, len(ports))
	for i, sp := range ports {
		out[i] = strconv.Itoa(int(sp.Port))
		if sp.Name != "" {
			out[i] += " (" + sp.Name + ")"
		}
	}
	return strings.Join(out, ", ")
}
