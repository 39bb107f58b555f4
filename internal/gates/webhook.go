package gates

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/meshroll/meshroll/internal/config"
)

// excerptBytes is how much of a failed call's response body the timeline keeps.
const excerptBytes = 200

// Sentinel errors of a failed call, for callers that branch on the kind of failure.
var (
	// ErrRejected means the webhook answered with a status other than 2xx.
	ErrRejected = errors.New("webhook rejected the call")
	// ErrNoAnswer means the webhook did not answer within its timeout.
	ErrNoAnswer = errors.New("no answer")
)

// Phase is the canary phase a payload carries, with Flagger's names for it.
type Phase string

// The phases Flagger sends to its webhooks (pkg/controller/scheduler_hooks.go, scheduler.go).
const (
	// PhaseProgressing goes to pre-rollout, rollout and confirm-promotion hooks.
	PhaseProgressing Phase = "Progressing"
	// PhaseWaiting goes to confirm-rollout hooks: Flagger's phase while it waits for approval.
	PhaseWaiting Phase = "Waiting"
	// PhaseSucceeded goes to post-rollout hooks after a promotion.
	PhaseSucceeded Phase = "Succeeded"
	// PhaseFailed goes to post-rollout hooks after a rollback. Flagger's rollback hooks get the
	// phase of the analysis they may stop (Progressing, Waiting): they are polled, and a 2xx
	// asks for a rollback; meshroll's are notifications that one happened, so Failed fits them.
	PhaseFailed Phase = "Failed"
)

// Rollout is what every payload says about the rollout: Flagger's name, namespace and checksum.
type Rollout struct {
	Name      string
	Namespace string
	Checksum  string
}

// NewRollout names a run's rollout the way Flagger names a canary. The name is the
// routing object's (the VirtualService or HTTPRoute): like a Flagger canary's, it stays the same from one release to the next,
// so a gate opened for it (flagger-loadtester's /gate/open keys on name and namespace) is
// found by every run. namespace is the resolved one (cfg.Namespace may be empty).
//
// The checksum is a hash of what the run moves traffic between, not of how: the namespace,
// the VirtualService, the stable and canary subsets, Services and Deployments, and revision,
// what the canary runs as the caller knows it (say, the canary Deployment's images; "" when
// unknown). As Flagger's (a hash of the deployed spec) it is the same for every run of one
// release, whatever the mode, weight, steps or timeouts, and differs between releases when
// revision does.
func NewRollout(cfg config.Config, namespace, revision string) Rollout {
	_, name := cfg.RouteObject()
	inputs, err := json.Marshal(struct {
		Namespace, VirtualService          string
		StableSubset, CanarySubset         string
		StableService, CanaryService       string
		StableDeployment, CanaryDeployment string
		Revision                           string
	}{namespace, name, cfg.StableSubset, cfg.CanarySubset, cfg.StableService,
		cfg.CanaryService, cfg.StableDeployment, cfg.CanaryDeployment, revision})
	if err != nil {
		panic(err) // strings always marshal
	}
	sum := sha256.Sum256(inputs)
	// Ten characters, like Flagger's ("85d557f47b" in its documentation).
	return Rollout{Name: name, Namespace: namespace, Checksum: hex.EncodeToString(sum[:5])}
}

