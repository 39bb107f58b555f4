// Package gates holds the checks and chores around a rollout's traffic steps that are not
// metric analysis: webhooks, built-in load generation, security verification and the
// scale-down of the version left without traffic.
//
// Its input is what config has validated (config is the only validator of input); the
// other internal package it imports is kube, for the API's retry and access rules. The
// rollout declares the small interfaces it needs; app wires this package's types into them.
// Nothing here prints: what a gate did comes back as values for the log, the timeline and the
// CI summary, URLs as given, and secrets (header values, the credentials in a URL: see
// config.Config.Secrets) are redacted once, by app's writer; this package keeps no list of
// its own.
//
// # Webhooks
//
// Hooks calls the webhooks of MESHROLL_WEBHOOKS the way Flagger calls a canary's, so that
// hooks written for Flagger, flagger-loadtester among them, work unchanged: a POST of
// {"name","namespace","phase","checksum","metadata"}, one attempt bounded by the hook's
// timeout (config.DefaultWebhookTimeout, 10s as Flagger's, when it sets none), 2xx for
// success. Run calls the hooks of one type with the phase PhaseOf gives and returns a Call
// per hook. When to call which type, how often to poll a manual gate (confirm-rollout,
// confirm-promotion) and what a failure means (the canary failed, a failed check, nothing at
// all for a notification) are the rollout's to decide.
package gates
