// Package meshsim is a small in-process HTTP data plane that behaves like an Istio mesh for
// meshroll's tests, benchmark and demo, where no Envoy can run. It watches one VirtualService
// through the API server and routes each request by the object as it is now (first matching
// HTTP route, destination drawn by weight, subset → version), serves it from an in-process
// backend whose error rate and latency the test sets, copies it to the route's mirrors, and
// exports Istio's standard request metrics for a real Prometheus to scrape. Requests reach a
// version over mutual TLS unless the test makes its traffic plaintext (SetPlaintext).
//
// Mirroring follows Envoy's request mirror policies as istiod writes them: a share
// (mirrorPercentage, 100% when absent) of the requests a route serves is also sent to the
// mirror's version, asynchronously, and its answer dropped: the client only ever sees the
// primary's. Envoy sends the copy with "-shadow" appended to its Host; the mirror's sidecar
// reports it like any inbound request (reporter="destination", destination_workload the
// mirror's), while the client's sidecar reports nothing about it (istio/istio#23496), so only
// destination-reporter queries see mirrored traffic.
//
// What it leaves out: DestinationRules (a subset is known when Options.Versions names it),
// destination hosts other than the VirtualService's own (only the subset counts, for mirrors
// too), retries, timeouts, fault injection, redirects, delegation, JWT claims and the
// VirtualService's top-level gateways.
package meshsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
)

// SubsetHeader is set on every response the front serves from a backend: the subset (version)
// that answered.
const SubsetHeader = "X-Meshsim-Subset"

// Version is one deployed version of the service: a DestinationRule subset and the workload
// (Deployment) behind it.
type Version struct {
	Subset   string // DestinationRule subset name, e.g. "v1"; also its pods' version label
	Workload string // destination_workload label, e.g. "reviews-v1"
}

// Options say which VirtualService to follow and which versions exist.
type Options struct {
	Istio          istioclient.Interface
	Namespace      string // of the VirtualService and the workloads
	VirtualService string // name; its hosts[0] is the service
	Versions       []Version
}

func (o Options) validate() error {
	var errs []error
	if o.Istio == nil {
		errs = append(errs, errors.New("Istio client is nil"))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("Namespace is empty"))
	}
	if o.VirtualService == "" {
		errs = append(errs, errors.New("VirtualService is empty"))
	}
	if len(o.Versions) == 0 {
		errs = append(errs, errors.New("no Versions"))
	}
	seen := map[string]bool{}
	for i, v := range o.Versions {
		switch {
		case v.Subset == "" || v.Workload == "":
			errs = append(errs, fmt.Errorf("Versions[%d] needs both Subset and Workload", i))
		case seen[v.Subset]:
			errs = append(errs, fmt.Errorf("Versions[%d]: subset %q given twice", i, v.Subset))
		}
		seen[v.Subset] = true
	}
	return errors.Join(errs...)
}

// Mesh is a running data plane. Its methods are safe for concurrent use.
type Mesh struct {
	opts     Options
	versions map[string]*backend // by subset; fixed after Start
	ordered  []*backend          // Options.Versions order, for requests without a subset
	table    atomic.Pointer[routeTable]
	metrics  *metrics

	front, metricsSrv *http.Server
	frontURL, metAddr string

	factory  istioinformers.SharedInformerFactory
	stop     chan struct{}
	served   sync.WaitGroup
	close    sync.Once
	closeErr error

	// Mirrored copies in flight: they outlive the request they copy, so Close cancels them
	// (shadowCtx) and waits. shadowMu orders every Add before Close's Wait.
	shadowCtx   context.Context
	stopShadows context.CancelFunc
	shadowMu    sync.Mutex
	shadowsShut bool
	shadows     sync.WaitGroup
}

