package meshsim

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"
)

// backend is one version's in-process application.
type backend struct {
	version   Version
	behaviour atomic.Pointer[behaviour]
	requests  atomic.Int64 // answered, mirrored copies included
	mirrored  atomic.Int64 // mirrored copies sent to it
	plaintext atomic.Bool  // its requests arrive without mutual TLS (SetPlaintext)
}

type behaviour struct {
	errorRate float64
	latency   time.Duration
	// spread, when above 0, makes each request's latency log-normal around latency (its
	// median), with this σ of the logarithm: latencies spread over buckets as in life.
	spread float64
}

// draw is one request's latency.
func (bh *behaviour) draw() time.Duration {
	if bh.spread <= 0 || bh.latency <= 0 {
		return bh.latency
	}
	return time.Duration(float64(bh.latency) * math.Exp(bh.spread*rand.NormFloat64()))
}

// serveFront plays the caller's sidecar and the destination's: it routes the request by the
// VirtualService or HTTPRoute as it is now, serves it from the chosen version, mirrors it
// where the route says, and records what both proxies would report.
func (m *Mesh) serveFront(w http.ResponseWriter, r *http.Request) {
	t := m.table.Load()
	src := sample{reporter: reporterSource, namespace: m.opts.Namespace, service: t.service, app: t.app}

	var b *backend
	rt := t.selectRoute(r)
	if rt != nil {
		if d, ok := rt.pick(); ok && d.unknown == "" {
			b = m.backendFor(d.subset)
			if d.service != nil {
				src.service = *d.service
			}
		}
	}
	if b == nil {
		// Envoy answers a request without a route with 404 and one whose cluster (subset) does
		// not exist with 503, both flagged NR; no workload sees it, so only the source reports.
		// Gateway API answers a rule without a valid backend for the request with 500.
		switch {
		case rt == nil:
			src.code = http.StatusNotFound
		case rt.gateway:
			src.code = http.StatusInternalServerError
		default:
			src.code = http.StatusServiceUnavailable
		}
		src.flags = "NR"
		m.metrics.record(src)
		http.Error(w, "no route", src.code)
		return
	}

	// Envoy sends the copies as it forwards the request, only when the primary cluster exists.
	m.mirror(t, rt)
	dst := src
	dst.reporter, dst.version, dst.plaintext = reporterDestination, &b.version, b.plaintext.Load()
	dst.code, dst.flags, dst.elapsed = b.serve(r.Context())
	src.version, src.code, src.flags, src.elapsed = &b.version, dst.code, dst.flags, dst.elapsed
	m.metrics.record(dst)
	m.metrics.record(src)
	if dst.code == 0 {
		return // the client went away
	}
	w.Header().Set(SubsetHeader, b.version.Subset)
	w.WriteHeader(dst.code)
	_, _ = io.WriteString(w, b.version.Workload+"\n")
}

// backendFor is the backend of a destination's subset: any version for none, nil for a subset
// no version has (a cluster Istio would not have).
func (m *Mesh) backendFor(subset string) *backend {
	if subset == "" {
		return m.ordered[rand.IntN(len(m.ordered))]
	}
	return m.versions[subset]
}

// mirror sends a copy of a request the route serves to each of its mirrors, at the mirror's
// percentage, without waiting for it; the answer is dropped. Only the mirror's sidecar reports
// the copy (reporter destination, the mirror's workload); the client's reports nothing.
func (m *Mesh) mirror(t *routeTable, rt *route) {
	for _, mr := range rt.mirrors {
		if !mr.copied() {
			continue
		}
		b := m.backendFor(mr.subset)
		if b == nil {
			continue // no such cluster: the copy goes nowhere and nobody reports it
		}
		svc := t.service
		if mr.service != nil {
			svc = *mr.service
		}
		m.goShadow(func(ctx context.Context) {
			dst := sample{reporter: reporterDestination, namespace: m.opts.Namespace, service: svc, app: t.app, version: &b.version, plaintext: b.plaintext.Load()}
			dst.code, dst.flags, dst.elapsed = b.serve(ctx)
			if dst.code != 0 { // 0: cut by Close, not something a proxy would see
				m.metrics.record(dst)
			}
		}, &b.mirrored)
	}
}

// goShadow runs a mirrored copy in the background until it is answered or the mesh closes,
// and counts it in sent; once Close has begun, copies are no longer sent.
func (m *Mesh) goShadow(send func(context.Context), sent *atomic.Int64) {
	m.shadowMu.Lock()
	defer m.shadowMu.Unlock()
	if m.shadowsShut {
		return
	}
	sent.Add(1)
	m.shadows.Go(func() { send(m.shadowCtx) })
}

// serve plays the application: wait the latency, then answer 200 or, at the error rate, 503.
// The duration it reports is the latency it was set to, not the time the wait took: the
// metrics then say what the test configured however busy the machine is. A client that goes
// away during the wait is Envoy's "DC" with response code 0.
func (b *backend) serve(ctx context.Context) (code int, flags string, elapsed time.Duration) {
	bh := b.behaviour.Load()
	latency := bh.draw()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, "DC", latency
		}
	}
	b.requests.Add(1)
	code = http.StatusOK
	if bh.errorRate > 0 && rand.Float64() < bh.errorRate {
		code = http.StatusServiceUnavailable
	}
	return code, "-", latency
}