// payload is Flagger's webhook request body (CanaryWebhookPayload).
type payload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     Phase             `json:"phase"`
	Checksum  string            `json:"checksum"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// Hooks calls the webhooks of one rollout.
type Hooks struct {
	hooks   []config.Webhook
	rollout Rollout
	client  *http.Client
}

// NewHooks returns the webhooks of a rollout, called in the order given. A nil client means
// the default: the system's certificate authorities (verification always on), the
// environment's proxy, and redirects followed only within the same host and scheme, so that
// the headers (secrets) never reach another server.
func NewHooks(hooks []config.Webhook, rollout Rollout, client *http.Client) *Hooks {
	if client == nil {
		client = defaultClient()
	}
	return &Hooks{hooks: slices.Clone(hooks), rollout: rollout, client: client}
}

func defaultClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: transport, CheckRedirect: sameOrigin}
}

// sameOrigin follows a redirect only to the same host and port without leaving HTTPS: Go's
// client forwards every header but Authorization and Cookie to wherever it is redirected.
// Otherwise the redirect is the answer, which is not 2xx.
func sameOrigin(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if req.URL.Host != first.Host || (first.Scheme == "https" && req.URL.Scheme != "https") {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// Has reports whether any webhook is of type typ.
func (h *Hooks) Has(typ config.WebhookType) bool {
	return slices.ContainsFunc(h.hooks, func(w config.Webhook) bool { return w.Type == typ })
}

// Call is one call of a webhook, as the timeline shows it.
type Call struct {
	Name    string
	Type    config.WebhookType
	URL     string // as given: app's writer redacts its credentials (config.Config.Secrets)
	Status  int    // the HTTP status; 0 when no answer came
	Latency time.Duration
	OK      bool   // answered 2xx
	Excerpt string // when not OK: the start of the response body, on one line
	// Err says why the call is not OK, naming the webhook and URL (never a header value):
	// ErrRejected, ErrNoAnswer, the context's cause, or what the connection failed with.
	Err error
}

// Run calls the webhooks of type typ one after the other in their order, each with phase,
// and returns a Call per webhook called. A 2xx answer is OK; there are no retries (Flagger's
// default). As in Flagger, the first webhook not OK ends a gating type's run (pre-rollout,
// rollout, the confirm types: one is enough to fail it, and a later hook may rely on an
// earlier one); the notifications (post-rollout, rollback) are all called whatever the
// others answered. Once ctx is done nothing more is sent: a Call carries the context's cause.
func (h *Hooks) Run(ctx context.Context, typ config.WebhookType, phase Phase) []Call {
	notification := typ == config.WebhookPostRollout || typ == config.WebhookRollback
	var calls []Call
	for _, w := range h.hooks {
		if w.Type != typ {
			continue
		}
		c := h.call(ctx, w, phase)
		calls = append(calls, c)
		if !c.OK && !notification {
			break
		}
	}
	return calls
}

// PhaseOf is the phase Flagger sends to webhooks of type typ: Waiting to confirm-rollout
// (Flagger's phase while it waits for approval), Failed to rollback (a notification that a
// rollback happened), Succeeded or Failed to post-rollout as the rollout ended, Progressing
// to the others.
func PhaseOf(typ config.WebhookType, succeeded bool) Phase {
	switch {
	case typ == config.WebhookConfirmRollout:
		return PhaseWaiting
	case typ == config.WebhookRollback, typ == config.WebhookPostRollout && !succeeded:
		return PhaseFailed
	case typ == config.WebhookPostRollout:
		return PhaseSucceeded
	}
	return PhaseProgressing
}

// call makes one POST of Flagger's payload to w, bounded by w's timeout.
func (h *Hooks) call(ctx context.Context, w config.Webhook, phase Phase) Call {
	c := Call{Name: w.Name, Type: w.Type, URL: w.URL}
	fail := func(err error) Call {
		c.Err = fmt.Errorf("failed to call %s webhook %q (%s): %w", w.Type, w.Name, c.URL, err)
		return c
	}
	if cause := context.Cause(ctx); cause != nil {
		return fail(cause) // nothing is sent
	}
	body, err := json.Marshal(payload{Name: h.rollout.Name, Namespace: h.rollout.Namespace,
		Phase: phase, Checksum: h.rollout.Checksum, Metadata: w.Metadata})
	if err != nil {
		return fail(err)
	}
	timeout := w.Timeout
	if timeout <= 0 { // config fills it in; a Webhook built otherwise gets Flagger's default too
		timeout = config.DefaultWebhookTimeout
	}
	callCtx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%w within %s", ErrNoAnswer, timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fail(errors.New("the URL is not valid")) // the message names the URL already
	}
	req.Header.Set("Content-Type", "application/json")
	for name, value := range w.Headers {
		if strings.EqualFold(name, "Host") {
			req.Host = value // Go sends req.Host, never a Host header
			continue
		}
		req.Header.Set(name, value)
	}

	start := time.Now()
	resp, err := h.client.Do(req)
	c.Latency = time.Since(start) // to the answer's headers: the body of a 2xx is not read
	if err != nil {
		return fail(transportError(callCtx, err))
	}
	defer resp.Body.Close()
	c.Status = resp.StatusCode
	c.OK = resp.StatusCode >= 200 && resp.StatusCode <= 299
	if c.OK {
		return c
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10)) // what arrived before an error
	c.Excerpt = excerpt(head)
	r := rejection{status: c.Status, excerpt: c.Excerpt}
	if loc := resp.Header.Get("Location"); loc != "" && c.Status >= 300 && c.Status <= 399 {
		r.location = loc // as given, like the webhook's URL: app's writer redacts what config knows
	}
	return fail(r)
}

// transportError says why a call got no (whole) answer: the context's cause when it ended
// (ErrNoAnswer for the call's own timeout), else the connection's error without the
// url.Error around it, which would print the method and the URL a second time.
func transportError(callCtx context.Context, err error) error {
	if cause := context.Cause(callCtx); cause != nil {
		return cause
	}
	if urlErr, ok := errors.AsType[*url.Error](err); ok {
		return urlErr.Err
	}
	return err
}

// rejection is a non-2xx answer.
type rejection struct {
	status            int
	excerpt, location string
}

func (r rejection) Error() string {
	msg := fmt.Sprintf("answered %d %s", r.status, http.StatusText(r.status))
	if r.location != "" {
		msg += " (a redirect to " + r.location + ", not followed: the headers are for the webhook's server only)"
	}
	if r.excerpt != "" {
		msg += ": " + r.excerpt
	}
	return msg
}

func (r rejection) Is(target error) bool { return target == ErrRejected }

// excerpt returns the start of a response body on one line: control characters become
// spaces, runs of white space one space, and the result is cut, on a character boundary,
// to about excerptBytes.
func excerpt(body []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(body), "\uFFFD"))
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= excerptBytes {
		return s
	}
	cut := excerptBytes
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
