package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// webhookExample is a list of one webhook, for the messages about the list as a whole.
const webhookExample = `[{name: load-test, type: rollout, url: "http://flagger-loadtester.test/", metadata: {cmd: "hey -z 1m -q 10 http://reviews.shop:9080/"}}]`

// webhookFields are the fields of an entry: Flagger's, and headers.
var webhookFields = []string{"name", "type", "url", "timeout", "metadata", "headers"}

// webhookTypes are the types an entry may have, in the order messages list them.
var webhookTypes = []WebhookType{WebhookPreRollout, WebhookRollout, WebhookConfirmRollout, WebhookConfirmPromotion, WebhookPostRollout, WebhookRollback}

// flaggerTypes and flaggerFields are Flagger's webhook types and fields that meshroll has no
// use for, each with what to do instead, so that a hook pasted from a Flagger Canary is told
// more than "unknown".
var (
	flaggerTypes = map[WebhookType]string{
		"confirm-traffic-increase": "Flagger's gate before every weight increase, which meshroll does not support; use confirm-promotion for a manual gate before the canary gets 100%, or a rollout webhook, called in every analysis window (a failure counts as a failed check)",
		"event":                    "Flagger's notification of every event, which meshroll does not support; use post-rollout (after the rollout ends) and rollback (after traffic returned to stable) for notifications",
	}
	flaggerFields = map[string]string{
		"muteAlert": "Flagger's switch for its alerts; meshroll sends none, remove it",
		"retries":   "Flagger's retry count; meshroll calls a webhook once per check, as Flagger does by default: remove it",
	}
)

// parseWebhooks reads MESHROLL_WEBHOOKS: a YAML or JSON list of Flagger's webhook fields plus
// headers. It returns every entry that is a mapping, filled in as far as its fields allow
// (Reporting needs the header values of an invalid list), and every problem, each naming the
// entry and the field; a header value is never part of one.
func parseWebhooks(text string) ([]Webhook, []string) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	// YAML is a superset of JSON; the strict conversion rejects duplicate keys.
	data, err := yaml.YAMLToJSONStrict([]byte(text))
	if err != nil {
		problem := "not valid YAML or JSON (" + oneLine(err.Error()) + "); write a list of webhooks, e.g. " + webhookExample
		// Read leniently all the same, for the header values; what else is wrong with the
		// entries is for the next run to say, once the list is valid YAML.
		hooks, _ := decodeWebhooks(yamlToJSON(text))
		return hooks, []string{problem}
	}
	return decodeWebhooks(data)
}

// yamlToJSON converts YAML leniently (a repeated key: the last wins), nil when it cannot.
func yamlToJSON(text string) []byte {
	data, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return nil
	}
	return data
}

// decodeWebhooks decodes and checks the list in data, JSON.
func decodeWebhooks(data []byte) ([]Webhook, []string) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return nil, nil
	}
	list, ok := doc.([]any)
	if !ok {
		msg := "must be a list of webhooks with Flagger's fields (name, type, url, timeout, metadata) and headers, e.g. " + webhookExample
		if m, isMap := doc.(map[string]any); isMap && m["webhooks"] != nil {
			msg += "; give the list under a Flagger Canary's webhooks: key, without the key"
		}
		return nil, []string{msg}
	}
	var hooks []Webhook
	var problems []string
	names := map[string]int{}
	for i, item := range list {
		fields, ok := item.(map[string]any)
		if !ok {
			problems = append(problems, fmt.Sprintf("webhook %d: must be a mapping of %s, e.g. {name: smoke, type: pre-rollout, url: \"http://flagger-loadtester.test/\"}", i+1, strings.Join(webhookFields, ", ")))
			continue
		}
		w, wrong := webhook(fields, i, names)
		hooks = append(hooks, w)
		problems = append(problems, wrong...)
	}
	return hooks, problems
}

// webhook decodes and checks one entry (the i-th, from 0); names holds the names seen so far.
func webhook(fields map[string]any, i int, names map[string]int) (Webhook, []string) {
	var w Webhook
	name, nameOK := fields["name"].(string)
	w.Name = strings.TrimSpace(name)
	where := fmt.Sprintf("webhook %d", i+1)
	if nameOK && w.Name != "" {
		where += fmt.Sprintf(" (%q)", w.Name)
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, where+": "+fmt.Sprintf(format, args...)) }

	switch raw, set := fields["name"]; {
	case set && !nameOK && raw != nil:
		add("name is %s, not a string; give every webhook a name, e.g. load-test", kindOf(raw))
	case w.Name == "":
		add("name is required; give every webhook a name, e.g. load-test")
	default:
		if first, dup := names[w.Name]; dup {
			add("name is already used by webhook %d; names must be unique", first+1)
		} else {
			names[w.Name] = i
		}
	}
	w.Type = webhookType(fields["type"], add)
	w.URL = webhookURL(fields["url"], add)
	w.Timeout = webhookTimeout(fields["timeout"], add)
	w.Metadata = webhookMetadata(fields["metadata"], add)
	w.Headers = webhookHeaders(fields["headers"], add)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		switch {
		case slices.Contains(webhookFields, k):
		case flaggerFields[k] != "":
			add("%s is %s", k, flaggerFields[k])
		default:
			add("unknown field %q; the fields are %s", k, strings.Join(webhookFields, ", "))
		}
	}
	return w, problems
}

