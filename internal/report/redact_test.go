package report

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshroll/meshroll/internal/config"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	kubeconfig := "apiVersion: v1\nusers:\n- name: ci\n  user:\n    token: kube-Tok3n-0123456789abcdef\n    client-key-data: \"S2V5TWF0ZXJpYWw=\"\n"
	tests := []struct {
		name    string
		text    string
		secrets []string
		want    string
	}{
		{"every occurrence", "token=s3cr3t-value and again s3cr3t-value", []string{"s3cr3t-value"}, "token=*** and again ***"},
		{"short secrets are ignored", "on an island", []string{"on", "", "abc"}, "on an island"},
		{"four characters are enough", "pw=abcd.", []string{"abcd"}, "pw=***."},
		{"longest first", "Bearer abcd1234efgh", []string{"abcd", "abcd1234efgh"}, "Bearer ***"},
		{"a secret inside another", "xxabcd1234", []string{"xxab", "abcd1234"}, "xx***"},
		{"surrounding space of a secret file", "token is ghp_0123456789", []string{"ghp_0123456789\n"}, "token is ***"},
		{"the whole multi-line secret", "config:\n" + kubeconfig, []string{kubeconfig}, "config:\n***"},
		{"a line of a multi-line secret", "error near `token: kube-Tok3n-0123456789abcdef`", []string{kubeconfig}, "error near `***`"},
		{"a credential value of a multi-line secret", "Authorization: Bearer kube-Tok3n-0123456789abcdef", []string{kubeconfig}, "Authorization: Bearer ***"},
		{"a key data value without its quotes", "data S2V5TWF0ZXJpYWw=", []string{kubeconfig}, "data ***"},
		{"lines shorter than 8 characters stay", "users: and user: here", []string{kubeconfig}, "users: and user: here"},
		{"bare keys and PEM armor stay", "- name: ci\nclusters:\n-----BEGIN CERTIFICATE-----", []string{kubeconfig + "clusters:\n-----BEGIN CERTIFICATE-----\n"}, "***\nclusters:\n-----BEGIN CERTIFICATE-----"},
		{"longer lines go, even public ones", "apiVersion: v1", []string{kubeconfig}, "***"},
	}
	for _, tt := range tests {
		if got := Redact(tt.text, tt.secrets); got != tt.want {
			t.Errorf("%s: Redact(%q) = %q, want %q", tt.name, tt.text, got, tt.want)
		}
	}
}

// JSON writes a quote, a backslash or a newline escaped: the escaped form is redacted too.
func TestRedactJSON(t *testing.T) {
	t.Parallel()
	secret := `pa"ss\wo<rd>&1`
	doc, err := json.Marshal(map[string]string{"reason": "login with " + secret + " failed", "multi": "a\n" + secret + "\nb"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc), secret) {
		t.Fatal("the test needs a secret that JSON escapes")
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]string{"reason": "login with " + secret + " failed"}); err != nil {
		t.Fatal(err)
	}
	got := string(newRedactor([]string{secret}).JSON([]byte(b.String())))
	if want := `{"reason":"login with *** failed"}` + "\n"; got != want {
		t.Errorf("JSON redaction = %q, want %q", got, want)
	}
}

// The secrets of TestNoSecretInAnyOutput, and what must never be found of them.
const (
	ghToken    = "ghp_R3dactM3Pl3aseXyZ0987654321"
	password   = `Pa"ss<w0rd>&Secret!`
	kubeToken  = "eyJhbGciOiJSUzI1NiJ9.kUbEtOkEn-Zq8Wv"
	kubeconfig = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0\n    server: https://10.0.0.1:6443\n  name: prod\nusers:\n- name: ci\n  user:\n    token: " + kubeToken + "\n"
)

