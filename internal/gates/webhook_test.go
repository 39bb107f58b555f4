package gates

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/meshroll/meshroll/internal/config"
)

// hang is a status that makes the hook server answer nothing until the caller gives up.
const hang = -1

// secret is a header value every test hook sends; no error may show it.
const secret = "s3cr3t-header-value"

var testRollout = Rollout{Name: "reviews", Namespace: "shop", Checksum: "85d557f47b"}

// ignoreMeasured leaves out of comparisons what depends on the machine (Latency) and the
// error, which tests check with errors.Is.
var ignoreMeasured = cmpopts.IgnoreFields(Call{}, "Latency", "Err")

// request is what the hook server received.
type request struct {
	Method, Path, Host, ContentType, Token string
	Body                                   map[string]any
}

// hookServer stands in for webhooks on loopback: respond answers the n-th request (from 1)
// to a path (a 3xx body is the Location); every request is recorded.
type hookServer struct {
	*httptest.Server
	respond func(path string, n int) (status int, body string)
	arrived chan struct{} // a signal per request, for a test that acts while one is in flight
	closing chan struct{} // closed when the test ends: no hanging handler outlives it
	mu      sync.Mutex
	got     []request
	n       map[string]int // requests per path
}

func newHookServer(t *testing.T, respond func(path string, n int) (int, string)) *hookServer {
	t.Helper()
	s := &hookServer{respond: respond, arrived: make(chan struct{}, 1), closing: make(chan struct{}), n: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.closing) }) // runs before Close, which waits for handlers
	return s
}

func (s *hookServer) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	s.mu.Lock()
	s.got = append(s.got, request{Method: r.Method, Path: r.URL.Path, Host: r.Host,
		ContentType: r.Header.Get("Content-Type"), Token: r.Header.Get("X-Token"), Body: body})
	s.n[r.URL.Path]++
	n := s.n[r.URL.Path]
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	status, text := s.respond(r.URL.Path, n)
	switch {
	case status == hang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return
	case status >= 300 && status < 400:
		w.Header().Set("Location", text)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

func (s *hookServer) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.n)
}

func (s *hookServer) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.got...)
}

// wh is a test webhook at path (a path on the hook server until onServer), sending the secret.
func wh(name string, typ config.WebhookType, path string) config.Webhook {
	return config.Webhook{Name: name, Type: typ, URL: path, Headers: map[string]string{"X-Token": secret}}
}

// onServer puts the webhooks' and calls' paths on srv.
func onServer(srv *hookServer, hooks []config.Webhook, calls []Call) {
	for i := range hooks {
		hooks[i].URL = srv.URL + hooks[i].URL
	}
	for i := range calls {
		calls[i].URL = srv.URL + calls[i].URL
	}
}

func alwaysOK(string, int) (int, string) { return http.StatusOK, "ok" }

