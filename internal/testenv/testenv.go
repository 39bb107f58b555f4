// Package testenv starts a real control plane for tests and demos: etcd and kube-apiserver
// (through controller-runtime's envtest) with Istio's and the Gateway API's CRDs installed. No controllers run, so
// Deployment status is set by hand (SetDeploymentStatus) and deleted namespaces stay Terminating.
package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apiextensionsclientset "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

const (
	// AssetsEnv names the directory that holds the kube-apiserver and etcd binaries.
	AssetsEnv = "MESHROLL_TEST_ASSETS"
	// IstioCRDsEnv overrides the path of Istio's CRD file.
	IstioCRDsEnv = "MESHROLL_ISTIO_CRDS"
	// KubeContext is the name of the context in Env.Kubeconfig.
	KubeContext = "envtest"

	// A 2-core machine needs far longer than envtest's 20s default to start kube-apiserver.
	controlPlaneTimeout = 2 * time.Minute
	crdWaitTimeout      = time.Minute
)

// ErrAssetsMissing is returned by Start when the kube-apiserver or etcd binary cannot be found.
// Outside CI this skips tests instead of failing them.
var ErrAssetsMissing = errors.New("test assets missing")

// Env is a running control plane and clients for it, all authenticated as cluster-admin.
type Env struct {
	Config     *rest.Config
	Kubeconfig string // path of a kubeconfig file whose current context is "envtest"
	Kube       kubernetes.Interface
	Istio      istioclient.Interface
	Gateway    gatewayclient.Interface
	Dynamic    dynamic.Interface
	APIExt     apiextensionsclientset.Interface

	env          *envtest.Environment
	dir          string
	apiServerLog *os.File // kube-apiserver's output, nil unless asked for
	mapper       *restmapper.DeferredDiscoveryRESTMapper

	stopOnce sync.Once
	stopErr  error
}

// Start starts etcd and kube-apiserver from the assets directory ($MESHROLL_TEST_ASSETS, else
// $KUBEBUILDER_ASSETS) and installs Istio's CRDs. Call Stop when done.
func Start(ctx context.Context) (*Env, error) {
	return start(ctx, false)
}

// start is Start; with apiServerLog, kube-apiserver's output goes to a file in the Env's
// directory (tailed in restart errors) rather than nowhere.
func start(ctx context.Context, apiServerLog bool) (*Env, error) {
	assets, err := assetsDir()
	if err != nil {
		return nil, err
	}
	crds, err := istioCRDPath(ctx)
	if err != nil {
		return nil, err
	}
	gatewayCRDs, err := gatewayCRDPaths(ctx)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("failed to start test environment: %w", context.Cause(ctx))
	}

	e := &Env{}
	if e.dir, err = os.MkdirTemp("", "meshroll-testenv-"); err != nil {
		return nil, fmt.Errorf("failed to create temp dir: %w", err)
	}
	// A cert dir of our own: envtest removes a directory it created itself on every
	// APIServer.Stop, and a restarted kube-apiserver would then serve a certificate from a new
	// CA that the Env's rest.Config does not trust.
	apiServer := &envtest.APIServer{Path: filepath.Join(assets, "kube-apiserver"), CertDir: filepath.Join(e.dir, "kube-apiserver")}
	if err := os.Mkdir(apiServer.CertDir, 0o700); err != nil {
		return nil, errors.Join(fmt.Errorf("failed to create cert dir: %w", err), e.Stop())
	}
	if apiServerLog {
		if e.apiServerLog, err = os.Create(filepath.Join(e.dir, "kube-apiserver.log")); err != nil {
			return nil, errors.Join(fmt.Errorf("failed to create kube-apiserver log: %w", err), e.Stop())
		}
		apiServer.Out, apiServer.Err = e.apiServerLog, e.apiServerLog
	}
	e.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		// Explicit paths: envtest would otherwise prefer $KUBEBUILDER_ASSETS over BinaryAssetsDirectory.
		ControlPlane: envtest.ControlPlane{
			APIServer: apiServer,
			Etcd:      &envtest.Etcd{Path: filepath.Join(assets, "etcd")},
		},
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              append([]string{crds}, gatewayCRDs...),
			ErrorIfPathMissing: true,
			MaxTime:            crdWaitTimeout,
		},
		// Start copies this into CRDInstallOptions.ErrorIfPathMissing, so it must be set too.
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: controlPlaneTimeout,
		ControlPlaneStopTimeout:  controlPlaneTimeout,
	}
	if e.Config, err = e.env.Start(); err != nil {
		return nil, errors.Join(fmt.Errorf("failed to start control plane from %s: %w", assets, err), e.Stop())
	}
	if err := e.init(ctx); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	return e, nil
}

