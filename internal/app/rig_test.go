package app

import (
	"bytes"
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// The plumbing of the end-to-end tests: a meshroll run in progress, and recorders of what
// the API server reports for the VirtualService.

// liveBuffer is an output that a test reads while meshroll writes it.
type liveBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *liveBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *liveBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// running is a meshroll run in progress.
type running struct {
	stdout, stderr liveBuffer
	cancel         context.CancelFunc
	done           chan struct{}
	code           int
	started        time.Time
	took           time.Duration
}

// start runs meshroll in-process, as main.go does, until it ends or cancel is called.
func (r *rig) start(tb testing.TB, vars ...string) *running {
	tb.Helper()
	environ := r.environ(tb, vars...)
	ctx, cancel := context.WithCancel(tb.Context())
	m := &running{cancel: cancel, done: make(chan struct{}), started: time.Now()}
	go func() {
		defer close(m.done)
		m.code = Main(ctx, []string{"meshroll"}, environ, &m.stdout, &m.stderr)
		m.took = time.Since(m.started)
	}()
	tb.Cleanup(func() { cancel(); <-m.done })
	return m
}

// wait waits for the run to end and returns what it printed.
func (m *running) wait(tb testing.TB) run {
	tb.Helper()
	select {
	case <-m.done:
	case <-time.After(runTimeout + 30*time.Second):
		tb.Fatalf("meshroll still running after %v\nstdout:\n%s\nstderr:\n%s", time.Since(m.started), m.stdout.String(), m.stderr.String())
	}
	if _, bench := tb.(*testing.B); bench {
		// A benchmark's log is always printed: keep it short.
		tb.Logf("meshroll ran %v, exit %d", m.took.Round(time.Millisecond), m.code)
	} else {
		tb.Logf("meshroll ran %v, exit %d\nstdout:\n%s\nstderr:\n%s", m.took.Round(time.Millisecond), m.code, m.stdout.String(), m.stderr.String())
	}
	return run{code: m.code, stdout: m.stdout.String(), stderr: m.stderr.String()}
}

// waitForOutput waits until stdout matches re, and returns the first match.
func (m *running) waitForOutput(tb testing.TB, re *regexp.Regexp) string {
	tb.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if match := re.FindString(m.stdout.String()); match != "" {
			return match
		}
		select {
		case <-m.done:
			if match := re.FindString(m.stdout.String()); match != "" {
				return match
			}
			tb.Fatalf("meshroll ended (exit %d) before printing %q\nstdout:\n%s\nstderr:\n%s", m.code, re, m.stdout.String(), m.stderr.String())
		case <-tb.Context().Done():
			tb.Fatalf("the test ended before meshroll printed %q", re)
		case <-tick.C:
		}
	}
}

// weightWatch records every canary weight the API server reports for the VirtualService,
// through a watch, so that no write escapes it however short-lived.
type weightWatch struct {
	mu   sync.Mutex
	seen []int // successive distinct weights
	max  int
}

// watchCanary starts recording; onChange (may be nil) is called in the watch's goroutine
// with each new weight.
func (r *rig) watchCanary(tb testing.TB, onChange func(weight int)) *weightWatch {
	tb.Helper()
	w := &weightWatch{}
	r.watchReviews(tb, func(vs *networkingv1.VirtualService) { w.record(canaryWeight(vs), onChange) })
	return w
}

// watchReviews calls seen with the reviews VirtualService as it is, then, in a goroutine, with
// every version the API server reports through a watch (resumed from the last one seen, so
// that no write escapes it however short-lived), until the test ends.
func (r *rig) watchReviews(tb testing.TB, seen func(*networkingv1.VirtualService)) {
	tb.Helper()
	client := r.env.Istio.NetworkingV1().VirtualServices(r.ns)
	vs, err := client.Get(tb.Context(), "reviews", metav1.GetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	seen(vs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rv := vs.ResourceVersion
		for ctx.Err() == nil {
			watcher, err := client.Watch(ctx, metav1.ListOptions{
				FieldSelector:   fields.OneTermEqualSelector("metadata.name", "reviews").String(),
				ResourceVersion: rv,
			})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range watcher.ResultChan() {
				if vs, ok := ev.Object.(*networkingv1.VirtualService); ok {
					rv = vs.ResourceVersion
					seen(vs)
				}
			}
			watcher.Stop()
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
}

func (w *weightWatch) record(weight int, onChange func(int)) {
	w.mu.Lock()
	if n := len(w.seen); n > 0 && w.seen[n-1] == weight {
		w.mu.Unlock()
		return
	}
	w.seen = append(w.seen, weight)
	w.max = max(w.max, weight)
	w.mu.Unlock()
	if onChange != nil {
		onChange(weight)
	}
}

func (w *weightWatch) history() ([]int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.seen...), w.max
}