// The payload is Flagger's, the headers are the webhook's, and a Host header is honoured.
func TestWebhookPayload(t *testing.T) {
	t.Parallel()
	srv := newHookServer(t, alwaysOK)
	load, smoke := wh("load", config.WebhookPreRollout, "/load"), wh("smoke", config.WebhookPreRollout, "/smoke")
	load.Metadata = map[string]string{"type": "cmd", "cmd": "hey -z 1m -q 10 -c 2 http://api:8080/health"}
	load.Headers["Host"] = "loadtester.test"
	hooks := []config.Webhook{load, smoke}
	onServer(srv, hooks, nil)

	NewHooks(hooks, testRollout, nil).Run(t.Context(), config.WebhookPreRollout, PhaseProgressing)

	payload := func(metadata map[string]any) map[string]any {
		p := map[string]any{"name": "reviews", "namespace": "shop", "phase": "Progressing", "checksum": "85d557f47b"}
		if metadata != nil { // absent, not null, when the webhook has none
			p["metadata"] = metadata
		}
		return p
	}
	want := []request{
		{Method: "POST", Path: "/load", Host: "loadtester.test", ContentType: "application/json", Token: secret,
			Body: payload(map[string]any{"type": "cmd", "cmd": "hey -z 1m -q 10 -c 2 http://api:8080/health"})},
		{Method: "POST", Path: "/smoke", Host: strings.TrimPrefix(srv.URL, "http://"), ContentType: "application/json", Token: secret,
			Body: payload(nil)},
	}
	if diff := cmp.Diff(want, srv.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestWebhookRun(t *testing.T) {
	t.Parallel()
	long := "line one\r\nline two\t\x1b[31mred\n" + strings.Repeat("x", 300)
	longExcerpt := "line one line two [31mred "
	longExcerpt += strings.Repeat("x", excerptBytes-len(longExcerpt)) + "…"
	const pre, rollout, rollback = config.WebhookPreRollout, config.WebhookRollout, config.WebhookRollback
	slow := wh("slow", rollout, "/slow")
	slow.Timeout = 20 * time.Millisecond
	tests := []struct {
		name   string
		typ    config.WebhookType
		hooks  []config.Webhook
		status map[string]int // the answer per path
		body   string
		want   []Call  // each called once; no other hook is
		errs   []error // what each call's Err is
	}{
		{name: "every hook of the type in order, no other type", typ: rollout,
			hooks:  []config.Webhook{wh("a", rollout, "/a"), wh("pre", pre, "/pre"), wh("b", rollout, "/b")},
			status: map[string]int{"/a": 200, "/b": 204},
			want:   []Call{{Name: "a", Type: rollout, URL: "/a", Status: 200, OK: true}, {Name: "b", Type: rollout, URL: "/b", Status: 204, OK: true}},
			errs:   []error{nil, nil}},
		{name: "a 500 is not OK, with the start of its body on one line", typ: pre,
			hooks: []config.Webhook{wh("smoke", pre, "/smoke")}, status: map[string]int{"/smoke": 500}, body: long,
			want: []Call{{Name: "smoke", Type: pre, URL: "/smoke", Status: 500, Excerpt: longExcerpt}}, errs: []error{ErrRejected}},
		{name: "an excerpt is cut on a character boundary", typ: pre,
			hooks: []config.Webhook{wh("euro", pre, "/euro")}, status: map[string]int{"/euro": 409}, body: strings.Repeat("€", 100),
			want: []Call{{Name: "euro", Type: pre, URL: "/euro", Status: 409, Excerpt: strings.Repeat("€", excerptBytes/3) + "…"}}, errs: []error{ErrRejected}},
		{name: "a gating type stops at the first failure", typ: pre,
			hooks:  []config.Webhook{wh("helm test", pre, "/fail"), wh("load", pre, "/load")},
			status: map[string]int{"/fail": 403, "/load": 200}, body: "Forbidden",
			want: []Call{{Name: "helm test", Type: pre, URL: "/fail", Status: 403, Excerpt: "Forbidden"}}, errs: []error{ErrRejected}},
		{name: "notifications are all sent whatever one answers", typ: rollback,
			hooks:  []config.Webhook{wh("chat", rollback, "/chat"), wh("pager", rollback, "/pager")},
			status: map[string]int{"/chat": 502, "/pager": 202},
			want:   []Call{{Name: "chat", Type: rollback, URL: "/chat", Status: 502}, {Name: "pager", Type: rollback, URL: "/pager", Status: 202, OK: true}},
			errs:   []error{ErrRejected, nil}},
		{name: "no answer within the timeout", typ: rollout, hooks: []config.Webhook{slow}, status: map[string]int{"/slow": hang},
			want: []Call{{Name: "slow", Type: rollout, URL: "/slow"}}, errs: []error{ErrNoAnswer}},
		{name: "no hook of the type", typ: config.WebhookPostRollout, hooks: []config.Webhook{wh("pre", pre, "/pre")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newHookServer(t, func(path string, _ int) (int, string) { return tt.status[path], tt.body })
			onServer(srv, tt.hooks, tt.want)
			got := NewHooks(tt.hooks, testRollout, nil).Run(t.Context(), tt.typ, PhaseProgressing)
			if diff := cmp.Diff(tt.want, got, ignoreMeasured); diff != "" {
				t.Errorf("Run (-want +got):\n%s", diff)
			}
			counts := map[string]int{}
			for i, c := range got {
				checkErr(t, c, tt.errs[i])
				counts[strings.TrimPrefix(c.URL, srv.URL)]++
			}
			served := srv.counts()
			for path, status := range tt.status {
				// A call that gives up before its request reached the server (a busy machine,
				// a short timeout) is still one call: the server saw it at most once.
				if status == hang && served[path] <= counts[path] {
					served[path] = counts[path]
				}
			}
			if diff := cmp.Diff(counts, served); diff != "" {
				t.Errorf("requests per path (-want +got):\n%s", diff)
			}
		})
	}
}

// checkErr checks that a call's error is want (nil when the call is OK), names the webhook
// and its URL, and shows no header value.
func checkErr(t *testing.T, c Call, want error) {
	t.Helper()
	if !errors.Is(c.Err, want) {
		t.Errorf("call %q: error %v, want %v", c.Name, c.Err, want)
		return
	}
	if c.Err == nil {
		return
	}
	if msg := c.Err.Error(); !strings.Contains(msg, `"`+c.Name+`"`) || !strings.Contains(msg, c.URL) || strings.Contains(msg, secret) {
		t.Errorf("call %q: error %q should name the webhook and its URL %s, and no header value", c.Name, msg, c.URL)
	}
}

func TestPhaseOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ       config.WebhookType
		succeeded bool
		want      Phase
	}{
		{config.WebhookPreRollout, false, PhaseProgressing},
		{config.WebhookRollout, false, PhaseProgressing},
		{config.WebhookConfirmRollout, false, PhaseWaiting},
		{config.WebhookConfirmPromotion, false, PhaseProgressing},
		{config.WebhookPostRollout, true, PhaseSucceeded},
		{config.WebhookPostRollout, false, PhaseFailed},
		{config.WebhookRollback, false, PhaseFailed},
	}
	for _, tt := range tests {
		if got := PhaseOf(tt.typ, tt.succeeded); got != tt.want {
			t.Errorf("PhaseOf(%s, succeeded %v) = %s, want %s", tt.typ, tt.succeeded, got, tt.want)
		}
	}
}