func (e *Env) init(ctx context.Context) error {
	var err error
	e.Config.QPS = -1 // no client-side rate limit, as meshroll's own clients (internal/kube)
	if e.Kube, err = kubernetes.NewForConfig(e.Config); err != nil {
		return fmt.Errorf("failed to create kubernetes client: %w", err)
	}
	if e.Istio, err = istioclient.NewForConfig(e.Config); err != nil {
		return fmt.Errorf("failed to create istio client: %w", err)
	}
	if e.Gateway, err = gatewayclient.NewForConfig(e.Config); err != nil {
		return fmt.Errorf("failed to create Gateway API client: %w", err)
	}
	if e.Dynamic, err = dynamic.NewForConfig(e.Config); err != nil {
		return fmt.Errorf("failed to create dynamic client: %w", err)
	}
	if e.APIExt, err = apiextensionsclientset.NewForConfig(e.Config); err != nil {
		return fmt.Errorf("failed to create apiextensions client: %w", err)
	}
	e.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Kube.Discovery()))

	kc, err := clientcmd.Load(e.env.KubeConfig)
	if err != nil {
		return fmt.Errorf("failed to load envtest kubeconfig: %w", err)
	}
	if kc.Contexts[KubeContext] == nil {
		return fmt.Errorf("failed to find context %q in envtest kubeconfig", KubeContext)
	}
	kc.CurrentContext = KubeContext
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, e.Kubeconfig); err != nil {
		return fmt.Errorf("failed to write kubeconfig: %w", err)
	}

	// kube-apiserver builds a CRD's validators on first write: ~2s for VirtualService on 2 cores.
	// Pay that here rather than in whichever test writes one first.
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "warm-up"}}
	vs.Spec.Hosts = []string{"warm-up"}
	if _, err := e.Istio.NetworkingV1().VirtualServices(metav1.NamespaceDefault).Create(ctx, vs, dryRun); err != nil {
		return fmt.Errorf("failed to dry-run create a VirtualService: %w", err)
	}
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "warm-up"}}
	dr.Spec.Host = "warm-up"
	if _, err := e.Istio.NetworkingV1().DestinationRules(metav1.NamespaceDefault).Create(ctx, dr, dryRun); err != nil {
		return fmt.Errorf("failed to dry-run create a DestinationRule: %w", err)
	}
	port := gatewayv1.PortNumber(80)
	hr := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "warm-up"}}
	hr.Spec.Rules = []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "warm-up", Port: &port}}}}}}
	if _, err := e.Gateway.GatewayV1().HTTPRoutes(metav1.NamespaceDefault).Create(ctx, hr, dryRun); err != nil {
		return fmt.Errorf("failed to dry-run create an HTTPRoute: %w", err)
	}
	return nil
}

// Stop stops kube-apiserver and etcd and removes temporary files. Calls after the first
// return its result.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var errs []error
		if e.env != nil {
			if err := e.env.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("failed to stop control plane: %w", err))
			}
		}
		if e.apiServerLog != nil {
			if err := e.apiServerLog.Close(); err != nil {
				errs = append(errs, fmt.Errorf("failed to close kube-apiserver log: %w", err))
			}
		}
		if e.dir != "" {
			if err := os.RemoveAll(e.dir); err != nil {
				errs = append(errs, fmt.Errorf("failed to remove %s: %w", e.dir, err))
			}
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}

func assetsDir() (string, error) {
	dir, from := os.Getenv(AssetsEnv), AssetsEnv
	if dir == "" {
		dir, from = os.Getenv("KUBEBUILDER_ASSETS"), "KUBEBUILDER_ASSETS"
	}
	if dir == "" {
		return "", fmt.Errorf("%w: set %s to a directory holding kube-apiserver and etcd (`make test` builds them)", ErrAssetsMissing, AssetsEnv)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		p := filepath.Join(dir, bin)
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w: no executable %s (from %s); run `make tools` or `make test` to build it", ErrAssetsMissing, p, from)
		}
	}
	return dir, nil
}

// istioCRDPath finds kubernetes/customresourcedefinitions.gen.yaml in the istio.io/api module
// this module requires, so the CRDs always match the client.
func istioCRDPath(ctx context.Context) (string, error) {
	if p := os.Getenv(IstioCRDsEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("failed to find Istio CRDs from %s: %w", IstioCRDsEnv, err)
		}
		return p, nil
	}
	dir, err := moduleDir(ctx, "istio.io/api")
	if err != nil {
		return "", fmt.Errorf("%w (set %s to the Istio CRD file instead)", err, IstioCRDsEnv)
	}
	p := filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("failed to find Istio CRDs (set %s to override): %w", IstioCRDsEnv, err)
	}
	return p, nil
}

// gatewayCRDs are the Gateway API kinds whose CRDs (standard channel) the tests need: the
// routes meshroll steers, the grants a cross-namespace backendRef needs, and the parents.
var gatewayCRDs = []string{"httproutes", "referencegrants", "gateways", "gatewayclasses"}

// gatewayCRDPaths finds the standard channel's CRDs in the sigs.k8s.io/gateway-api module
// this module requires, so the CRDs always match the types meshroll compiles against.
func gatewayCRDPaths(ctx context.Context) ([]string, error) {
	dir, err := moduleDir(ctx, "sigs.k8s.io/gateway-api")
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(gatewayCRDs))
	for i, kind := range gatewayCRDs {
		paths[i] = filepath.Join(dir, "config", "crd", "standard", "gateway.networking.k8s.io_"+kind+".yaml")
		if _, err := os.Stat(paths[i]); err != nil {
			return nil, fmt.Errorf("failed to find the Gateway API CRDs: %w", err)
		}
	}
	return paths, nil
}

// moduleDir is where the go command keeps the version of module this module requires,
// downloading it when it is not there yet.
func moduleDir(ctx context.Context, module string) (string, error) {
	dir, err := goCmd(ctx, "list", "-m", "-f", "{{.Dir}}", module)
	if err != nil || dir != "" {
		return dir, err
	}
	version, err := goCmd(ctx, "list", "-m", "-f", "{{.Version}}", module)
	if err != nil {
		return "", err
	}
	out, err := goCmd(ctx, "mod", "download", "-json", module+"@"+version)
	if err != nil {
		return "", err
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal([]byte(out), &mod); err != nil {
		return "", fmt.Errorf("failed to decode go mod download output: %w", err)
	}
	return mod.Dir, nil
}

func goCmd(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(exitErr.Stderr)))
		}
		return "", fmt.Errorf("failed to run go %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
