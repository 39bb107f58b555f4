package main

// The built binary, run end to end against the real control plane in every CI mode: the
// files it leaves, GitHub's output file parsed back to the outputs action.yml declares, and
// no secret anywhere in what it printed or wrote.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const stack = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: default
    route:
    - destination: {host: reviews, subset: v1}
`

// binaryVersion is the VERSION build argument the tests build with.
const binaryVersion = "test-1.2.3"

// builtBinary is meshroll built with the Dockerfile's own go build line, once per test run.
var builtBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "meshroll-bin-")
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "meshroll"), nil
})

func binary(t *testing.T) string {
	t.Helper()
	testenv.SkipShort(t) // a build of the whole binary is no inner-loop test
	bin, err := builtBinary()
	if err != nil {
		t.Fatal(err)
	}
	buildOnce.Do(func() {
		b := dockerfileGoBuild(t, stageNamed(t, parseDockerfile(t, "Dockerfile"), "build"), binaryVersion)
		args := slices.Clone(b.args)
		args[b.outIdx] = bin
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = string(out) + err.Error()
		}
	})
	if buildErr != "" {
		t.Fatalf("go build as in the Dockerfile: %s", buildErr)
	}
	return bin
}

var (
	buildOnce sync.Once
	buildErr  string
)

type binaryRun struct {
	code           int
	stdout, stderr string
	out            string // MESHROLL_OUTPUT_DIR
}

// runBinary runs the binary with args and exactly env (no inherited variables but PATH).
func runBinary(t *testing.T, env map[string]string, args ...string) binaryRun {
	t.Helper()
	bin := binary(t) // built once, before the run's own deadline starts
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(environ(env), "PATH="+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return binaryRun{code: code, stdout: stdout.String(), stderr: stderr.String(), out: env["MESHROLL_OUTPUT_DIR"]}
}

// newStack creates the VirtualService (v1 100), its DestinationRule and an Available canary
// Deployment in a fresh namespace.
func newStack(t *testing.T, env *testenv.Env) string {
	t.Helper()
	ns := env.Namespace(t)
	env.Apply(t, ns, testenv.DestinationRuleManifest("v1", "v2")+"---\n"+stack+"---\n"+testenv.DeploymentManifest("reviews-v2", "v2"))
	if err := env.SetDeploymentStatus(t.Context(), ns, "reviews-v2", true); err != nil {
		t.Fatal(err)
	}
	return ns
}

// A progression in each CI mode, with the cluster credentials given as a secret.
func TestBinaryInEveryCI(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	kubeconfig, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	action := readAction(t)
	for _, tt := range []struct {
		ci       string
		timeout  string            // MESHROLL_TIMEOUT: set with a long hold, the run fails and rolls back
		steps    string            // MESHROLL_STEPS instead of 25,50,100
		echo     bool              // analysis through a proxy that echoes the request's credentials
		urlCreds string            // "echo" or "refused": analysis at a URL with credentials in it (see promURLWithCredentials)
		vars     map[string]string // more variables
		wantCode int
		want     map[string]string // outputs
	}{
		{ci: "github", wantCode: 0, want: map[string]string{"result": "promoted", "canary_weight": "100", "stable_weight": "0", "steps_completed": "3", "failed_check": "", "reason": ""}},
		{ci: "github", timeout: "3s", wantCode: 1, want: map[string]string{"result": "failed", "canary_weight": "0", "stable_weight": "100", "steps_completed": "0", "failed_check": ""}},
		{ci: "gitlab", wantCode: 0, want: map[string]string{"result": "promoted", "canary_weight": "100", "stable_weight": "0", "steps_completed": "3"}},
		{ci: "jenkins", wantCode: 0, want: map[string]string{"result": "promoted", "canary_weight": "100", "stable_weight": "0", "steps_completed": "3"}},
		{ci: "plain", timeout: "3s", wantCode: 1, want: map[string]string{"result": "failed", "canary_weight": "0", "stable_weight": "100"}},
		// Invalid input is reported too, for a later step that reads the outputs.
		{ci: "github", steps: "50,25", wantCode: 2, want: map[string]string{"result": "invalid", "canary_weight": "", "stable_weight": "", "steps_completed": "0"}},
		{ci: "gitlab", steps: "10,101", wantCode: 2, want: map[string]string{"result": "invalid", "canary_weight": ""}},
		// Several problems: one per line on GitHub, joined with "; " in outputs.env.
		{ci: "github", steps: "50,25", vars: map[string]string{"MESHROLL_WEIGHT": "20"}, wantCode: 2, want: map[string]string{"result": "invalid",
			"reason": "MESHROLL_WEIGHT=20: only used with MESHROLL_MODE=phase, but the mode is progress; unset it, or use MESHROLL_MODE=phase; " +
				"MESHROLL_STEPS=50,25: 25 comes after 50 (items 1 and 2); use comma-separated integers from 0 to 100 in strictly ascending order, e.g. 10,25,50,100"}},
		// A proxy in front of Prometheus that echoes the credentials in its error message.
		{ci: "github", echo: true, wantCode: 2, want: map[string]string{"result": "invalid", "canary_weight": "0", "stable_weight": "100", "steps_completed": "0"}},
		// Credentials in the Prometheus URL, echoed back by the server (the preflight rejects
		// the queries) or printed by Go's HTTP client when the connection is refused (failed).
		{ci: "github", urlCreds: "echo", wantCode: 2, want: map[string]string{"result": "invalid", "canary_weight": "0", "stable_weight": "100"}},
		{ci: "github", urlCreds: "refused", wantCode: 1, want: map[string]string{"result": "failed", "canary_weight": "0", "stable_weight": "100"}},
		{ci: "plain", urlCreds: "refused", wantCode: 1, want: map[string]string{"result": "failed", "canary_weight": "0", "stable_weight": "100"}},
	} {
		name := tt.ci
		if tt.timeout != "" {
			name += "/timeout"
		}
		if tt.echo {
			name += "/echoing-proxy"
		}
		if tt.urlCreds != "" {
			name += "/url-credentials-" + tt.urlCreds
		}
		if tt.steps != "" {
			name += "/invalid-input"
		}
		if len(tt.vars) > 0 {
			name += "/several-problems"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ns := newStack(t, env)
			dir := t.TempDir()
			vars := map[string]string{
				"MESHROLL_NAMESPACE":         ns,
				"MESHROLL_VIRTUAL_SERVICE":   "reviews",
				"MESHROLL_STABLE_SUBSET":     "v1",
				"MESHROLL_CANARY_SUBSET":     "v2",
				"MESHROLL_STEPS":             "25,50,100",
				"MESHROLL_STEP_DURATION":     "0s",
				"MESHROLL_CANARY_DEPLOYMENT": "reviews-v2",
				"MESHROLL_KUBECONFIG":        string(kubeconfig),
				"MESHROLL_OUTPUT_DIR":        filepath.Join(dir, "out"),
				"HOME":                       dir,
			}
			if tt.timeout != "" {
				vars["MESHROLL_STEP_DURATION"], vars["MESHROLL_TIMEOUT"] = "1m", tt.timeout
			}
			if tt.steps != "" {
				vars["MESHROLL_STEPS"] = tt.steps
			}
			maps.Copy(vars, tt.vars)
			secrets := []string{string(kubeconfig)}
			if tt.echo {
				const token, tenant = "prom-token-0123456789", "tenant-secret-9876543210"
				secrets = append(secrets, token, tenant)
				proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusBadRequest)
					fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":"rejected %s for tenant %s"}`,
						r.Header.Get("Authorization"), r.Header.Get("X-Scope-OrgID"))
				}))
				t.Cleanup(proxy.Close)
				vars["MESHROLL_PROMETHEUS_URL"] = proxy.URL
				vars["MESHROLL_PROMETHEUS_TOKEN"] = token
				vars["MESHROLL_PROMETHEUS_HEADERS"] = "X-Scope-OrgID: " + tenant
				vars["MESHROLL_STABLE_WORKLOAD"] = "reviews-v1"
				vars["MESHROLL_STEP_DURATION"] = "1m"
			}
			if tt.urlCreds != "" {
				promURL, forms := promURLWithCredentials(t, tt.urlCreds == "echo")
				secrets = append(secrets, forms...)
				vars["MESHROLL_PROMETHEUS_URL"] = promURL
				vars["MESHROLL_STABLE_WORKLOAD"] = "reviews-v1"
				vars["MESHROLL_STEP_DURATION"] = "1m"
			}
			switch tt.ci {
			case "github":
				// The container environment of a `uses:` step: every input through runs.env.
				with := map[string]string{}
				for variable, value := range vars {
					if strings.HasPrefix(variable, "MESHROLL_") {
						with[inputName(variable)] = value
					}
				}
				vars = githubEnv(t, action, with)
				vars["HOME"] = dir
				vars["GITHUB_ACTIONS"] = "true"
				vars["GITHUB_OUTPUT"] = filepath.Join(dir, "github_output")
				vars["GITHUB_STEP_SUMMARY"] = filepath.Join(dir, "step_summary")
			case "gitlab":
				vars["GITLAB_CI"] = "true"
			case "jenkins":
				vars["JENKINS_URL"] = "http://jenkins.example:8080/"
			}

			got := runBinary(t, vars)
			if got.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tt.wantCode, got.stdout, got.stderr)
			}
			outputs := checkFiles(t, got.out)
			for name, want := range tt.want {
				if outputs[name] != want {
					t.Errorf("outputs.env %s=%q, want %q", name, outputs[name], want)
				}
			}
			if !strings.HasPrefix(lastLine(got.stdout), "result: "+tt.want["result"]) {
				t.Errorf("last line of stdout %q, want the result line", lastLine(got.stdout))
			}

			files := map[string]string{"stdout": got.stdout, "stderr": got.stderr}
			entries, _ := os.ReadDir(got.out)
			for _, e := range entries {
				files[e.Name()] = readFile(t, filepath.Join(got.out, e.Name()))
			}
			switch tt.ci {
			case "github":
				github := parseGitHubOutput(t, readFile(t, vars["GITHUB_OUTPUT"]))
				// A reason of several lines keeps them on GitHub; outputs.env joins them with "; ".
				joined := maps.Clone(github)
				joined["reason"] = strings.ReplaceAll(joined["reason"], "\n", "; ")
				if diff := cmp.Diff(outputs, joined); diff != "" {
					t.Errorf("GITHUB_OUTPUT differs from outputs.env (-outputs.env +GITHUB_OUTPUT):\n%s", diff)
				}
				if n := strings.Count(outputs["reason"], "; MESHROLL_"); n > 0 && strings.Count(github["reason"], "\n") != n {
					t.Errorf("GITHUB_OUTPUT reason %q has not one problem per line", github["reason"])
				}
				var declared []string
				for name := range action.Outputs {
					declared = append(declared, name)
				}
				if diff := cmp.Diff(sorted(declared), sorted(keys(github))); diff != "" {
					t.Errorf("GITHUB_OUTPUT names differ from action.yml's outputs (-declared +written):\n%s", diff)
				}
				summary := readFile(t, vars["GITHUB_STEP_SUMMARY"])
				if !strings.Contains(summary, tt.want["result"]) {
					t.Errorf("step summary lacks %q:\n%s", tt.want["result"], summary)
				}
				for _, want := range []string{"::add-mask::", "::group::", "::endgroup::"} {
					// An invalid run, and one whose preflight could not reach Prometheus, has no steps.
					stepless := tt.wantCode == 2 || tt.urlCreds == "refused"
					if !strings.Contains(got.stdout, want) && !(stepless && want != "::add-mask::") {
						t.Errorf("stdout lacks %s:\n%s", want, got.stdout)
					}
				}
				if tt.wantCode != 0 && !strings.Contains(got.stdout, "::error") {
					t.Errorf("a failed run gave no ::error annotation:\n%s", got.stdout)
				}
				files["GITHUB_OUTPUT"], files["GITHUB_STEP_SUMMARY"] = readFile(t, vars["GITHUB_OUTPUT"]), summary
			case "gitlab":
				for _, want := range []string{"section_start:", "section_end:"} {
					if !strings.Contains(got.stdout, want) && tt.wantCode != 2 { // an invalid run has no steps
						t.Errorf("stdout lacks %s:\n%s", want, got.stdout)
					}
				}
			}
			if tt.echo && !strings.Contains(got.stderr, "rejected Bearer ") {
				t.Errorf("stderr lacks the proxy's message, redacted:\n%s", got.stderr)
			}
			// An unreachable Prometheus is named by its host on the first line (the query comes
			// after); an answer that echoes the URL shows it with its token redacted. The
			// credentials are nowhere (assertNoSecrets below).
			first, _, _ := strings.Cut(got.stderr, "\n")
			if tt.urlCreds == "refused" && !strings.Contains(first, "Prometheus at http://127.0.0.1:") {
				t.Errorf("the first line of stderr does not name Prometheus's host:\n%s", got.stderr)
			}
			if tt.urlCreds == "echo" && !strings.Contains(got.stderr, "access_token=***") {
				t.Errorf("stderr lacks the URL with its token redacted:\n%s", got.stderr)
			}
			assertNoSecrets(t, files, secrets[0], secrets[1:]...)
		})
	}
}

