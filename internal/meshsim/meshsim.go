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
//
// It can follow a mesh HTTPRoute (Gateway API's GAMMA) instead (Options.HTTPRoute): the
// versions are then Services (Version.Service), and requests are routed as a mesh
// implementation of Gateway API routes them; httproute.go says how, and what it leaves out.
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
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
)

// SubsetHeader is set on every response the front serves from a backend: the subset (version)
// that answered.
const SubsetHeader = "X-Meshsim-Subset"

// Mesh is a running data plane. Its methods are safe for concurrent use.
type Mesh struct {
	opts     Options
	versions map[string]*backend // by subset; fixed after Start
	ordered  []*backend          // Options.Versions order, for requests without a subset
	subsets  map[string]string   // by Service (Version.Service), for an HTTPRoute's backendRefs
	table    atomic.Pointer[routeTable]
	metrics  *metrics

	front, metricsSrv *http.Server
	frontURL, metAddr string

	informers interface{ Shutdown() } // the factory of the routing object's informer
	stop      chan struct{}
	served    sync.WaitGroup
	close     sync.Once
	closeErr  error

	// Mirrored copies in flight: they outlive the request they copy, so Close cancels them
	// (shadowCtx) and waits. shadowMu orders every Add before Close's Wait.
	shadowCtx   context.Context
	stopShadows context.CancelFunc
	shadowMu    sync.Mutex
	shadowsShut bool
	shadows     sync.WaitGroup
}

// Start begins watching the VirtualService (or HTTPRoute) and serving the front and the
// metrics, each on a free port of 127.0.0.1. It returns once the first state of the object is
// in effect; an object that does not exist (yet) spreads requests evenly across the versions,
// as the Kubernetes Service alone would. ctx bounds the start-up; the mesh runs until Close.
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

// newMesh is a mesh that neither watches nor serves yet, routing as if its routing object did
// not exist.
func newMesh(o Options) *Mesh {
	m := &Mesh{
		opts:     o,
		versions: make(map[string]*backend, len(o.Versions)),
		subsets:  make(map[string]string, len(o.Versions)),
		metrics:  newMetrics(),
		stop:     make(chan struct{}),
	}
	m.shadowCtx, m.stopShadows = context.WithCancel(context.Background())
	for _, v := range o.Versions {
		b := &backend{version: v}
		b.behaviour.Store(&behaviour{})
		m.versions[v.Subset] = b
		m.ordered = append(m.ordered, b)
		if v.Service != "" {
			m.subsets[v.Service] = v.Subset
		}
	}
	if o.HTTPRoute != "" {
		m.table.Store(compileHTTPRoute(nil, o.Namespace, o.HTTPRoute, m.subsets))
	} else {
		m.table.Store(compile(nil, o.Namespace, o.VirtualService))
	}
	return m
}

func (m *Mesh) serve(srv *http.Server, l net.Listener) {
	m.served.Add(1)
	go func() {
		defer m.served.Done()
		_ = srv.Serve(l) // ErrServerClosed after Close
	}()
}

// watch starts an informer on the one routing object and waits until its handler has seen
// the initial list, so routing follows the object from the moment Start returns.
func (m *Mesh) watch(ctx context.Context) error {
	if m.opts.HTTPRoute != "" {
		return m.watchHTTPRoute(ctx)
	}
	factory := istioinformers.NewSharedInformerFactoryWithOptions(m.opts.Istio, 0,
		istioinformers.WithNamespace(m.opts.Namespace),
		istioinformers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", m.opts.VirtualService).String()
		}),
	)
	m.informers = factory
	informer := factory.Networking().V1().VirtualServices().Informer()
	return m.follow(ctx, "virtualservice "+m.opts.Namespace+"/"+m.opts.VirtualService, informer, factory.Start, func(obj any) *routeTable {
		vs, ok := obj.(*networkingv1.VirtualService)
		switch {
		case obj == nil:
			return compile(nil, m.opts.Namespace, m.opts.VirtualService)
		case ok && vs.Name == m.opts.VirtualService:
			return compile(vs, m.opts.Namespace, m.opts.VirtualService)
		}
		return nil
	})
}

// follow routes by table(obj) on every add and update of the informer's object, by table(nil)
// once it is deleted, and waits until the handler has seen the initial list. table returns
// nil for an object that is not the one followed.
func (m *Mesh) follow(ctx context.Context, what string, informer cache.SharedIndexInformer, start func(<-chan struct{}), table func(obj any) *routeTable) error {
	update := func(obj any) {
		if t := table(obj); t != nil {
			m.table.Store(t)
		}
	}
	reg, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, obj any) { update(obj) },
		DeleteFunc: func(any) { m.table.Store(table(nil)) },
	})
	if err != nil {
		return fmt.Errorf("failed to watch %s: %w", what, err)
	}
	start(m.stop)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return fmt.Errorf("failed to sync %s: %w", what, context.Cause(ctx))
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
		if m.informers != nil {
			m.informers.Shutdown()
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
// destination (an HTTPRoute's all-zero weights stay 0: its rule answers 500). The key "" is a
// destination without subset (spread over all versions); "!name" an HTTPRoute's backendRef
// that is no version's Service. Weights of an HTTPRoute are relative, as written. Empty when
// no route would take the request.
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
