// Package kube turns the user's cluster settings into API clients.
package kube

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// Access says how to reach the cluster.
type Access struct {
	// Kubeconfig lists kubeconfig files, merged as kubectl merges KUBECONFIG. Empty means
	// $Home/.kube/config, or the in-cluster service account when that file does not exist.
	Kubeconfig []string
	// Data is a kubeconfig's contents (YAML, or base64 of it), as CI secrets hold it; when
	// set it is used instead of any file, and never written to disk.
	Data    string
	Home    string
	Context string // "" = the current context
	// Path is the PATH in which a kubeconfig user's credential plugin (exec) is looked up;
	// the plugin is then run by the path found there.
	Path      string
	UserAgent string
}

// Clients are the API clients meshroll uses.
type Clients struct {
	Kube  kubernetes.Interface
	Istio istioclient.Interface
	// Gateway is the Gateway API's client (HTTPRoutes, ReferenceGrants).
	Gateway gatewayclient.Interface
	// Namespace of the chosen context (or of the service account in a pod), "default" when none.
	Namespace string
	// Host is the API server's address, for messages.
	Host string
	// Config is the cluster access the clients were built from: what reaches the API server
	// beside them (ServiceProxy) uses the same server, credentials and TLS.
	Config *rest.Config
}

// kubeconfigBytes accepts a kubeconfig as YAML or as base64 of YAML.
func kubeconfigBytes(data string) []byte {
	if decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(data)); err == nil {
		return decoded
	}
	return []byte(data)
}

// requestTimeout bounds each API request, so that an unreachable server fails the run
// instead of hanging it.
const requestTimeout = 30 * time.Second

// Connect builds clients from a. It does not talk to the server, but it checks what would
// only fail at the first request: a credential plugin that is not installed, an auth-provider
// client-go no longer has, a certificate or token file that does not exist. Its errors say
// what is wrong and how to fix it, and never quote the kubeconfig.
func Connect(a Access) (Clients, error) {
	overrides := &clientcmd.ConfigOverrides{CurrentContext: a.Context}
	var loader clientcmd.ClientConfig
	var missing []string // KUBECONFIG files that do not exist, beside some that do
	if a.Data != "" {
		raw, err := clientcmd.Load(kubeconfigBytes(a.Data))
		if err != nil {
			// The parser's message may quote the contents: do not pass it on.
			return Clients{}, errors.New("MESHROLL_KUBECONFIG is not a kubeconfig (YAML, or base64 of YAML)")
		}
		loader = clientcmd.NewNonInteractiveClientConfig(*raw, a.Context, overrides, nil)
	} else {
		var err error
		if loader, missing, err = fileLoader(a, overrides); err != nil {
			return Clients{}, err
		}
	}
	cfg, err := loader.ClientConfig()
	raw, rawErr := loader.RawConfig()
	if err != nil {
		if rawErr == nil {
			if problem := kubeconfigProblem(a, raw, missing, err); problem != nil {
				return Clients{}, problem
			}
		}
		return Clients{}, fmt.Errorf("failed to load cluster access (KUBECONFIG, MESHROLL_KUBE_CONTEXT or the in-cluster service account): %w%s", err, missingNote(missing))
	}
	if rawErr == nil {
		if err := credentialProblem(a, raw, cfg); err != nil {
			return Clients{}, err
		}
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return Clients{}, fmt.Errorf("failed to read the namespace of the kube context: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = a.UserAgent
	cfg.Timeout = requestTimeout
	// No client-side rate limit: client-go's default (5 requests a second) would pace
	// meshroll's retries instead of its backoff, and near a budget's end it fails a request
	// it predicts would wait too long ("would exceed context deadline") instead of letting the
	// budget end. Against a busy writer a guarded write needs many quick attempts, and a
	// rollback must not lose its budget waiting on its own client. The API server's own
	// fairness (429) still applies, and is retried with backoff.
	cfg.QPS = -1
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Clients{}, fmt.Errorf("failed to create the Kubernetes client: %w", err)
	}
	istio, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return Clients{}, fmt.Errorf("failed to create the Istio client: %w", err)
	}
	gateway, err := gatewayclient.NewForConfig(cfg)
	if err != nil {
		return Clients{}, fmt.Errorf("failed to create the Gateway API client: %w", err)
	}
	return Clients{Kube: kube, Istio: istio, Gateway: gateway, Namespace: ns, Host: cfg.Host, Config: cfg}, nil
}
