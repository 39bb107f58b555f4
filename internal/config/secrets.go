package config

import (
	"encoding/base64"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Credentials in a URL. A URL is printed whole in error messages (Go's HTTP client writes
// `Post "https://…?access_token=…": dial tcp …`), so what it carries must be a secret like any
// other, and only the credential itself: the rest of the URL says which server failed.

// credentialParams are the query (and fragment) parameter names whose value is a credential,
// compared after normalizing (see normalizeParam). Names commonly used by Prometheus-compatible
// services, webhooks, and the object stores and proxies in front of them: OAuth and bearer tokens
// (access_token, token), API keys (key, api_key, apikey, Google's key), VictoriaMetrics'
// authKey, AWS SigV4 and S3 presigned URLs (X-Amz-Signature, X-Amz-Credential,
// X-Amz-Security-Token, AWSAccessKeyId, Signature), Google Cloud Storage's
// X-Goog-Signature and X-Goog-Credential, Azure SAS (sig), and the function key of an Azure
// Functions or similar webhook URL (code, as an OAuth authorization code is too).
var credentialParams = []string{"auth", "authorization", "key", "sig", "pass", "pwd", "jwt", "bearer", "code"}

// credentialWords are the parts of a normalized parameter name that make its value a
// credential wherever they appear: access_token, private_token, X-Amz-Security-Token,
// client_secret, X-Amz-Signature, X-Goog-Credential, dd-api-key, auth_key, AWSAccessKeyId.
var credentialWords = []string{"token", "secret", "password", "passwd", "signature", "credential", "apikey", "authkey", "accesskey"}

// normalizeParam lowers a parameter name and drops its separators, so that api_key, api-key,
// apiKey and API.KEY are one name.
func normalizeParam(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' {
			return -1
		}
		return r
	}, strings.ToLower(name))
}

// credentialParam reports whether a query parameter's value is a credential, by its name.
func credentialParam(name string) bool {
	if decoded, err := url.QueryUnescape(name); err == nil {
		name = decoded
	}
	n := normalizeParam(name)
	if slices.Contains(credentialParams, n) {
		return true
	}
	return slices.ContainsFunc(credentialWords, func(w string) bool { return strings.Contains(n, w) })
}

// urlSecrets returns the credentials in a URL, each in every form it may be printed in: the
// password of its userinfo (or the userinfo itself when it has no password: a token used as
// the user name), the Basic credentials an HTTP client sends for that userinfo, and the
// value of every query or fragment parameter whose name says it is a credential.
//
// The URL is taken apart by hand, the way net/url does (fragment, then query, then the
// authority's last "@"), so that a URL net/url rejects (a bad escape, a space) still gives
// up its credentials: Reporting takes the input as given.
func urlSecrets(raw string) []string {
	rest, fragment, _ := strings.Cut(strings.TrimSpace(raw), "#")
	rest, query, _ := strings.Cut(rest, "?")
	var out []string
	if _, authority, ok := strings.Cut(rest, "://"); ok {
		authority, _, _ = strings.Cut(authority, "/")
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			out = append(out, userinfoSecrets(authority[:at])...)
		}
	}
	for _, params := range []string{query, fragment} {
		for _, param := range strings.FieldsFunc(params, func(r rune) bool { return r == '&' || r == ';' }) {
			name, value, ok := strings.Cut(param, "=")
			if ok && value != "" && credentialParam(name) {
				out = append(out, escapedForms(value, url.QueryUnescape)...)
			}
		}
	}
	return out
}

// userinfoSecrets returns the credential of a URL's userinfo: its password, or the user name
// when there is none (https://TOKEN@host, https://TOKEN:@host). A user name beside a password
// is no secret, like MESHROLL_PROMETHEUS_USERNAME (Go's HTTP client prints it too).
func userinfoSecrets(userinfo string) []string {
	rawUser, rawPassword, hasPassword := strings.Cut(userinfo, ":")
	user, password := unescapeOr(rawUser, url.PathUnescape), unescapeOr(rawPassword, url.PathUnescape)
	var out []string
	if hasPassword && password != "" {
		out = append(out, escapedForms(rawPassword, url.PathUnescape)...)
		// net/url's own spelling, as url.URL.String writes it.
		out = append(out, strings.TrimPrefix(url.UserPassword("", password).String(), ":"))
	} else {
		out = append(out, escapedForms(rawUser, url.PathUnescape)...)
		out = append(out, url.User(user).String())
	}
	if user != "" || password != "" {
		// What the HTTP client sends for the userinfo, which a proxy may echo back.
		out = append(out, basicCredentials(user, password))
	}
	return dedupe(out)
}