// Every byte a reporter produces is free of the secrets: stdout, the four files and GitHub's
// two, in every CI. The secrets sit in the reason (cut at 1000 characters right across one),
// the failed check, a log line and an analysis message; GitHub's masks come first.
func TestNoSecretInAnyOutput(t *testing.T) {
	t.Parallel()
	secrets := []string{ghToken, password, kubeconfig, "abc"} // "abc": too short to redact
	res := fixtures()[1].res
	res.Reason = strings.Repeat("x", maxReason-15) + ghToken + " then " + password + "; with " + kubeconfig
	res.FailedCheck = "custom " + kubeToken
	last := &res.Steps[1].Windows[1].Results[1]
	last.Message = "query failed: 401 for Bearer " + kubeToken + " and password " + password
	res.Steps[1].After[0].Host = "reviews-" + ghToken // a secret where no one expects one

	// The forbidden strings: each secret, every 8-character piece of the one-line ones (a cut
	// must not leave half a secret), every long line of the kubeconfig, and the escaped
	// forms JSON and XML would write.
	var forbidden []string
	for _, s := range []string{ghToken, password, kubeToken} {
		for i := 0; i+8 <= len(s); i++ {
			forbidden = append(forbidden, s[i:i+8])
		}
		forbidden = append(forbidden, jsonEscape(s))
		var b strings.Builder
		xml.EscapeText(&b, []byte(s))
		forbidden = append(forbidden, b.String())
	}
	for line := range strings.Lines(kubeconfig) {
		if line = strings.TrimSpace(line); len(line) >= minLine && !strings.HasSuffix(line, ":") {
			forbidden = append(forbidden, line)
		}
	}

	for _, ci := range allCIs {
		rep, r, stdout := newRun(t, ci, secrets...)
		rep.Printf("using kubeconfig %s and token %s", kubeconfig, ghToken)
		if err := replay(rep, res); err != nil {
			t.Fatal(err)
		}
		r.stdout = stdout.String()

		outputs := map[string]string{}
		entries, err := os.ReadDir(r.outDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			outputs[e.Name()] = string(readFile(t, filepath.Join(r.outDir, e.Name())))
		}
		if len(outputs) != 4 {
			t.Errorf("%s: %d files in the output directory, want 4", ci, len(outputs))
		}
		lines := strings.Split(r.stdout, "\n")
		if ci == config.CIGitHub {
			outputs["GITHUB_OUTPUT"] = string(readFile(t, r.env["GITHUB_OUTPUT"]))
			outputs["GITHUB_STEP_SUMMARY"] = string(readFile(t, r.env["GITHUB_STEP_SUMMARY"]))
			masks := 0
			for masks < len(lines) && strings.HasPrefix(lines[masks], "::add-mask::") {
				masks++
			}
			if masks < 4 || !strings.Contains(strings.Join(lines[:masks], "\n"), "::add-mask::"+kubeToken) {
				t.Errorf("github: stdout does not start with the masks:\n%s", strings.Join(lines[:min(len(lines), 12)], "\n"))
			}
			if strings.Count(r.stdout, "::add-mask::") != masks {
				t.Errorf("github: a mask was added after other output")
			}
			lines = lines[masks:] // the masks carry the secrets to the runner, by design
		}
		outputs["stdout"] = strings.Join(lines, "\n")

		for name, text := range outputs {
			for _, f := range forbidden {
				if i := strings.Index(text, f); i >= 0 {
					t.Errorf("%s: %s holds %q of a secret: …%s…", ci, name, f, text[max(0, i-40):min(len(text), i+len(f)+40)])
				}
			}
			if !strings.Contains(text, "***") && name != JUnitFile {
				t.Errorf("%s: %s redacted nothing; is the secret in it at all?", ci, name)
			}
		}
	}
}

// GitHub masks apply to every later line of the whole job: public lines of a kubeconfig are
// redacted in meshroll's own output but not registered as masks; credentials are.
func TestGitHubMasks(t *testing.T) {
	t.Parallel()
	kc := "apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n    token: kube-Tok3n-0123456789abcdef\n" +
		"    client-key-data: " + strings.Repeat("S2V5", 20) + "\n"
	masks := newRedactor([]string{kc, "prom-token-1234"}).masks()
	for _, want := range []string{"prom-token-1234", "kube-Tok3n-0123456789abcdef", strings.Repeat("S2V5", 20)} {
		if !slices.Contains(masks, want) {
			t.Errorf("masks lack %q: %q", want, masks)
		}
	}
	for _, m := range masks {
		if strings.Contains(m, "\n") || m == "apiVersion: v1" || m == "kind: Config" || m == "- name: ci" {
			t.Errorf("mask %q would garble unrelated log lines (or cannot be registered)", m)
		}
	}
	if got := Redact("apiVersion: v1", []string{kc}); got != "***" {
		t.Errorf("meshroll's own output keeps a line of the secret: %q", got)
	}
}
