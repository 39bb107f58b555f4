package gates

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/meshroll/meshroll/internal/config"
)

const (
	// loadRequestTimeout bounds one request, from dialling to the last byte of the body. A
	// request that takes longer counts as non-2xx.
	loadRequestTimeout = 10 * time.Second
	// loadStopGrace is how long Stop waits for the requests in flight to answer, so that a
	// hold's figures include them; after it, they are cut short and not counted.
	loadStopGrace = time.Second
	// loadCutWait bounds Stop's wait once requests in flight are cut (they return at once).
	loadCutWait = 100 * time.Millisecond
	// loadMaxInFlight caps the requests in flight (vegeta's workers, one connection each),
	// which keeps memory bounded when the target is slow: the achieved rate drops instead.
	loadMaxInFlight = 1000
)

// errLoadStopped refuses requests after the load was told to stop; such requests are never
// sent and never counted.
var errLoadStopped = errors.New("load stopped")

// LoadStats is what the built-in load generator saw of one hold, from the client's side: the
// figures of a step's log line and summary. Judging stays on the mesh's metrics.
type LoadStats struct {
	// Requests counts the requests that got a response or failed on their own; those that
	// Stop or the end of the context cut short are left out.
	Requests int64
	// Non2xx counts, of Requests, those without a 2xx response: other statuses, redirects
	// (never followed: the headers are secrets), connection errors, timeouts.
	Non2xx int64
	// P50 and P99 are the latencies of Requests (zero without requests).
	P50, P99 time.Duration
	// Rate is the achieved rate: Requests per second of the hold.
	Rate float64
}

// String is the figures in a line: "1,200 requests at 20.0/s, 3 non-2xx, p50 12ms, p99 48ms".
func (s LoadStats) String() string {
	noun := "requests"
	if s.Requests == 1 {
		noun = "request"
	}
	line := fmt.Sprintf("%s %s at %.1f/s, %s non-2xx", groupThousands(s.Requests), noun, s.Rate, groupThousands(s.Non2xx))
	if s.Requests > 0 {
		line += fmt.Sprintf(", p50 %s, p99 %s", formatLatency(s.P50), formatLatency(s.P99))
	}
	return line
}

// Load is a constant rate of GET requests running in the background; StartLoad starts it,
// Stop ends it and says what it saw. It prints nothing.
type Load struct {
	started   time.Time
	stopSend  sync.Once
	stoppedAt time.Time     // when sending stopped: Stop or the context's end
	stopping  chan struct{} // closed when no more requests may be sent
	cut       context.CancelFunc
	cutCtx    context.Context // cancelled to cut requests in flight short (Stop, or the context)
	done      chan struct{}   // closed when every result has been collected
	attacker  *vegeta.Attacker
	transport *http.Transport

	mu        sync.Mutex
	frozen    bool // Stop took its figures; later results are not counted
	requests  int64
	non2xx    int64
	latencies vegeta.LatencyMetrics // a t-digest: bounded memory however long the hold

	stopOnce sync.Once
	final    LoadStats
}

// StartLoad sends l.RPS GET requests a second to l.URL with l.Headers, until Stop is called
// or ctx ends. HTTPS certificates are verified; proxies come from the environment as for any
// Go client (loopback never goes through one). An empty URL, a rate below 1 or an ended ctx
// sends nothing. Config has validated l; header values are secrets and are never printed.
func StartLoad(ctx context.Context, l config.LoadGenerator) *Load {
	cutCtx, cut := context.WithCancel(ctx)
	ld := &Load{
		started:  time.Now(),
		stopping: make(chan struct{}),
		cut:      cut,
		cutCtx:   cutCtx,
		done:     make(chan struct{}),
	}
	if l.URL == "" || l.RPS < 1 || ctx.Err() != nil {
		ld.stopSending()
		close(ld.done)
		return ld
	}

	header := make(http.Header, len(l.Headers))
	for name, value := range l.Headers {
		header.Set(name, value) // a Host header sets the request's host (vegeta), as for curl
	}
	target := vegeta.Target{Method: http.MethodGet, URL: l.URL, Header: header}
	targeter := func(t *vegeta.Target) error {
		// cutCtx ends with ctx at once (a child context), so nothing passes once ctx has ended.
		if ld.cutCtx.Err() != nil || isClosed(ld.stopping) {
			return errLoadStopped
		}
		*t = target // vegeta copies the header into each request
		return nil
	}

	inFlight := min(max(l.RPS*int(loadRequestTimeout/time.Second), 1), loadMaxInFlight)
	ld.transport = http.DefaultTransport.(*http.Transport).Clone() // verifies certificates
	ld.transport.MaxIdleConns = inFlight
	ld.transport.MaxIdleConnsPerHost = inFlight
	client := &http.Client{
		Transport: deadlineTransport{base: ld.transport, parent: cutCtx},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // another host would get the secret headers
		},
	}
	ld.attacker = vegeta.NewAttacker(
		vegeta.Client(client),
		vegeta.MaxBody(0), // read and discard bodies: nothing is kept
		vegeta.Workers(uint64(min(vegeta.DefaultWorkers, inFlight))),
		vegeta.MaxWorkers(uint64(inFlight)),
	)
	pacer := stoppablePacer{
		ConstantPacer: vegeta.ConstantPacer{Freq: l.RPS, Per: time.Second},
		stop:          ld.stopping,
		ctxDone:       cutCtx.Done(),
	}
	results := ld.attacker.Attack(targeter, pacer, 0, "") // no name: no X-Vegeta-Attack header
	go ld.collect(results)
	go func() {
		select {
		case <-ctx.Done():
			ld.stopSending()
		case <-ld.stopping:
		}
	}()
	return ld
}