// escapedForms returns a value of a URL as written, decoded, and each of those escaped the
// ways Go and most tools escape: for a query (url.QueryEscape, "+" for a space) and for a path
// (url.PathEscape, "%20"). A URL printed inside another URL's query is escaped once more, so
// the written form escaped is caught too.
func escapedForms(raw string, unescape func(string) (string, error)) []string {
	forms := []string{raw}
	if decoded, err := unescape(raw); err == nil {
		forms = append(forms, decoded)
	}
	for _, f := range slices.Clone(forms) {
		forms = append(forms, url.QueryEscape(f), url.PathEscape(f))
	}
	return dedupe(forms)
}

// urlInText finds the URLs in a kubeconfig, YAML or JSON: a scheme, "://", and everything up
// to a space, a quote or a brace (of a YAML flow mapping, then a comma that ends it is cut).
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>{}]+`)

// kubeconfigURLSecrets returns the credentials of the URLs in a kubeconfig (server,
// proxy-url): client-go prints a server URL with its userinfo in every connection error, so
// that a token there would escape the redaction of the kubeconfig's lines.
func kubeconfigURLSecrets(kubeconfig string) []string {
	var out []string
	for _, u := range urlInText.FindAllString(kubeconfig, -1) {
		out = append(out, urlSecrets(strings.TrimRight(u, ","))...)
	}
	return out
}

// pathTokenLength is the shortest path segment pathTokens takes for a token: Slack's are 24
// characters, Discord's 68; a word or a short id is shorter.
const pathTokenLength = 16

// pathTokens returns the segments of a URL's path that look like tokens: pathTokenLength or
// more characters mixing letters and digits. Chat services put the credential of an incoming
// webhook in its path (Slack's /services/T…/B…/<token>, Discord's /api/webhooks/<id>/<token>),
// and a webhook that answers non-2xx is named by its URL in the log. A UUID or a commit hash
// in a path is hidden too: harmless, and the webhook's name still says which it is.
func pathTokens(raw string) []string {
	rest, _, _ := strings.Cut(strings.TrimSpace(raw), "#")
	rest, _, _ = strings.Cut(rest, "?")
	if _, after, ok := strings.Cut(rest, "://"); ok {
		rest = after
	}
	_, path, _ := strings.Cut(rest, "/")
	var out []string
	for _, seg := range strings.Split(path, "/") {
		letters := strings.ContainsFunc(seg, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' })
		digits := strings.ContainsFunc(seg, func(r rune) bool { return r >= '0' && r <= '9' })
		if len(seg) >= pathTokenLength && letters && digits {
			out = append(out, escapedForms(seg, url.PathUnescape)...)
		}
	}
	return out
}

// headerSecrets returns the secrets of the headers of a request: every value as given and as
// Go's client sends it (trimmed), and for Authorization and Proxy-Authorization also the
// credential without its scheme ("Bearer abc" → "abc"), which a server may echo alone.
func headerSecrets(headers map[string]string) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		value := headers[name]
		out = append(out, value, strings.TrimSpace(value))
		if strings.EqualFold(name, "Authorization") || strings.EqualFold(name, "Proxy-Authorization") {
			if _, credential, ok := strings.Cut(strings.TrimSpace(value), " "); ok {
				out = append(out, strings.TrimSpace(credential))
			}
		}
	}
	return dedupe(out)
}

// basicCredentials is the value of an Authorization: Basic header, without its scheme.
func basicCredentials(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

func unescapeOr(s string, unescape func(string) (string, error)) string {
	if decoded, err := unescape(s); err == nil {
		return decoded
	}
	return s
}

// dedupe drops empty strings and repeats, keeping the first of each.
func dedupe(values []string) []string {
	var out []string
	for _, v := range values {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
