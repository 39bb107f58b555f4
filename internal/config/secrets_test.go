package config

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// escaped is a credential that needs escaping in a query: "+" (a space there), "/" and "=".
const (
	escapedToken   = "Zm9v+bar/tok=="
	escapedInQuery = "Zm9v%2Bbar%2Ftok%3D%3D" // url.QueryEscape(escapedToken)
)

// Each credential of a URL is a secret in the forms it is printed in, and nothing else of
// the URL is: the scheme, the host, the path, a user name beside a password, other parameters.
func TestURLSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		url    string
		secret []string // among the secrets
		public []string // never among them, nor inside one
	}{
		{"no credentials", "https://prom.example:9090/prefix?timeout=30s&tenant=team-a#top", nil,
			[]string{"prom.example", "30s", "team-a", "top"}},
		{"access_token", "https://prom.example/api?access_token=tok-0123456789&dedup=true",
			[]string{"tok-0123456789"}, []string{"prom.example", "access_token", "dedup", "true"}},
		{"a name in any case", "https://prom.example/?ACCESS_TOKEN=upper-0123456789&Api-Key=dash-0123456789",
			[]string{"upper-0123456789", "dash-0123456789"}, []string{"ACCESS_TOKEN", "Api-Key"}},
		{"a value written escaped: every form", "https://prom.example/api?token=" + escapedInQuery,
			[]string{escapedInQuery, escapedToken, "Zm9v+bar%2Ftok==", url.QueryEscape(escapedInQuery)}, []string{"prom.example/api"}},
		{"a value written raw: every form", "https://prom.example/api?token=" + escapedToken,
			[]string{escapedToken, "Zm9v bar/tok==", escapedInQuery, "Zm9v%20bar%2Ftok=="}, nil},
		{"several parameters, ; too", "https://prom.example/?a=1&key=google-api-key-1;sig=azure-sas-signature&b=2",
			[]string{"google-api-key-1", "azure-sas-signature"}, []string{"a=1", "b=2"}},
		{"AWS presigned", "https://aps.example/api?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20250101%2Fus-east-1%2Faps%2Faws4_request" +
			"&X-Amz-Date=20250101T000000Z&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&X-Amz-Signature=0123456789abcdef",
			[]string{"AKIAEXAMPLE%2F20250101%2Fus-east-1%2Faps%2Faws4_request", "AKIAEXAMPLE/20250101/us-east-1/aps/aws4_request",
				"FwoGZXIvYXdzEXAMPLE", "0123456789abcdef"}, []string{"AWS4-HMAC-SHA256", "20250101T000000Z"}},
		{"a fragment's parameters", "https://prom.example/#access_token=implicit-grant-token", []string{"implicit-grant-token"}, nil},
		{"a parameter name escaped", "https://prom.example/?api%5Fkey=escaped-name-secret", []string{"escaped-name-secret"}, nil},
		{"a parameter without a value", "https://prom.example/?token&auth=", nil, []string{"token", "auth"}},
		{"user and password", "https://grafana-123:glc_pass%2Fword@prom.example/api",
			[]string{"glc_pass%2Fword", "glc_pass/word", base64.StdEncoding.EncodeToString([]byte("grafana-123:glc_pass/word"))},
			[]string{"grafana-123", "prom.example"}},
		{"a password net/url writes otherwise", "https://u:p%21ss%2Bw0rd@prom.example/",
			[]string{"p!ss+w0rd", "p%21ss%2Bw0rd", "p%21ss%2Bw0rd", "p%21ss+w0rd"}, nil},
		{"a user-only token", "https://ghp_userOnlyToken0123@prom.example/",
			[]string{"ghp_userOnlyToken0123", base64.StdEncoding.EncodeToString([]byte("ghp_userOnlyToken0123:"))}, []string{"prom.example"}},
		{"a token as the user, an empty password", "https://tok-as-user-0123:@prom.example/", []string{"tok-as-user-0123"}, nil},
		{"an @ in the password", "https://user:p@ss-word-01@prom.example/", []string{"p@ss-word-01", "p%40ss-word-01"}, []string{"prom.example"}},
		{"userinfo and a query token", "http://admin:hunter2-secret@127.0.0.1:9090/?access_token=q-token-0123",
			[]string{"hunter2-secret", "q-token-0123"}, []string{"admin", "127.0.0.1"}},
		{"a URL net/url rejects", "https://us er:bad%zzpass@prom.example/?token=bad%zz-value",
			[]string{"bad%zzpass", "bad%zz-value"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := urlSecrets(tt.url)
			for _, s := range tt.secret {
				if !slices.Contains(got, s) {
					t.Errorf("urlSecrets(%q) lacks %q: %q", tt.url, s, got)
				}
			}
			for _, p := range tt.public {
				for _, s := range got {
					if strings.Contains(s, p) {
						t.Errorf("urlSecrets(%q) holds %q, which is no credential: %q", tt.url, p, got)
					}
				}
			}
			if len(tt.secret) == 0 && len(got) > 0 {
				t.Errorf("urlSecrets(%q) = %q, want none", tt.url, got)
			}
		})
	}
}