// signalled is the cause main.go cancels the run with on a signal: a context.Canceled that
// says what cancelled.
type signalled struct{}

func (signalled) Error() string        { return "cancelled by SIGTERM" }
func (signalled) Is(target error) bool { return target == context.Canceled }

// checkCancelled checks that err is the cancellation, says what cancelled and names the hook.
func checkCancelled(t *testing.T, err error, name string) {
	t.Helper()
	if msg := fmt.Sprint(err); !errors.Is(err, context.Canceled) || !strings.Contains(msg, "cancelled by SIGTERM") ||
		strings.Contains(msg, "context canceled") || !strings.Contains(msg, `"`+name+`"`) {
		t.Errorf("error %q: want context.Canceled, naming %q and saying what cancelled", msg, name)
	}
}

// With a cancelled context Run sends nothing: a gating type's first call, and every
// notification, carries the cause.
func TestWebhookRunCancelled(t *testing.T) {
	t.Parallel()
	srv := newHookServer(t, alwaysOK)
	hooks := []config.Webhook{wh("pre", config.WebhookPreRollout, "/pre"), wh("pre2", config.WebhookPreRollout, "/pre2"),
		wh("chat", config.WebhookPostRollout, "/chat"), wh("pager", config.WebhookPostRollout, "/pager")}
	onServer(srv, hooks, nil)
	h := NewHooks(hooks, testRollout, nil)
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(signalled{})

	calls := append(h.Run(ctx, config.WebhookPreRollout, PhaseProgressing), h.Run(ctx, config.WebhookPostRollout, PhaseSucceeded)...)
	want := []Call{{Name: "pre", Type: config.WebhookPreRollout, URL: srv.URL + "/pre"},
		{Name: "chat", Type: config.WebhookPostRollout, URL: srv.URL + "/chat"}, {Name: "pager", Type: config.WebhookPostRollout, URL: srv.URL + "/pager"}}
	if diff := cmp.Diff(want, calls, ignoreMeasured); diff != "" {
		t.Errorf("Run (-want +got):\n%s", diff)
	}
	for _, c := range calls {
		checkCancelled(t, c.Err, c.Name)
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d requests sent with a cancelled context", n)
	}
}

// The default client verifies certificates: a server with a certificate no authority the
// system trusts vouches for is refused before anything is sent; a client trusting it passes.
func TestWebhookUntrustedCertificate(t *testing.T) {
	t.Parallel()
	var served atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hooks := []config.Webhook{wh("tls", config.WebhookPreRollout, srv.URL+"/x")}

	refused := NewHooks(hooks, testRollout, nil).Run(t.Context(), config.WebhookPreRollout, PhaseProgressing)
	if len(refused) != 1 || refused[0].OK || refused[0].Status != 0 {
		t.Fatalf("with the default client: %+v, want one call refused", refused)
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](refused[0].Err); !ok {
		t.Errorf("error %v, want a certificate verification error", refused[0].Err)
	}
	if n := served.Load(); n != 0 {
		t.Errorf("the server answered %d requests, want none", n)
	}
	trusted := NewHooks(hooks, testRollout, srv.Client()).Run(t.Context(), config.WebhookPreRollout, PhaseProgressing)
	if len(trusted) != 1 || !trusted[0].OK {
		t.Errorf("with a client trusting the certificate: %+v, want OK", trusted)
	}
}