// Start begins watching the VirtualService and serving the front and the metrics, each on a
// free port of 127.0.0.1. It returns once the first state of the VirtualService is in effect;
// a VirtualService that does not exist (yet) spreads requests evenly across the versions, as
// the Kubernetes Service alone would. ctx bounds the start-up; the mesh runs until Close.
func Start(ctx context.Context, o Options) (*Mesh, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("failed to start mesh: %w", err)
	}
	m := newMesh(o)
	if err := m.watch(ctx); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("failed to listen for the mesh front: %w", err), m.Close())
	}
	met, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("failed to listen for mesh metrics: %w", err), front.Close(), m.Close())
	}
	m.frontURL, m.metAddr = "http://"+front.Addr().String(), met.Addr().String()
	m.front = &http.Server{Handler: http.HandlerFunc(m.serveFront), ReadHeaderTimeout: 10 * time.Second}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.metrics.registry, promhttp.HandlerOpts{}))
	m.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.serve(m.front, front)
	m.serve(m.metricsSrv, met)
	return m, nil
}

// newMesh is a mesh that neither watches nor serves yet, routing as if its VirtualService did
// not exist.
func newMesh(o Options) *Mesh {
	m := &Mesh{
		opts:     o,
		versions: make(map[string]*backend, len(o.Versions)),
		metrics:  newMetrics(),
		stop:     make(chan struct{}),
	}
	m.shadowCtx, m.stopShadows = context.WithCancel(context.Background())
	for _, v := range o.Versions {
		b := &backend{version: v}
		b.behaviour.Store(&behaviour{})
		m.versions[v.Subset] = b
		m.ordered = append(m.ordered, b)
	}
	m.table.Store(compile(nil, o.Namespace, o.VirtualService))
	return m
}

func (m *Mesh) serve(srv *http.Server, l net.Listener) {
	m.served.Add(1)
	go func() {
		defer m.served.Done()
		_ = srv.Serve(l) // ErrServerClosed after Close
	}()
}

// watch starts an informer on the one VirtualService and waits until its handler has seen the
// initial list, so routing follows the object from the moment Start returns.
func (m *Mesh) watch(ctx context.Context) error {
	m.factory = istioinformers.NewSharedInformerFactoryWithOptions(m.opts.Istio, 0,
		istioinformers.WithNamespace(m.opts.Namespace),
		istioinformers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", m.opts.VirtualService).String()
		}),
	)
	informer := m.factory.Networking().V1().VirtualServices().Informer()
	update := func(obj any) {
		if vs, ok := obj.(*networkingv1.VirtualService); ok && vs.Name == m.opts.VirtualService {
			m.table.Store(compile(vs, m.opts.Namespace, m.opts.VirtualService))
		}
	}
	reg, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, obj any) { update(obj) },
		DeleteFunc: func(any) { m.table.Store(compile(nil, m.opts.Namespace, m.opts.VirtualService)) },
	})
	if err != nil {
		return fmt.Errorf("failed to watch virtualservice %s/%s: %w", m.opts.Namespace, m.opts.VirtualService, err)
	}
	m.factory.Start(m.stop)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return fmt.Errorf("failed to sync virtualservice %s/%s: %w", m.opts.Namespace, m.opts.VirtualService, context.Cause(ctx))
	}
	return nil
}

