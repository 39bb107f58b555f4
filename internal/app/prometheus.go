package app

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
)

// proxyOpenTimeout bounds opening the proxy to Prometheus: the permission checks and reading
// the Service, each an API request retried as every other.
const proxyOpenTimeout = 30 * time.Second

// prometheusProxy is the way to the Prometheus of MESHROLL_PROMETHEUS_SERVICE: through the
// Kubernetes API server's service proxy, with the cluster access's credentials and TLS. The
// analysis opens it before its first query: the permissions are checked then (one missing is
// a failed preflight naming it), and the Service is read (one that does not exist, or lacks
// the port, is a failed preflight too), so that a run that never analyses asks for none of it.
// The permission to the proxy is checked before the Service is read when the port is given,
// after when it is found there (the proxy is authorized by name:port).
func prometheusProxy(clients kube.Clients, svc config.ServicePort) (*analysis.Proxy, error) {
	p, err := clients.ServiceProxy(svc.Namespace, svc.Name, svc.Port)
	if err != nil {
		return nil, err
	}
	open := func(ctx context.Context) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, proxyOpenTimeout)
		defer cancel()
		needs := p.Needs()
		if err := checkAccess(ctx, clients, svc, needs); err != nil {
			return "", err
		}
		base, proxy, err := p.URL(ctx)
		switch {
		case errors.Is(err, kube.ErrServiceNotFound):
			return "", traffic.Preflightf(kube.ErrServiceNotFound, "MESHROLL_PROMETHEUS_SERVICE=%s: %s; name Prometheus's Service as namespace/name:port "+
				"(kubectl get services --all-namespaces | grep prometheus)", svc, strings.TrimPrefix(err.Error(), kube.ErrServiceNotFound.Error()+": "))
		case errors.Is(err, kube.ErrServicePort):
			return "", traffic.Preflightf(kube.ErrServicePort, "MESHROLL_PROMETHEUS_SERVICE=%s: %s", svc, strings.TrimPrefix(err.Error(), kube.ErrServicePort.Error()+": "))
		case apierrors.IsForbidden(err):
			// The API server would not say what the credentials may do; reading the Service
			// says it instead.
			return "", proxyForbidden(svc, p.Needs()[:1])
		case err != nil:
			return "", err
		case !slices.Contains(needs, proxy):
			if err := checkAccess(ctx, clients, svc, []kube.Permission{proxy}); err != nil {
				return "", err
			}
		}
		return base, nil
	}
	return &analysis.Proxy{Transport: p.Transport, Server: p.Server, Open: open}, nil
}

// checkAccess asks the API server whether the credentials may do each of needs, and says
// which they may not.
func checkAccess(ctx context.Context, clients kube.Clients, svc config.ServicePort, needs []kube.Permission) error {
	missing, err := kube.Missing(ctx, clients.Kube, needs)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return proxyForbidden(svc, missing)
	}
	return nil
}

// proxyForbidden is the failed preflight of credentials that may not use the proxy to
// Prometheus: what they lack, where to grant it.
func proxyForbidden(svc config.ServicePort, missing []kube.Permission) error {
	words := make([]string, len(missing))
	for i, n := range missing {
		words[i] = n.String()
	}
	return traffic.Preflightf(traffic.ErrForbidden, "forbidden: the credentials in use cannot %s, which MESHROLL_PROMETHEUS_SERVICE=%s needs "+
		"to query Prometheus through the API server; grant it in a Role in namespace %s (see examples/rbac.yaml)",
		strings.Join(words, ", nor "), svc, svc.Namespace)
}