// webhookType reads a type, rollout when none is given (Flagger's default).
func webhookType(raw any, add func(string, ...any)) WebhookType {
	s, ok := raw.(string)
	switch t := WebhookType(strings.TrimSpace(s)); {
	case raw != nil && !ok:
		add("type is %s, not a string; use one of %s, or leave it out for rollout", kindOf(raw), typeList())
	case t == "":
		return WebhookRollout
	case slices.Contains(webhookTypes, t):
		return t
	case flaggerTypes[t] != "":
		add("type %s is %s", t, flaggerTypes[t])
	default:
		add("type %q is not a webhook type; use one of %s, or leave it out for rollout", t, typeList())
	}
	return WebhookRollout
}

// webhookURL reads a URL. It is never shown: it may carry credentials.
func webhookURL(raw any, add func(string, ...any)) string {
	s, ok := raw.(string)
	s = strings.TrimSpace(s)
	switch {
	case raw != nil && !ok:
		add("url is %s, not a string; give the webhook's address, e.g. http://flagger-loadtester.test/", kindOf(raw))
	case s == "":
		add("url is required; give the webhook's address, e.g. http://flagger-loadtester.test/")
	default:
		if what := notHTTPURL(s); what != "" {
			add("url is not an absolute http or https URL (%s); give the webhook's address, e.g. http://flagger-loadtester.test/", what)
		}
	}
	return s
}

// webhookTimeout reads a timeout, DefaultWebhookTimeout when none is given.
func webhookTimeout(raw any, add func(string, ...any)) time.Duration {
	s, ok := raw.(string)
	s = strings.TrimSpace(s)
	fix := fmt.Sprintf("use a duration with a unit (s, m or h) such as 30s, or leave it out for %s", DefaultWebhookTimeout)
	if raw != nil && !ok {
		what := "timeout is " + kindOf(raw)
		if n, isNumber := raw.(json.Number); isNumber {
			what = "timeout " + n.String() + " is a number" // Flagger's timeout is a string too
		}
		add("%s, not a Go duration; %s", what, fix)
		return DefaultWebhookTimeout
	}
	if s == "" {
		return DefaultWebhookTimeout
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		add("timeout %q is not a Go duration; %s", s, fix)
	case d <= 0:
		add("timeout %s must be greater than 0; %s", s, fix)
	default:
		return d
	}
	return DefaultWebhookTimeout
}

// webhookMetadata reads the metadata sent in the body: strings only, as in Flagger.
func webhookMetadata(raw any, add func(string, ...any)) map[string]string {
	if raw == nil {
		return nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		add("metadata must be a mapping of strings, e.g. {cmd: \"hey -z 1m http://reviews.shop:9080/\"}, not %s", kindOf(raw))
		return nil
	}
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch value := m[k].(type) {
		case string:
			out[k] = value
		case json.Number, bool:
			add("metadata %q is %s, not a string; quote it: %q", k, describe(value), fmt.Sprint(value))
		case nil:
			add("metadata %q has no value; quote it: \"\" for an empty string", k)
		default:
			add("metadata %q is %s, not a string; write it as one quoted string", k, kindOf(value))
		}
	}
	return out
}

// webhookHeaders reads the headers sent with every call. Their values are secrets: no message
// shows one, and a value is kept even when invalid, for Reporting.
func webhookHeaders(raw any, add func(string, ...any)) map[string]string {
	if raw == nil {
		return nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		add("headers must be a mapping of header names to values, e.g. {X-Api-Key: \"…\"}, not %s", kindOf(raw))
		return nil
	}
	out := map[string]string{}
	seen := map[string]string{} // canonical name → as written
	for _, name := range slices.Sorted(maps.Keys(m)) {
		value, isString := m[name].(string)
		if n, isNumber := m[name].(json.Number); isNumber {
			value = n.String() // invalid, but a secret all the same
		}
		if value != "" || isString {
			out[name] = value
		}
		switch {
		case !headerName(name):
			add("header name %q is not a valid HTTP header name; use letters, digits and '-', e.g. X-Api-Key", name)
		case !isString:
			add("header %s: the value is %s, not a string; quote it", name, kindOf(m[name]))
		case strings.ContainsAny(value, "\r\n\x00"):
			add("header %s: the value holds a carriage return, line feed or NUL; remove it", name)
		}
		if !headerName(name) {
			continue
		}
		// Go's client canonicalizes names: of two spellings, one would be dropped unseen.
		canonical := strings.ToLower(name)
		if first, dup := seen[canonical]; dup {
			add("headers %s and %s are the same header (names are case-insensitive); keep one", first, name)
		}
		seen[canonical] = name
	}
	return out
}

// kindOf names the kind of a decoded value without showing it.
func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return "null"
}

func typeList() string {
	names := make([]string, len(webhookTypes))
	for i, t := range webhookTypes {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}
