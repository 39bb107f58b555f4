package report

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"

	"github.com/meshroll/meshroll/internal/config"
)

// A Prometheus URL with credentials in its userinfo and its query, the token one that needs
// escaping ("+", "/", "="), written escaped as it must be.
const (
	urlToken    = "q+T0k/en=="
	urlTokenEsc = "q%2BT0k%2Fen%3D%3D"
	urlPassword = "pa55/w0rd"
	promURL     = "https://grafana-1234:pa55%2Fw0rd@prom.example/api/prom?orgId=7&access_token=" + urlTokenEsc
)

// promSecrets are the secrets meshroll decides for promURL, as app passes them on.
func promSecrets() []string {
	return config.Reporting([]string{"MESHROLL_PROMETHEUS_URL=" + promURL}).Secrets()
}

// The credentials of a URL are redacted in each form a message may print them in, and the
// rest of the URL stays readable.
func TestRedactURLCredentials(t *testing.T) {
	t.Parallel()
	userOnly := config.Reporting([]string{"MESHROLL_PROMETHEUS_URL=https://glc_userOnly0123@prom.example/"}).Secrets()
	tests := []struct {
		name    string
		text    string
		secrets []string
		want    string
	}{
		{"Go's HTTP client error (it strips the password itself)",
			`Post "https://grafana-1234:***@prom.example/api/prom/api/v1/query?orgId=7&access_token=` + urlTokenEsc + `": dial tcp 127.0.0.1:9: connect: connection refused`, promSecrets(),
			`Post "https://grafana-1234:***@prom.example/api/prom/api/v1/query?orgId=7&access_token=***": dial tcp 127.0.0.1:9: connect: connection refused`},
		{"the URL as given", "querying " + promURL, promSecrets(),
			"querying https://grafana-1234:***@prom.example/api/prom?orgId=7&access_token=***"},
		{"the token decoded", `token "` + urlToken + `" expired`, promSecrets(), `token "***" expired`},
		{"the token escaped for a path", "/t/" + url.PathEscape(urlToken) + "/", promSecrets(), "/t/***/"},
		{"the URL inside another URL's query", "see https://grafana.example/explore?ds=" + url.QueryEscape(promURL), promSecrets(),
			"see https://grafana.example/explore?ds=https%3A%2F%2Fgrafana-1234%3A***%40prom.example%2Fapi%2Fprom%3ForgId%3D7%26access_token%3D***"},
		{"the password decoded and as net/url writes it", "p=" + urlPassword + " u=" + url.UserPassword("u", urlPassword).String(), promSecrets(),
			"p=*** u=u:***"},
		{"the Basic header a proxy echoes", "rejected Basic " + base64.StdEncoding.EncodeToString([]byte("grafana-1234:"+urlPassword)), promSecrets(),
			"rejected Basic ***"},
		{"a user-only token", `Get "https://glc_userOnly0123@prom.example/api/v1/query": EOF`, userOnly,
			`Get "https://***@prom.example/api/v1/query": EOF`},
	}
	for _, tt := range tests {
		if got := Redact(tt.text, tt.secrets); got != tt.want {
			t.Errorf("%s: Redact(%q)\n = %q\nwant %q", tt.name, tt.text, got, tt.want)
		}
	}
}

// Every output of a run whose reason is the Prometheus client's error is free of the URL's
// credentials in any form, and GitHub is asked to mask the token as written and decoded.
func TestNoURLCredentialInAnyOutput(t *testing.T) {
	t.Parallel()
	forms := []string{urlToken, urlTokenEsc, url.QueryEscape(urlTokenEsc), urlPassword, "pa55%2Fw0rd"}
	res := fixtures()[1].res
	res.Reason = `failed to query Prometheus: Post "` + strings.Replace(promURL, "pa55%2Fw0rd", "***", 1) + `/api/v1/query": EOF; token ` + urlToken
	res.FailedCheck = "success-rate " + url.QueryEscape(promURL)
	for _, ci := range allCIs {
		rep, r, stdout := newRun(t, ci, promSecrets()...)
		rep.Printf("querying %s", promURL)
		if err := replay(rep, res); err != nil {
			t.Fatal(err)
		}
		r.stdout = stdout.String()
		if ci == config.CIGitHub {
			for _, want := range []string{"::add-mask::" + urlToken, "::add-mask::" + strings.ReplaceAll(urlTokenEsc, "%", "%25"), "::add-mask::" + urlPassword} {
				if !strings.Contains(r.stdout, want+"\n") {
					t.Errorf("github: no %s in stdout", want)
				}
			}
			// The masks carry the secrets to the runner, by design.
			var kept []string
			for _, l := range strings.Split(r.stdout, "\n") {
				if !strings.HasPrefix(l, "::add-mask::") {
					kept = append(kept, l)
				}
			}
			r.stdout = strings.Join(kept, "\n")
		}
		for name, text := range r.files(t, ci) {
			for _, f := range forms {
				if strings.Contains(string(text), f) {
					t.Errorf("%s: %s holds %q", ci, name, f)
				}
			}
		}
		if !strings.Contains(r.stdout, "prom.example/api/prom?orgId=7&access_token=***") {
			t.Errorf("%s: the log lost the readable part of the URL:\n%s", ci, r.stdout)
		}
	}
}