// The command line of the built binary: help is printed on stdout and exits 0, an argument
// meshroll does not understand exits 2 with the usage on stderr, and neither writes a file,
// not even GitHub's.
func TestBinaryCommandLine(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args     []string
		wantCode int
		stdout   string // a substring; "" = nothing printed
		stderr   string
	}{
		{args: []string{"--help"}, wantCode: 0, stdout: "Usage:\n  meshroll [MODE]"},
		{args: []string{"help"}, wantCode: 0, stdout: "Usage:\n  meshroll [MODE]"},
		{args: []string{"--dry-run"}, wantCode: 2, stderr: "meshroll: unknown argument \"--dry-run\""},
		{args: []string{"status", "reviews"}, wantCode: 2, stderr: "meshroll: too many arguments"},
		{args: []string{"status"}, wantCode: 2, stderr: "the argument asks for mode status but MESHROLL_MODE=progress"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			env := map[string]string{
				"HOME":                     dir,
				"MESHROLL_MODE":            "progress",
				"MESHROLL_VIRTUAL_SERVICE": "reviews",
				"MESHROLL_STABLE_SUBSET":   "v1",
				"MESHROLL_CANARY_SUBSET":   "v2",
				"MESHROLL_OUTPUT_DIR":      filepath.Join(dir, "out"),
				"GITHUB_ACTIONS":           "true",
				"GITHUB_OUTPUT":            filepath.Join(dir, "github_output"),
				"GITHUB_STEP_SUMMARY":      filepath.Join(dir, "step_summary"),
			}
			got := runBinary(t, env, tt.args...)
			if got.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tt.wantCode, got.stdout, got.stderr)
			}
			for _, c := range []struct{ name, got, want string }{{"stdout", got.stdout, tt.stdout}, {"stderr", got.stderr, tt.stderr}} {
				if (c.want == "") != (c.got == "") || !strings.Contains(c.got, c.want) {
					t.Errorf("%s does not hold %q:\n%s", c.name, c.want, c.got)
				}
			}
			if tt.wantCode == 2 && !strings.Contains(got.stderr, "Usage:") && tt.args[0] != "status" {
				t.Errorf("stderr lacks the usage:\n%s", got.stderr)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				t.Errorf("%s was written", e.Name())
			}
		})
	}
}

