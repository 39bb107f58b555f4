package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// readyzPoll is how often StartAPIServer asks a restarted kube-apiserver whether it is ready.
const readyzPoll = 100 * time.Millisecond

// Private is a control plane of one test's own, for fault tests: unlike the shared Env (Get),
// which no test may stop, its kube-apiserver can be stopped and started again while meshroll
// talks to it. It is an Env (Config, Kubeconfig, clients, Namespace, Apply...) whose
// kube-apiserver keeps its address, port and certificates across restarts, so Config,
// Kubeconfig and every client made from them work again once it is back. etcd runs throughout
// and keeps the data.
//
// Its methods are safe for concurrent use, e.g. StopAPIServer from a goroutine that waits for
// a run to reach a hold.
type Private struct {
	*Env

	addr string // kube-apiserver's host:port

	mu      sync.Mutex
	down    bool // kube-apiserver stopped by StopAPIServer and not started since
	stopped bool // the whole control plane stopped
}

// StartPrivate starts etcd and kube-apiserver for this test alone, from the same assets and
// with the same CRDs as Start, and stops them when the test ends. Like Get it skips under
// `go test -short` and, outside CI, when the assets are missing; with CI=true a missing asset
// fails the test. It does not need Main. Each call costs a full control plane start (tens of
// seconds on 2 cores), so use it only in tests that stop the API server.
func StartPrivate(t testing.TB) *Private {
	t.Helper()
	SkipShort(t)
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	e, err := start(ctx, true)
	skipOrFail(t, err)
	s := e.env.ControlPlane.APIServer
	p := &Private{Env: e, addr: net.JoinHostPort(s.SecureServing.Address, s.SecureServing.Port)}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return p
}

// Stop stops kube-apiserver (if it is running) and etcd and removes temporary files. The test's
// cleanup calls it; calling it earlier is allowed, and calls after the first return its result.
func (p *Private) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	return p.Env.Stop()
}

// APIServerAddr is kube-apiserver's host:port, the same before and after a restart.
func (p *Private) APIServerAddr() string {
	return p.addr
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL if it has not exited after
// minutes) and returns once it has exited: from then on a connection to its port is refused.
// etcd keeps running with the data. Stopping a stopped API server does nothing.
func (p *Private) StopAPIServer() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.stopped:
		return errors.New("failed to stop kube-apiserver: the private control plane is stopped")
	case p.down:
		return nil
	}
	// Even on a failure (a timeout, after which envtest kills it) the process is going.
	p.down = true
	if err := p.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("failed to stop kube-apiserver at %s: %w", p.addr, err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the same address and port
// with the same serving certificate and client CA, and returns once /readyz answers OK. On a
// running API server it does nothing. ctx bounds the wait; without a deadline the process
// start is bounded by the package's control-plane timeout (minutes).
//
// The port is free while the API server is down, so another process could take it in the
// meantime: the start then fails (the error ends with kube-apiserver's log).
func (p *Private) StartAPIServer(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.stopped:
		return errors.New("failed to start kube-apiserver: the private control plane is stopped")
	case !p.down:
		return nil
	}
	timeout := controlPlaneTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
	}
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("failed to start kube-apiserver at %s: %w", p.addr, err)
	}
	if timeout <= 0 {
		return fmt.Errorf("failed to start kube-apiserver at %s: %w", p.addr, context.DeadlineExceeded)
	}

	s := p.env.ControlPlane.APIServer
	// envtest's APIServer.Start keeps SecureServing's address and port once set (on the first
	// start) and only makes certificates when CertDir has none; Authn keeps its client CA.
	s.StartTimeout = timeout
	if err := s.Start(); err != nil {
		return fmt.Errorf("failed to start kube-apiserver at %s: %w: %s", p.addr, err, tail(p.apiServerLog.Name()))
	}
	p.down = false
	ctx, cancel := context.WithTimeout(ctx, controlPlaneTimeout)
	defer cancel()
	return p.waitReady(ctx)
}

// waitReady polls /readyz through the Env's own client until it answers OK: the API server
// has finished its post-start hooks (the CRDs are served again).
func (p *Private) waitReady(ctx context.Context) error {
	client := p.Kube.Discovery().RESTClient()
	tick := time.NewTicker(readyzPoll)
	defer tick.Stop()
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := client.Get().AbsPath("/readyz").DoRaw(attempt)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("failed to wait for kube-apiserver at %s to be ready: %w (last: %v): %s", p.addr, context.Cause(ctx), last, tail(p.apiServerLog.Name()))
		case <-tick.C:
		}
	}
}
