package meshsim

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

const (
	maxLoadWorkers = 256
	// Below 100 rps every tick sends one request; above, ticks stay 10ms apart and each sends
	// its share, which a loaded 2-core machine keeps up with far better than sub-ms tickers.
	minLoadTick = 10 * time.Millisecond
)

// Load sends GET / with header (may be nil) to the front at a steady rps until ctx is done,
// then waits for the requests in flight, which ctx cancels. A bounded pool of workers sends
// them: when every worker is busy (the backends are slower than rps allows for) a request is
// skipped, never queued, so the rate never exceeds rps. Errors are ignored. rps <= 0 sends
// nothing and returns at once.
func (m *Mesh) Load(ctx context.Context, rps int, header http.Header) {
	if rps <= 0 {
		return
	}
	workers := min(rps, maxLoadWorkers)
	transport := &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		MaxIdleConns:        workers,
		MaxIdleConnsPerHost: workers, // reuse connections: 2 (the default) exhausts ports
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	url := m.frontURL + "/"

	tokens := make(chan struct{}) // unbuffered: a send succeeds only when a worker is idle
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-tokens:
					send(ctx, client, url, header)
				}
			}
		})
	}
	defer wg.Wait()

	tick := max(time.Second/time.Duration(rps), minLoadTick)
	perTick := max(int64(rps)*int64(tick)/int64(time.Second), 1)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	start, sent := time.Now(), int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			// Send what the elapsed time allows; after a stall catch up by at most one tick
			// and drop the rest, so no burst goes beyond rps.
			due := int64(now.Sub(start).Seconds() * float64(rps))
			n := due - sent
			if n > 2*perTick {
				n = 2 * perTick
			}
			sent = due
			for range n {
				select {
				case tokens <- struct{}{}:
				default: // every worker busy: skip
				}
			}
		}
	}
}

func send(ctx context.Context, client *http.Client, url string, header http.Header) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	if header != nil {
		req.Header = header.Clone()
	}
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