// checkFiles checks the four result files and returns outputs.env by output name.
func checkFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	var result struct {
		SchemaVersion int    `json:"schemaVersion"`
		Result        string `json:"result"`
		Steps         []any  `json:"steps"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "result.json"))), &result); err != nil {
		t.Errorf("result.json: %v", err)
	}
	if result.SchemaVersion != 1 || result.Result == "" {
		t.Errorf("result.json: schemaVersion %d, result %q", result.SchemaVersion, result.Result)
	}
	var suite struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
	}
	if err := xml.Unmarshal([]byte(readFile(t, filepath.Join(dir, "junit.xml"))), &suite); err != nil {
		t.Errorf("junit.xml: %v", err)
	}
	if failed := suite.Failures+suite.Errors > 0; suite.Tests == 0 || failed != (result.Result != "promoted") {
		t.Errorf("junit.xml: %d tests, %d failures, %d errors for a %s run", suite.Tests, suite.Failures, suite.Errors, result.Result)
	}
	if summary := readFile(t, filepath.Join(dir, "summary.md")); !strings.Contains(summary, result.Result) {
		t.Errorf("summary.md does not name the result %q:\n%s", result.Result, summary)
	}
	env := readFile(t, filepath.Join(dir, "outputs.env"))
	if len(env) >= 5<<10 {
		t.Errorf("outputs.env is %d bytes, want under 5 KB", len(env))
	}
	outputs := map[string]string{}
	line := regexp.MustCompile(`^MESHROLL_([A-Z0-9_]+)=(.*)$`)
	for _, l := range strings.Split(strings.TrimSuffix(env, "\n"), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("outputs.env line %q is not MESHROLL_NAME=value", l)
			continue
		}
		outputs[strings.ToLower(m[1])] = m[2]
	}
	return outputs
}

// parseGitHubOutput reads GITHUB_OUTPUT: name=value lines and name<<DELIMITER blocks.
func parseGitHubOutput(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if name, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(name, "=") {
			var value []string
			for sc.Scan() && sc.Text() != delim {
				value = append(value, sc.Text())
			}
			out[name] = strings.Join(value, "\n")
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("GITHUB_OUTPUT line %q is neither name=value nor name<<DELIMITER", line)
		}
		out[name] = value
	}
	return out
}

// The credentials of promURLWithCredentials, each needing escaping in a URL: a "+", a "/", "=".
const (
	urlToken    = "pq+Tok3n/Value=="
	urlPassword = "pa55/W0rd+x"
	urlUser     = "glcUserOnlyT0ken42"
)

// promURLWithCredentials starts a loopback Prometheus that answers every query with an error
// echoing the request's URL, its token decoded and its Basic credentials (echo), or reserves a
// loopback port that refuses connections, so that Go's HTTP client prints the URL in its error.
// The URL carries a password (echo) or a user-only token (refused) and an escaped
// access_token. It returns the URL and every form of its credentials that must never be seen.
func promURLWithCredentials(t *testing.T, echo bool) (string, []string) {
	t.Helper()
	userinfo := url.User(urlUser).String()
	forms := []string{urlUser}
	if echo {
		userinfo = url.UserPassword("grafana-1234", urlPassword).String()
		forms = []string{urlPassword, url.PathEscape(urlPassword), base64.StdEncoding.EncodeToString([]byte("grafana-1234:" + urlPassword))}
	}
	forms = append(forms, urlToken, url.QueryEscape(urlToken), url.QueryEscape(url.QueryEscape(urlToken)), url.PathEscape(urlToken))
	var host string
	if echo {
		prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, password, _ := r.BasicAuth()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			msg := fmt.Sprintf("rejected %s (token %s, password %s, %s)", r.URL.RequestURI(), r.URL.Query().Get("access_token"), password, r.Header.Get("Authorization"))
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": "bad_data", "error": msg})
		}))
		t.Cleanup(prom.Close)
		host = prom.Listener.Addr().String()
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		host = l.Addr().String()
		if err := l.Close(); err != nil { // nothing listens there any more: connection refused
			t.Fatal(err)
		}
	}
	return "http://" + userinfo + "@" + host + "/prefix?orgId=7&access_token=" + url.QueryEscape(urlToken), forms
}

// assertNoSecrets fails when a secret, or any line of the kubeconfig (the first secret) that
// carries credentials, appears in an output, except in GitHub's ::add-mask:: commands.
func assertNoSecrets(t *testing.T, files map[string]string, kubeconfig string, others ...string) {
	t.Helper()
	secrets := others
	for _, l := range strings.Split(kubeconfig, "\n") {
		if _, v, ok := strings.Cut(l, "-data: "); ok && len(v) >= 8 {
			secrets = append(secrets, v)
		}
		if _, v, ok := strings.Cut(l, "token: "); ok && len(v) >= 8 {
			secrets = append(secrets, v)
		}
	}
	if len(secrets) == 0 {
		t.Fatal("the test kubeconfig holds no credentials; the secret check would prove nothing")
	}
	for name, text := range files {
		var kept []string
		for _, l := range strings.Split(text, "\n") {
			if !strings.HasPrefix(l, "::add-mask::") {
				kept = append(kept, l)
			}
		}
		text = strings.Join(kept, "\n")
		for _, s := range secrets {
			if strings.Contains(text, s) || strings.Contains(text, s[:len(s)/2]) {
				t.Errorf("%s holds a secret (%.4s…)", name, s)
			}
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sorted(s []string) []string { slices.Sort(s); return s }