// The default client follows a redirect within the hook's server only: the headers are
// secrets, and Go's client would forward them to any host.
func TestWebhookRedirects(t *testing.T) {
	t.Parallel()
	elsewhere := newHookServer(t, alwaysOK)
	srv := newHookServer(t, func(path string, _ int) (int, string) {
		switch path {
		case "/away":
			return http.StatusTemporaryRedirect, elsewhere.URL + "/stolen"
		case "/here":
			return http.StatusTemporaryRedirect, "/landing"
		}
		return http.StatusOK, "ok"
	})
	hooks := []config.Webhook{wh("away", config.WebhookRollout, "/away"), wh("here", config.WebhookPostRollout, "/here")}
	onServer(srv, hooks, nil)
	h := NewHooks(hooks, testRollout, nil)

	away := h.Run(t.Context(), config.WebhookRollout, PhaseProgressing)
	want := []Call{{Name: "away", Type: config.WebhookRollout, URL: srv.URL + "/away", Status: 307, Excerpt: elsewhere.URL + "/stolen"}}
	if diff := cmp.Diff(want, away, ignoreMeasured); diff != "" {
		t.Errorf("redirect to another server (-want +got):\n%s", diff)
	}
	if len(away) == 1 && !strings.Contains(fmt.Sprint(away[0].Err), "not followed") {
		t.Errorf("error %v should say the redirect was not followed", away[0].Err)
	}
	if n := len(elsewhere.requests()); n != 0 {
		t.Errorf("the other server got %d requests, want none", n)
	}
	if here := h.Run(t.Context(), config.WebhookPostRollout, PhaseSucceeded); len(here) != 1 || !here[0].OK {
		t.Errorf("redirect within the server: %+v, want OK", here)
	}
	if got := srv.requests()[2:]; len(got) != 1 || got[0].Path != "/landing" || got[0].Token != secret || got[0].Body["name"] != "reviews" {
		t.Errorf("after the redirect within the server: %+v, want the payload and headers at /landing", got)
	}
}

// A connection error names the hook by its URL as given, once: not by the url.Error Go's
// client makes, which would repeat it. Its credentials are config's secrets (config's tests
// hold that), which app's writer redacts from every line.
func TestWebhookConnectionError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close() // nothing listens there any more: the connection is refused
	hookURL := "http://ci:pa55w0rd@" + addr + "/x?token=t0k3n"
	hooks := []config.Webhook{wh("gone", config.WebhookPostRollout, hookURL)}

	calls := NewHooks(hooks, testRollout, nil).Run(t.Context(), config.WebhookPostRollout, PhaseSucceeded)
	want := []Call{{Name: "gone", Type: config.WebhookPostRollout, URL: hookURL}}
	if diff := cmp.Diff(want, calls, ignoreMeasured); diff != "" {
		t.Fatalf("Run (-want +got):\n%s", diff)
	}
	checkErr(t, calls[0], syscall.ECONNREFUSED)
	if msg := calls[0].Err.Error(); strings.Count(msg, hookURL) != 1 || strings.Contains(msg, "Post ") {
		t.Errorf("error %q should name the URL once, without Go's url.Error around the cause", msg)
	}
}

func TestWebhookRollout(t *testing.T) {
	t.Parallel()
	base := config.Config{Mode: config.ModeProgress, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2",
		StableDeployment: "reviews-v1", CanaryDeployment: "reviews-v2", Steps: []int{10, 50}, StepDuration: time.Minute}
	r := NewRollout(base, "shop", "reviews:2.1")
	// The checksum is a contract with the user's hooks: it must not change between versions.
	if diff := cmp.Diff(Rollout{Name: "reviews", Namespace: "shop", Checksum: "edff1b27a3"}, r); diff != "" {
		t.Errorf("NewRollout (-want +got):\n%s", diff)
	}
	promote := base
	promote.Mode, promote.Steps, promote.Weight, promote.Timeout = config.ModePromote, nil, 100, time.Hour
	if got := NewRollout(promote, "shop", "reviews:2.1"); got != r {
		t.Errorf("another run of the release: %+v, want %+v", got, r)
	}
	canary, subset := base, base
	canary.CanaryDeployment, subset.CanarySubset = "reviews-v3", "v3"
	for name, other := range map[string]Rollout{
		"another revision": NewRollout(base, "shop", "reviews:2.2"), "another namespace": NewRollout(base, "shop-staging", "reviews:2.1"),
		"another canary Deployment": NewRollout(canary, "shop", "reviews:2.1"), "another canary subset": NewRollout(subset, "shop", "reviews:2.1"),
	} {
		if other.Checksum == r.Checksum {
			t.Errorf("%s: the same checksum %s", name, r.Checksum)
		}
	}
}
