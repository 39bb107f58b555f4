package report

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// mask replaces a secret, as GitHub's own masking does.
const mask = "***"

const (
	// minSecret is the shortest secret that is redacted: replacing a two-letter password
	// everywhere would mangle every log line and still give nothing away.
	minSecret = 4
	// minLine is the shortest line of a multi-line secret (kubeconfig YAML, PEM) that is
	// redacted on its own: "apiVersion: v1" style lines are public, key material is long.
	minLine = 8
)

// Redact replaces every secret in text with "***". Secrets shorter than 4 characters are
// ignored. A multi-line secret (a kubeconfig, a PEM block) is also redacted line by line,
// for each of its lines of 8 characters or more (trimmed) except bare YAML keys and PEM
// armor lines, which hold nothing secret, and so is the value of each of
// its `token:`, `password:`, `secret:` and `…-data:` lines, so that a token copied out of a
// kubeconfig into an error message is caught too. Longer secrets are replaced first.
func Redact(text string, secrets []string) string { return newRedactor(secrets).String(text) }

// redactor holds the strings to replace, longest first, and the ones GitHub is asked to mask.
type redactor struct{ needles, maskable []string }

// minMaskLine is the shortest plain line of a multi-line secret that GitHub is asked to mask
// (key material comes in lines of 64): a mask applies to every later log line of the whole
// job, and masking "kind: Config" or "name: prod" would garble other steps' output.
const minMaskLine = 40

func newRedactor(secrets []string) redactor {
	var needles, maskable []string
	add := func(s string, least int, mask bool) {
		if utf8.RuneCountInString(s) < least {
			return
		}
		if !slices.Contains(needles, s) {
			needles = append(needles, s)
		}
		if mask && !strings.ContainsAny(s, "\r\n") && !slices.Contains(maskable, s) {
			maskable = append(maskable, s)
		}
	}
	for _, s := range secrets {
		add(s, minSecret, true)
		add(strings.TrimSpace(s), minSecret, true)
		if !strings.ContainsAny(s, "\r\n") {
			continue
		}
		for line := range strings.Lines(s) {
			line = strings.TrimSpace(line)
			if structural(line) {
				continue
			}
			add(line, minLine, utf8.RuneCountInString(line) >= minMaskLine)
			if v, ok := secretValue(line); ok {
				add(v, minLine, true)
			}
		}
	}
	// Longest first, so that a secret that contains another is replaced whole; then
	// alphabetically, so that the order (and the masks GitHub registers) is stable.
	longestFirst := func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	}
	slices.SortFunc(needles, longestFirst)
	slices.SortFunc(maskable, longestFirst)
	return redactor{needles, maskable}
}

// structural reports whether a line of a multi-line secret is structure that holds nothing
// secret and appears in unrelated output: a bare YAML key ("clusters:", "- cluster:") or a
// PEM armor line. Masking those on GitHub would garble every later log line that has them.
func structural(line string) bool {
	return strings.HasSuffix(line, ":") || strings.HasPrefix(line, "-----BEGIN ") || strings.HasPrefix(line, "-----END ")
}

// secretValue returns the value of a YAML or JSON line of a kubeconfig that holds key
// material or a credential: `token: …`, `password: …`, `client-key-data: …`.
func secretValue(line string) (string, bool) {
	key, value, ok := strings.Cut(strings.TrimPrefix(line, "- "), ":")
	if !ok {
		return "", false
	}
	key = strings.ToLower(strings.Trim(key, ` "'`))
	if !strings.Contains(key, "token") && !strings.Contains(key, "password") &&
		!strings.Contains(key, "secret") && !strings.HasSuffix(key, "-data") {
		return "", false
	}
	return strings.Trim(value, ` "',`), true
}

// String redacts text.
func (r redactor) String(text string) string {
	for _, n := range r.needles {
		text = strings.ReplaceAll(text, n, mask)
	}
	return text
}

// JSON redacts a JSON document: each secret also in its escaped form, because a password
// with a quote or a kubeconfig with newlines is written with backslashes. JSON escapes rune
// by rune, so a secret inside a longer string appears exactly as its own escaped form. The
// document must be encoded without HTML escaping.
func (r redactor) JSON(doc []byte) []byte {
	text := string(doc)
	for _, n := range r.needles {
		text = strings.ReplaceAll(text, n, mask)
		if e := jsonEscape(n); e != n {
			text = strings.ReplaceAll(text, e, mask)
		}
	}
	return []byte(text)
}

// jsonEscape returns s as it appears between the quotes of a JSON string.
func jsonEscape(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return s
	}
	quoted := strings.TrimSuffix(b.String(), "\n")
	return quoted[1 : len(quoted)-1]
}

// masks are the values GitHub is asked to mask: the secrets, each credential value of a
// multi-line one and its long lines. GitHub masks line by line, so a multi-line secret is
// masked through its lines; what meshroll itself writes is redacted with every needle.
func (r redactor) masks() []string { return r.maskable }

// cleanText drops control characters other than newline and tab from a log line: a
// carriage return or an escape sequence in an error message could hide or fake lines in a
// CI log (GitLab draws its sections with them).
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}

// outWriter is the reporters' stdout: it redacts every write (callers write whole lines
// or whole workflow commands, so a secret is never split across two writes) and swallows
// write errors. A log has nowhere to report them, and go-githubactions panics on them,
// which must never stop a rollout that is moving traffic. The first error is kept.
type outWriter struct {
	w   io.Writer
	red redactor
	err error
}

func (o *outWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(o.w, o.red.String(string(p))); err != nil && o.err == nil {
		o.err = err
	}
	return len(p), nil
}
