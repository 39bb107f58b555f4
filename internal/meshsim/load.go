package meshsim

import (
	"context"
	"io"
	"maps"
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

// LoadResult is what the callers of a Load saw.
type LoadResult struct {
	Sent    int64            // requests sent
	Skipped int64            // requests not sent because every worker was busy
	Codes   map[int]int64    // responses by status code
	Subsets map[string]int64 // responses by the version that answered (SubsetHeader); "" for none
	Failed  int64            // requests that got no response while the load ran
	Cut     int64            // requests in flight when ctx ended, which it cancelled
}

// Errors is how many requests a caller saw fail: answered with a status other than 2xx, or
// not answered at all. Requests the end of the load cut are not errors.
func (r LoadResult) Errors() int64 {
	n := r.Failed
	for code, count := range r.Codes {
		if code < 200 || code > 299 {
			n += count
		}
	}
	return n
}

// tally counts a Load's outcomes from its workers.
type tally struct {
	mu sync.Mutex
	r  LoadResult
}

func (t *tally) add(f func(r *LoadResult)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&t.r)
}

func (t *tally) result() LoadResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.r
	r.Codes, r.Subsets = maps.Clone(r.Codes), maps.Clone(r.Subsets)
	return r
}

// Load sends GET / with header (may be nil) to the front at a steady rps until ctx is done,
// then waits for the requests in flight, which ctx cancels, and returns what its callers saw.
// A bounded pool of workers sends them: when every worker is busy (the backends are slower
// than rps allows for) a request is skipped, never queued, so the rate never exceeds rps.
// rps <= 0 sends nothing and returns at once.
func (m *Mesh) Load(ctx context.Context, rps int, header http.Header) LoadResult {
	t := &tally{r: LoadResult{Codes: map[int]int64{}, Subsets: map[string]int64{}}}
	if rps <= 0 {
		return t.result()
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
					send(ctx, client, url, header, t)
				}
			}
		})
	}

	tick := max(time.Second/time.Duration(rps), minLoadTick)
	perTick := max(int64(rps)*int64(tick)/int64(time.Second), 1)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	start, sent := time.Now(), int64(0)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return t.result()
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
					t.add(func(r *LoadResult) { r.Skipped++ })
				}
			}
		}
	}
}

func send(ctx context.Context, client *http.Client, url string, header http.Header, t *tally) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.add(func(r *LoadResult) { r.Failed++ })
		return
	}
	if header != nil {
		req.Header = header.Clone()
	}
	t.add(func(r *LoadResult) { r.Sent++ })
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	switch {
	case err != nil && ctx.Err() != nil:
		t.add(func(r *LoadResult) { r.Cut++ })
	case err != nil:
		t.add(func(r *LoadResult) { r.Failed++ })
	default:
		t.add(func(r *LoadResult) {
			r.Codes[resp.StatusCode]++
			r.Subsets[resp.Header.Get(SubsetHeader)]++
		})
	}
}