// Stop ends the load and returns its figures. It waits at most loadStopGrace for requests in
// flight to answer, then cuts them short, so it never holds the rollout up for long. Calling
// it again returns the same figures.
func (ld *Load) Stop() LoadStats {
	ld.stopOnce.Do(func() {
		ld.stopSending()
		if !waitClosed(ld.done, loadStopGrace) {
			ld.cut()
			waitClosed(ld.done, loadCutWait)
		}
		ld.cut()
		if ld.transport != nil {
			ld.transport.CloseIdleConnections()
		}
		ld.mu.Lock()
		defer ld.mu.Unlock()
		ld.frozen = true
		ld.final = ld.stats()
	})
	return ld.final
}

// stopSending lets no further request start; it records when sending stopped.
func (ld *Load) stopSending() {
	ld.stopSend.Do(func() {
		ld.stoppedAt = time.Now()
		close(ld.stopping)
		if ld.attacker != nil {
			ld.attacker.Stop()
		}
	})
}

// collect counts the results until vegeta closes the channel, which it does once every
// request it started has returned.
func (ld *Load) collect(results <-chan *vegeta.Result) {
	defer close(ld.done)
	for r := range results {
		never := r.Method == ""                           // refused by the targeter: never sent
		cutShort := r.Code == 0 && ld.cutCtx.Err() != nil // no response because we cut it
		if never || cutShort {
			continue
		}
		ld.mu.Lock()
		if !ld.frozen {
			ld.requests++
			if r.Code < 200 || r.Code > 299 {
				ld.non2xx++
			}
			ld.latencies.Add(r.Latency)
		}
		ld.mu.Unlock()
	}
}

// stats computes the figures; ld.mu is held.
func (ld *Load) stats() LoadStats {
	s := LoadStats{Requests: ld.requests, Non2xx: ld.non2xx}
	if s.Requests == 0 {
		return s
	}
	s.P50 = ld.latencies.Quantile(0.50)
	s.P99 = ld.latencies.Quantile(0.99)
	if held := ld.stoppedAt.Sub(ld.started).Seconds(); held > 0 {
		s.Rate = float64(s.Requests) / held
	}
	return s
}

// stoppablePacer is vegeta's constant rate whose wait for the next request ends as soon as
// the load stops. vegeta sleeps the wait Pace returns without watching for Stop, which would
// hold Stop up to a whole interval (a second at 1 request a second); so Pace waits itself.
type stoppablePacer struct {
	vegeta.ConstantPacer
	stop    <-chan struct{}
	ctxDone <-chan struct{}
}

// Pace waits until the next request is due and returns no further wait, or says stop.
func (p stoppablePacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	wait, stop := p.ConstantPacer.Pace(elapsed, hits)
	if stop {
		return 0, true
	}
	timer := time.NewTimer(max(wait, 0))
	defer timer.Stop()
	select {
	case <-p.stop:
		return 0, true
	case <-p.ctxDone:
		return 0, true
	case <-timer.C:
		return 0, false
	}
}

// deadlineTransport gives each request its deadline and ties it to the load's context, so that
// Stop and the end of the run cut requests in flight short. vegeta builds its requests without
// a context, and the client has no Timeout, so the request's own context is Background.
type deadlineTransport struct {
	base   http.RoundTripper
	parent context.Context
}

// RoundTrip sends req under a context that ends with the load or after loadRequestTimeout,
// whichever is first; the body's Close releases it.
func (t deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(t.parent, loadRequestTimeout)
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases a request's context once its body is closed (vegeta always closes it).
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitClosed waits up to d for ch to close and says whether it did.
func waitClosed(ch <-chan struct{}, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
		return false
	}
}

// groupThousands writes n with a comma between groups of three digits: 1,200.
func groupThousands(n int64) string {
	digits := strconv.FormatInt(n, 10)
	sign := ""
	if n < 0 {
		sign, digits = "-", digits[1:]
	}
	for i := len(digits) - 3; i > 0; i -= 3 {
		digits = digits[:i] + "," + digits[i:]
	}
	return sign + digits
}

// formatLatency writes a latency as a person reads it: 1.25s, 48ms, 0.4ms.
func formatLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds())
	default:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
}
