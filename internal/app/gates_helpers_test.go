package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meshroll/meshroll/internal/report"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/testenv"
)

// The plumbing of the gates' end-to-end tests: a local server standing in for the webhooks
// and the load's target, a run whose output is read while it runs, and its result file.

// answer is how a stand-in webhook answers its n-th call (from 1): a status and a body.
type answer func(n int) (status int, body string)

// received is one request the stand-in got.
type received struct {
	method string
	header http.Header
	body   []byte
}

// hookPayload is Flagger's webhook body as a webhook decodes it.
type hookPayload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     string            `json:"phase"`
	Checksum  string            `json:"checksum"`
	Metadata  map[string]string `json:"metadata"`
}

func (r received) payload(t *testing.T) hookPayload {
	t.Helper()
	var p hookPayload
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("a webhook got a body that is not Flagger's payload: %v\n%s", err, r.body)
	}
	return p
}

// standIn is a loopback HTTP server that stands in for every webhook of a run (a path each)
// and for the built-in load's target. It records every request by path and answers with the
// path's answer, 200 without one.
type standIn struct {
	srv     *httptest.Server
	answers map[string]answer

	mu  sync.Mutex
	got map[string][]received
}

func newStandIn(t *testing.T, answers map[string]answer) *standIn {
	t.Helper()
	s := &standIn{answers: answers, got: map[string][]received{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *standIn) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.got[r.URL.Path] = append(s.got[r.URL.Path], received{method: r.Method, header: r.Header.Clone(), body: body})
	n := len(s.got[r.URL.Path]) // counted on arrival, before an answer that may wait
	s.mu.Unlock()
	status, text := http.StatusOK, ""
	if a := s.answers[r.URL.Path]; a != nil {
		status, text = a(n)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

func (s *standIn) url(path string) string { return s.srv.URL + path }

// calls is every request to path so far, in order.
func (s *standIn) calls(path string) []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got[path]...)
}

func (s *standIn) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got[path])
}

// webhooksVar is MESHROLL_WEBHOOKS for these webhooks, as JSON.
func webhooksVar(t *testing.T, hooks ...map[string]any) string {
	t.Helper()
	data, err := json.Marshal(hooks)
	if err != nil {
		t.Fatal(err)
	}
	return "MESHROLL_WEBHOOKS=" + string(data)
}

// startMain runs meshroll in-process in the background, with runMain's environment; the test
// reads its output while it runs, and wait returns it.
func startMain(t *testing.T, env *testenv.Env, ns string, vars ...string) *running {
	t.Helper()
	environ := mainEnviron(t, env, ns, vars...)
	ctx, cancel := context.WithCancel(t.Context())
	m := &running{cancel: cancel, done: make(chan struct{}), started: time.Now()}
	go func() {
		defer close(m.done)
		m.code = Main(ctx, []string{"meshroll"}, environ, &m.stdout, &m.stderr)
		m.took = time.Since(m.started)
	}()
	t.Cleanup(func() { cancel(); <-m.done })
	return m
}

// readResult reads result.json from a run's MESHROLL_OUTPUT_DIR.
func readResult(t *testing.T, dir string) rollout.Result {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, report.ResultFile))
	if err != nil {
		t.Fatal(err)
	}
	var res rollout.Result
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("%s does not decode: %v\n%s", report.ResultFile, err, data)
	}
	return res
}

// outputFile is one of the files in a run's MESHROLL_OUTPUT_DIR.
func outputFile(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// hookCalls describes the webhook calls of a result, one "type name status (poll n)" each.
func hookCalls(res rollout.Result) []string {
	out := make([]string, len(res.Webhooks))
	for i, c := range res.Webhooks {
		out[i] = fmt.Sprintf("%s %s %d", c.Type, c.Name, c.Status)
		if c.Polls > 0 {
			out[i] += fmt.Sprintf(" (poll %d)", c.Polls)
		}
	}
	return out
}