func TestCredentialParam(t *testing.T) {
	t.Parallel()
	credentials := []string{"access_token", "token", "auth", "key", "api_key", "apikey", "apiKey", "API-KEY", "password", "secret",
		"signature", "sig", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "x-amz-security-token",
		"auth_token", "private_token", "id_token", "refresh_token", "client_secret", "passwd", "pwd", "pass", "jwt",
		"authKey", "auth_key", "X-Goog-Signature", "X-Goog-Credential", "AWSAccessKeyId", "Signature", "dd-api-key", "x-api-key", "authorization", "code"}
	public := []string{"query", "time", "timeout", "step", "dedup", "partial_response", "tenant", "orgId", "X-Amz-Date", "X-Amz-Algorithm",
		"X-Amz-Expires", "X-Amz-SignedHeaders", "sv", "se", "sp", "user", "author", "keyword", "monkey", "zipcode", "codec"}
	for _, name := range credentials {
		if !credentialParam(name) {
			t.Errorf("credentialParam(%q) = false, want true", name)
		}
	}
	for _, name := range public {
		if credentialParam(name) {
			t.Errorf("credentialParam(%q) = true, want false", name)
		}
	}
}

// Secrets holds the Prometheus URL's credentials from a valid input and from a rejected one,
// and the credentials of the URLs of MESHROLL_KUBECONFIG, as YAML or base64.
func TestSecretsOfURLs(t *testing.T) {
	t.Parallel()
	promURL := "MESHROLL_PROMETHEUS_URL=https://user:pa55-word-01@prom.example/api?access_token=" + escapedInQuery
	cfg, err := Load(analysis(promURL))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pa55-word-01", escapedInQuery, escapedToken} {
		if !slices.Contains(cfg.Secrets(), want) {
			t.Errorf("Secrets() lacks %q: %q", want, cfg.Secrets())
		}
	}
	// A rejected run (an unknown variable) is reported with the same secrets.
	if diff := cmp.Diff(cfg.Secrets(), Reporting(analysis(promURL, "MESHROLL_TYPO=1")).Secrets()); diff != "" {
		t.Errorf("Reporting(...).Secrets() differs from Load's (-Load +Reporting):\n%s", diff)
	}
	// The Basic credentials of MESHROLL_PROMETHEUS_USERNAME and _PASSWORD, as a proxy may echo them.
	cfg, err = Load(analysis("MESHROLL_PROMETHEUS_USERNAME=admin", "MESHROLL_PROMETHEUS_PASSWORD=hunter22"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"hunter22", base64.StdEncoding.EncodeToString([]byte("admin:hunter22"))}, cfg.Secrets()); diff != "" {
		t.Errorf("Secrets() of basic auth (-want +got):\n%s", diff)
	}

	kubeconfig := "apiVersion: v1\nclusters:\n- cluster:\n    server: https://kube-tok3n-0123@10.0.0.1:6443/?token=kube-query-secret\n" +
		"    proxy-url: \"http://proxy:pr0xy-pass@proxy.example:3128\"\n  name: prod\n" +
		`- {cluster: {server: https://10.0.0.2/?access_token=flow-map-secret}, name: flow}` + "\n"
	for _, data := range []string{kubeconfig, base64.StdEncoding.EncodeToString([]byte(kubeconfig))} {
		cfg, err := Load(with("MESHROLL_KUBECONFIG=" + data))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"kube-tok3n-0123", "kube-query-secret", "pr0xy-pass", "flow-map-secret"} {
			if !slices.Contains(cfg.Secrets(), want) {
				t.Errorf("Secrets() of MESHROLL_KUBECONFIG %.20q… lacks %q: %q", data, want, cfg.Secrets())
			}
		}
	}
}

// Whatever the token, the URL's secrets hold it as written and decoded, and whatever the
// URL, taking it apart does not panic.
func FuzzURLSecrets(f *testing.F) {
	for _, seed := range []string{escapedToken, "a b", "%zz", "@:/?#&;=", "", "ünïcode"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		urlSecrets(token) // any text, as Reporting takes the input
		if token == "" {
			return
		}
		got := urlSecrets("https://prom.example/api?orgId=7&access_token=" + url.QueryEscape(token) + "#x")
		for _, want := range []string{token, url.QueryEscape(token)} {
			if !slices.Contains(got, want) {
				t.Errorf("urlSecrets of a token %q lacks %q: %q", token, want, got)
			}
		}
		got = urlSecrets("https://" + url.User(token).String() + "@prom.example/")
		if !slices.Contains(got, token) {
			t.Errorf("urlSecrets of a user-only token %q lacks it: %q", token, got)
		}
	})
}