// Close stops serving and watching. It is safe to call more than once.
func (m *Mesh) Close() error {
	m.close.Do(func() {
		var errs []error
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, srv := range []*http.Server{m.front, m.metricsSrv} {
			if srv == nil {
				continue
			}
			// Requests in flight get a moment to finish their latency; then they are cut.
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, srv.Close())
			}
		}
		m.shadowMu.Lock()
		m.shadowsShut = true
		m.shadowMu.Unlock()
		m.stopShadows()
		m.shadows.Wait()
		close(m.stop)
		if m.factory != nil {
			m.factory.Shutdown()
		}
		m.served.Wait()
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// FrontURL is where requests go; they are routed as the client's sidecar would route them.
func (m *Mesh) FrontURL() string { return m.frontURL }

// MetricsAddr is the host:port that serves /metrics for Prometheus.
func (m *Mesh) MetricsAddr() string { return m.metAddr }

// SetBehaviour sets how a version's backend answers from now on: errorRate (0..1) of its
// responses are 503s, and every response waits latency first. It panics on a subset that is
// not among Options.Versions, which is a mistake in the calling test.
func (m *Mesh) SetBehaviour(subset string, errorRate float64, latency time.Duration) {
	b, ok := m.versions[subset]
	if !ok {
		panic(fmt.Sprintf("meshsim: SetBehaviour of subset %q, which is not among the mesh's versions", subset))
	}
	spread := 0.0
	if old := b.behaviour.Load(); old != nil {
		spread = old.spread // SetSpread's, kept
	}
	b.behaviour.Store(&behaviour{errorRate: min(max(errorRate, 0), 1), latency: max(latency, 0), spread: spread})
}

// SetSpread makes the version's latencies log-normal around the latency SetBehaviour gave
// (its median), with sigma the standard deviation of their logarithm (0.3: the p99 is about
// twice the median); 0 makes every request take exactly that latency again. Errors stay as
// set.
func (m *Mesh) SetSpread(subset string, sigma float64) {
	b, ok := m.versions[subset]
	if !ok {
		panic(fmt.Sprintf("meshsim: SetSpread of subset %q, which is not among the mesh's versions", subset))
	}
	bh := *b.behaviour.Load()
	bh.spread = max(sigma, 0)
	b.behaviour.Store(&bh)
}

// SetPlaintext says how the version's requests reach it from now on: over mutual TLS (false,
// the default: the mesh's clients have sidecars and the version's mTLS mode accepts them), or
// in plaintext (true: its PeerAuthentication is PERMISSIVE or DISABLE and its clients send
// plaintext, as a client outside the mesh does). Its proxy reports
// connection_security_policy="mutual_tls" or "none" accordingly (reporter="destination",
// mirrored copies included); the client's proxy reports "unknown" either way, as Istio's does.
// It panics on a subset that is not among Options.Versions, which is a mistake in the calling
// test.
func (m *Mesh) SetPlaintext(subset string, plaintext bool) {
	b, ok := m.versions[subset]
	if !ok {
		panic(fmt.Sprintf("meshsim: SetPlaintext of subset %q, which is not among the mesh's versions", subset))
	}
	b.plaintext.Store(plaintext)
}

// Requests is how many requests the version's backend has answered (successes and errors),
// mirrored copies included.
func (m *Mesh) Requests(subset string) int64 {
	if b, ok := m.versions[subset]; ok {
		return b.requests.Load()
	}
	return 0
}

// Mirrored is how many mirrored copies of requests have been sent to the version's backend,
// whether or not it has answered them yet.
func (m *Mesh) Mirrored(subset string) int64 {
	if b, ok := m.versions[subset]; ok {
		return b.mirrored.Load()
	}
	return 0
}

// Weights are the weights per subset that the data plane applies right now to a request that
// matches no header rule (GET / with no headers): those of the route such a request selects,
// with a single destination without weight, or all-zero weights, as 100 to the first
// destination. The key "" is a destination without subset (spread over all versions). Empty
// when no route would take the request.
func (m *Mesh) Weights() map[string]int {
	t := m.table.Load()
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Host = t.service.name
	if rt := t.selectRoute(r); rt != nil {
		return rt.weights()
	}
	return map[string]int{}
}

// Mirrors are the mirrors the data plane applies right now to a request that matches no header
// rule (as Weights): the percentage of such requests copied, per subset ("" for a mirror
// without subset; summed over several mirrors of one subset). Empty when that route has no
// mirror or no route would take the request.
func (m *Mesh) Mirrors() map[string]float64 {
	t := m.table.Load()
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Host = t.service.name
	out := map[string]float64{}
	if rt := t.selectRoute(r); rt != nil {
		for _, mr := range rt.mirrors {
			out[mr.subset] += mr.percent
		}
	}
	return out
}
