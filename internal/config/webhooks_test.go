package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// flaggerHooks are the webhooks of a Flagger Canary as Flagger's documentation writes them,
// pasted as they are.
const flaggerHooks = `
- name: acceptance-test
  type: pre-rollout
  url: http://flagger-loadtester.test/
  timeout: 30s
  metadata:
    type: bash
    cmd: "curl -sd 'test' http://podinfo-canary:9898/token | grep token"
- name: load-test
  url: http://flagger-loadtester.test/
  timeout: 5s
  metadata:
    cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"
`

func TestWebhooks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want []Webhook
	}{
		{name: "Flagger's hooks pasted as they are, the type filled in", text: flaggerHooks, want: []Webhook{
			{Name: "acceptance-test", Type: WebhookPreRollout, URL: "http://flagger-loadtester.test/", Timeout: 30 * time.Second,
				Metadata: map[string]string{"type": "bash", "cmd": "curl -sd 'test' http://podinfo-canary:9898/token | grep token"}},
			{Name: "load-test", Type: WebhookRollout, URL: "http://flagger-loadtester.test/", Timeout: 5 * time.Second,
				Metadata: map[string]string{"cmd": "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}},
		}},
		{name: "JSON, the timeout filled in", text: `[{"name": "approve", "type": "confirm-promotion", "url": "https://gate.example/approve"}]`,
			want: []Webhook{{Name: "approve", Type: WebhookConfirmPromotion, URL: "https://gate.example/approve", Timeout: DefaultWebhookTimeout}}},
		{name: "every type, headers, spaces trimmed, an empty type and timeout are defaults", text: `
- {name: " smoke ", type: pre-rollout, url: " https://hooks.example/smoke "}
- {name: gate, type: confirm-rollout, url: "https://hooks.example/gate", timeout: 1m30s}
- {name: judge, type: "", timeout: "", url: "https://hooks.example/judge", headers: {Authorization: "Bearer tok-0123", X-Empty: ""}}
- {name: approve, type: confirm-promotion, url: "https://hooks.example/approve"}
- {name: chat, type: post-rollout, url: "https://hooks.example/chat", metadata: {}}
- {name: pager, type: rollback, url: "http://[::1]:8080/pager", metadata: null, headers: null}`,
			want: []Webhook{
				{Name: "smoke", Type: WebhookPreRollout, URL: "https://hooks.example/smoke", Timeout: DefaultWebhookTimeout},
				{Name: "gate", Type: WebhookConfirmRollout, URL: "https://hooks.example/gate", Timeout: 90 * time.Second},
				{Name: "judge", Type: WebhookRollout, URL: "https://hooks.example/judge", Timeout: DefaultWebhookTimeout,
					Headers: map[string]string{"Authorization": "Bearer tok-0123", "X-Empty": ""}},
				{Name: "approve", Type: WebhookConfirmPromotion, URL: "https://hooks.example/approve", Timeout: DefaultWebhookTimeout},
				{Name: "chat", Type: WebhookPostRollout, URL: "https://hooks.example/chat", Timeout: DefaultWebhookTimeout, Metadata: map[string]string{}},
				{Name: "pager", Type: WebhookRollback, URL: "http://[::1]:8080/pager", Timeout: DefaultWebhookTimeout},
			}},
		{name: "an empty list", text: "[]"},
		{name: "null", text: "null"},
		{name: "blank", text: " \n "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(with("MESHROLL_WEBHOOKS=" + tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Webhooks); diff != "" {
				t.Errorf("Webhooks (-want +got):\n%s", diff)
			}
		})
	}
}

// Credentials every invalid list below may hold: no message may show one.
var webhookCredentials = []string{"s3cr3t-value", "pa55w0rd", "t0k3n-in-query"}

func TestWebhooksInvalid(t *testing.T) {
	t.Parallel()
	const example = `e.g. [{name: load-test, type: rollout, url: "http://flagger-loadtester.test/", metadata: {cmd: "hey -z 1m -q 10 http://reviews.shop:9080/"}}]`
	const types = "use one of pre-rollout, rollout, confirm-rollout, confirm-promotion, post-rollout, rollback, or leave it out for rollout"
	const address = "give the webhook's address, e.g. http://flagger-loadtester.test/"
	const duration = "use a duration with a unit (s, m or h) such as 30s, or leave it out for 10s"
	tests := []struct {
		name string
		text string
		want []string // every problem, after "MESHROLL_WEBHOOKS: "
	}{
		{"not YAML", `[{name: a, headers: {X-Key: s3cr3t-value}`, []string{
			"not valid YAML or JSON (yaml: line 1: did not find expected ',' or '}'); write a list of webhooks, " + example}},
		{"a key twice", "[{name: a, url: 'http://h/', headers: {X-Key: s3cr3t-value, X-Key: other}}]", []string{
			`not valid YAML or JSON (yaml: unmarshal errors: line 1: key "X-Key" already set in map); write a list of webhooks, ` + example}},
		{"one webhook, not a list", "{name: a, url: 'http://h/'}", []string{
			"must be a list of webhooks with Flagger's fields (name, type, url, timeout, metadata) and headers, " + example}},
		{"a Flagger Canary's webhooks: key pasted too", "webhooks:\n  - name: a\n    url: http://h/", []string{
			"must be a list of webhooks with Flagger's fields (name, type, url, timeout, metadata) and headers, " + example +
				"; give the list under a Flagger Canary's webhooks: key, without the key"}},
		{"a string", "http://flagger-loadtester.test/", []string{
			"must be a list of webhooks with Flagger's fields (name, type, url, timeout, metadata) and headers, " + example}},
		{"an entry that is not a mapping", "[http://flagger-loadtester.test/]", []string{
			`webhook 1: must be a mapping of name, type, url, timeout, metadata, headers, e.g. {name: smoke, type: pre-rollout, url: "http://flagger-loadtester.test/"}`}},
		{"names missing, repeated, not a string", "[{url: 'http://h/'}, {name: ' ', url: 'http://h/'}, {name: a, url: 'http://h/'}, {name: a, url: 'http://h/'}, {name: [x], url: 'http://h/'}]", []string{
			"webhook 1: name is required; give every webhook a name, e.g. load-test",
			"webhook 2: name is required; give every webhook a name, e.g. load-test",
			`webhook 4 ("a"): name is already used by webhook 3; names must be unique`,
			"webhook 5: name is a list, not a string; give every webhook a name, e.g. load-test"}},
		{"Flagger's types meshroll does not support", "[{name: step, type: confirm-traffic-increase, url: 'http://h/'}, {name: events, type: event, url: 'http://h/'}]", []string{
			`webhook 1 ("step"): type confirm-traffic-increase is Flagger's gate before every weight increase, which meshroll does not support; use confirm-promotion for a manual gate before the canary gets 100%, or a rollout webhook, called in every analysis window (a failure counts as a failed check)`,
			`webhook 2 ("events"): type event is Flagger's notification of every event, which meshroll does not support; use post-rollout (after the rollout ends) and rollback (after traffic returned to stable) for notifications`}},
		{"unknown types", "[{name: a, type: Rollout, url: 'http://h/'}, {name: b, type: 3, url: 'http://h/'}]", []string{
			`webhook 1 ("a"): type "Rollout" is not a webhook type; ` + types,
			`webhook 2 ("b"): type is a number, not a string; ` + types}},
		{"urls", `[{name: a}, {name: b, url: /relative}, {name: c, url: "ftp://ci:pa55w0rd@h/"}, {name: d, url: "https://ci:pa55w0rd@h/%zz?token=t0k3n-in-query"},` +
			` {name: e, url: "http:///path?token=t0k3n-in-query"}, {name: f, url: 8080}, {name: g, url: "flagger-loadtester.test:80/"}]`, []string{
			`webhook 1 ("a"): url is required; ` + address,
			`webhook 2 ("b"): url is not an absolute http or https URL (no scheme: start it with http:// or https://); ` + address,
			`webhook 3 ("c"): url is not an absolute http or https URL (the scheme is "ftp"); ` + address,
			`webhook 4 ("d"): url is not an absolute http or https URL (it does not parse: a space, a bad %-escape or a bad port?); ` + address,
			`webhook 5 ("e"): url is not an absolute http or https URL (no host); ` + address,
			`webhook 6 ("f"): url is a number, not a string; ` + address,
			`webhook 7 ("g"): url is not an absolute http or https URL (the scheme is "flagger-loadtester.test"); ` + address}},
		{"timeouts", "[{name: a, url: 'http://h/', timeout: '30'}, {name: b, url: 'http://h/', timeout: 30}, {name: c, url: 'http://h/', timeout: -1s}, {name: d, url: 'http://h/', timeout: 0s}, {name: e, url: 'http://h/', timeout: [1s]}]", []string{
			`webhook 1 ("a"): timeout "30" is not a Go duration; ` + duration,
			`webhook 2 ("b"): timeout 30 is a number, not a Go duration; ` + duration,
			`webhook 3 ("c"): timeout -1s must be greater than 0; ` + duration,
			`webhook 4 ("d"): timeout 0s must be greater than 0; ` + duration,
			`webhook 5 ("e"): timeout is a list, not a Go duration; ` + duration}},
		{"metadata that is not strings", "[{name: a, url: 'http://h/', metadata: {port: 8080, debug: true, none: null, args: [a, b], ok: fine}}, {name: b, url: 'http://h/', metadata: [cmd]}]", []string{
			`webhook 1 ("a"): metadata "args" is a list, not a string; write it as one quoted string`,
			`webhook 1 ("a"): metadata "debug" is true, not a string; quote it: "true"`,
			`webhook 1 ("a"): metadata "none" has no value; quote it: "" for an empty string`,
			`webhook 1 ("a"): metadata "port" is 8080, not a string; quote it: "8080"`,
			`webhook 2 ("b"): metadata must be a mapping of strings, e.g. {cmd: "hey -z 1m http://reviews.shop:9080/"}, not a list`}},
		{"headers", `[{name: a, url: 'http://h/', headers: {"X(Key)": s3cr3t-value, X-CR: "s3cr3t-value\r", X-LF: "s3cr3t-value\nX-Injected: 1", X-NUL: "s3cr3t-value\u0000", X-Number: 123456, X-Null: null, X-Token: s3cr3t-value, x-token: s3cr3t-value}},` +
			` {name: b, url: 'http://h/', headers: [X-Key]}]`, []string{
			`webhook 1 ("a"): header name "X(Key)" is not a valid HTTP header name; use letters, digits and '-', e.g. X-Api-Key`,
			`webhook 1 ("a"): header X-CR: the value holds a carriage return, line feed or NUL; remove it`,
			`webhook 1 ("a"): header X-LF: the value holds a carriage return, line feed or NUL; remove it`,
			`webhook 1 ("a"): header X-NUL: the value holds a carriage return, line feed or NUL; remove it`,
			`webhook 1 ("a"): header X-Null: the value is null, not a string; quote it`,
			`webhook 1 ("a"): header X-Number: the value is a number, not a string; quote it`,
			`webhook 1 ("a"): headers X-Token and x-token are the same header (names are case-insensitive); keep one`,
			`webhook 2 ("b"): headers must be a mapping of header names to values, e.g. {X-Api-Key: "…"}, not a list`}},
		{"fields meshroll does not know", "[{name: a, url: 'http://h/', muteAlert: true, retries: 3, metdata: {cmd: x}}]", []string{
			`webhook 1 ("a"): unknown field "metdata"; the fields are name, type, url, timeout, metadata, headers`,
			`webhook 1 ("a"): muteAlert is Flagger's switch for its alerts; meshroll sends none, remove it`,
			`webhook 1 ("a"): retries is Flagger's retry count; meshroll calls a webhook once per check, as Flagger does by default: remove it`}},
		{"every problem of an entry, in field order", "[{bogus: 1, headers: {'a b': s3cr3t-value}, metadata: {count: 1}, timeout: x, url: '', type: canary, name: load-test}]", []string{
			`webhook 1 ("load-test"): type "canary" is not a webhook type; ` + types,
			`webhook 1 ("load-test"): url is required; ` + address,
			`webhook 1 ("load-test"): timeout "x" is not a Go duration; ` + duration,
			`webhook 1 ("load-test"): metadata "count" is 1, not a string; quote it: "1"`,
			`webhook 1 ("load-test"): header name "a b" is not a valid HTTP header name; use letters, digits and '-', e.g. X-Api-Key`,
			`webhook 1 ("load-test"): unknown field "bogus"; the fields are name, type, url, timeout, metadata, headers`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(with("MESHROLL_WEBHOOKS=" + tt.text))
			var want []string
			for _, w := range tt.want {
				want = append(want, "MESHROLL_WEBHOOKS: "+w)
			}
			if diff := cmp.Diff(want, problems(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			for _, secret := range webhookCredentials {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("a message shows the credential %q:\n%v", secret, err)
				}
			}
		})
	}
}

// Whatever MESHROLL_WEBHOOKS holds, parsing does not panic, every problem is one line that
// shows no header value, and every webhook returned has a type and a timeout.
func FuzzWebhooks(f *testing.F) {
	for _, seed := range []string{flaggerHooks, "[]", "[{", "{a: 1}", "[1, null, [2]]", "[{name: a, url: 'http://h/', headers: {'a\\nb': x, 'A\\nB': y}}]",
		"[{name: \"a\\nb\", type: \"x\\ny\", url: \"http://\\n\", timeout: \"1\\ns\", metadata: {\"k\\n\": 1}, headers: {X: [\"v\"]}}]"} {
		f.Add(seed, "s3cr3t-value")
	}
	f.Fuzz(func(t *testing.T, text, value string) {
		hooks, problems := parseWebhooks(text)
		for _, p := range problems {
			if strings.ContainsAny(p, "\r\n") {
				t.Errorf("a problem spans lines: %q", p)
			}
		}
		for _, w := range hooks {
			if w.Type == "" || w.Timeout <= 0 {
				t.Errorf("webhook %q: type %q, timeout %s", w.Name, w.Type, w.Timeout)
			}
		}
		// A header value, however odd, is never part of a problem.
		if len(value) < 8 || strings.Contains(text, value) {
			return
		}
		quoted := strings.ReplaceAll(strings.ReplaceAll(value, `\`, `\\`), `"`, `\"`)
		_, problems = parseWebhooks(`[{name: a, url: "ftp://h/", headers: {X-Key: "` + quoted + `", "X(Key)": "` + quoted + `"}}]`)
		for _, p := range problems {
			if strings.Contains(p, value) {
				t.Errorf("a problem shows the header value %q: %q", value, p)
			}
		}
	})
}
