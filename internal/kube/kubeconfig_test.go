package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// secret is in every kubeconfig of these tests, and must be in no message.
const secret = "not-printed"

// kubeconfigWith is a kubeconfig whose context prod (the current one) uses user ci as given
// in YAML flow style.
func kubeconfigWith(user string) string {
	return `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://prod.example:6443"}
contexts:
- name: prod
  context: {cluster: prod, user: ci}
current-context: prod
users:
- name: ci
  user: ` + user + "\n"
}

// execUser runs command as its credential plugin, with the secret among its arguments.
func execUser(command string) string {
	return `{exec: {apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never, command: "` + command + `", args: [--token, ` + secret + `]}}`
}

// writeExecutable writes a plugin that does nothing, and returns its path.
func writeExecutable(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// skipInPod skips a test of what happens without any kubeconfig where the in-cluster service
// account would be used instead.
func skipInPod(t *testing.T) {
	t.Helper()
	if _, err := rest.InClusterConfig(); err == nil {
		t.Skip("in a pod with a service account, which meshroll would use")
	}
}

func TestConnectSaysWhatIsWrong(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gone, gone2 := filepath.Join(dir, "gone"), filepath.Join(dir, "gone2")
	token := write(t, "token", kubeconfigWith("{token: "+secret+"}"))
	staging := write(t, "staging", strings.NewReplacer("prod", "staging").Replace(kubeconfigWith("{token: "+secret+"}")))
	noCurrent := write(t, "no-current", strings.Replace(kubeconfigWith("{token: "+secret+"}"), "current-context: prod\n", "", 1))
	noSuchCurrent := write(t, "no-such-current", strings.Replace(kubeconfigWith("{token: "+secret+"}"), "current-context: prod", "current-context: dev", 1))
	noCluster := write(t, "no-cluster", strings.Replace(kubeconfigWith("{token: "+secret+"}"), "{cluster: prod,", "{cluster: east,", 1))
	notYAML := write(t, "not-yaml", "users:\n- name: ci\n  user: {token: ["+secret+"}\n")
	empty := write(t, "empty", "")
	missingPlugin := execUser("meshroll-test-no-such-plugin")
	notExecutable := write(t, "not-executable", "#!/bin/sh\n") // in dir, on no PATH of these tests but one
	tokenFile := filepath.Join(dir, "sa-token")
	home := homeWith(t, noCurrent)
	pluginProblem := func(command string) string {
		return `credential plugin "` + command + `" is not installed: context "prod" (user "ci") runs it to get a token, and it is not in PATH. Run meshroll on the runner, where ` + command + ` is installed, instead of in a container; use an image that has it; or use a kubeconfig with a ServiceAccount token (` + accessDocs + ")"
	}
	tests := []struct {
		name   string
		access Access
		inPod  bool // skipped in a pod: the service account would be used
		want   string
	}{
		{name: "KUBECONFIG names a missing file", access: Access{Kubeconfig: []string{gone}},
			want: "KUBECONFIG names a file that does not exist: " + gone + ". Check the path; " + containerHint},
		{name: "KUBECONFIG names missing files", access: Access{Kubeconfig: []string{gone, gone2, gone}},
			want: "KUBECONFIG names files that do not exist: " + gone + ", " + gone2 + ". Check the paths; " + containerHint},
		{name: "a missing file held the context", access: Access{Kubeconfig: []string{staging, gone}, Context: "prod"},
			want: `context "prod" (MESHROLL_KUBE_CONTEXT) is not in KUBECONFIG: it has "staging"; KUBECONFIG also names ` + gone + ", which does not exist"},
		{name: "no KUBECONFIG, no ~/.kube/config", access: Access{Home: dir}, inPod: true,
			want: "no kubeconfig: KUBECONFIG is unset, " + filepath.Join(dir, ".kube", "config") + " does not exist, and this is not a pod with a service account. Set KUBECONFIG or MESHROLL_KUBECONFIG; " + containerHint},
		{name: "no KUBECONFIG, no HOME", access: Access{}, inPod: true,
			want: "no kubeconfig: KUBECONFIG and HOME are unset, and this is not a pod with a service account. Set KUBECONFIG or MESHROLL_KUBECONFIG; " + containerHint},
		{name: "a directory", access: Access{Kubeconfig: []string{dir}},
			want: "KUBECONFIG file " + dir + " is a directory, not a kubeconfig file"},
		{name: "not YAML, not quoted", access: Access{Kubeconfig: []string{notYAML}},
			want: "KUBECONFIG file " + notYAML + " is not a kubeconfig (YAML): `kubectl config view --kubeconfig " + notYAML + "` shows where it goes wrong"},
		{name: "MESHROLL_KUBECONFIG not a kubeconfig", access: Access{Data: "token: " + secret + "\n\tnot: [yaml"},
			want: "MESHROLL_KUBECONFIG is not a kubeconfig (YAML, or base64 of YAML)"},
		{name: "an empty file", access: Access{Kubeconfig: []string{empty}},
			want: "KUBECONFIG holds no context: give a kubeconfig with a context for the cluster"},
		{name: "unknown context", access: Access{Kubeconfig: []string{token, staging}, Context: "dev"},
			want: `context "dev" (MESHROLL_KUBE_CONTEXT) is not in KUBECONFIG: it has "prod", "staging"`},
		{name: "no current-context", access: Access{Kubeconfig: []string{noCurrent}},
			want: `KUBECONFIG has no current-context: set MESHROLL_KUBE_CONTEXT to one of its contexts ("prod")`},
		{name: "current-context is no context of the file", access: Access{Kubeconfig: []string{noSuchCurrent}},
			want: `current-context "dev" is not a context of KUBECONFIG: it has "prod"; set MESHROLL_KUBE_CONTEXT to one of them`},
		{name: "the context's cluster is missing", access: Access{Kubeconfig: []string{noCluster}},
			want: `context "prod" names cluster "east", which KUBECONFIG does not hold`},
		{name: "~/.kube/config has no current-context", access: Access{Home: home},
			want: filepath.Join(home, ".kube", "config") + ` has no current-context: set MESHROLL_KUBE_CONTEXT to one of its contexts ("prod")`},
		{name: "tokenFile missing", access: Access{Data: kubeconfigWith("{tokenFile: " + tokenFile + "}")},
			want: `context "prod" names files that do not exist: ` + tokenFile + ` (tokenFile of user "ci"). Embed them in the kubeconfig (certificate-authority-data, client-certificate-data, client-key-data, token), or check the paths; ` + containerHint},
		{name: "credential plugin not installed", access: Access{Kubeconfig: []string{write(t, "eks", kubeconfigWith(missingPlugin))}, Path: t.TempDir()},
			want: pluginProblem("meshroll-test-no-such-plugin")},
		{name: "credential plugin not installed, in MESHROLL_KUBECONFIG", access: Access{Data: kubeconfigWith(missingPlugin), Path: t.TempDir() + string(os.PathListSeparator) + "relative"},
			want: pluginProblem("meshroll-test-no-such-plugin")},
		{name: "credential plugin not executable", access: Access{Data: kubeconfigWith(execUser("not-executable")), Path: filepath.Dir(notExecutable)},
			want: pluginProblem("not-executable")},
		{name: "no PATH", access: Access{Data: kubeconfigWith(execUser("aws"))},
			want: `credential plugin "aws" is not installed: context "prod" (user "ci") runs it to get a token, and PATH is empty. Run meshroll on the runner, where aws is installed, instead of in a container; use an image that has it; or use a kubeconfig with a ServiceAccount token (` + accessDocs + ")"},
		{name: "credential plugin by path", access: Access{Data: kubeconfigWith(execUser(gone)), Path: dir},
			want: "credential plugin " + gone + ` does not exist or is not executable: context "prod" (user "ci") runs it to get a token. Run meshroll on the runner, where gone is installed, instead of in a container; use an image that has it; or use a kubeconfig with a ServiceAccount token (` + accessDocs + ")"},
		{name: "auth-provider gcp", access: Access{Data: kubeconfigWith("{auth-provider: {name: gcp, config: {access-token: " + secret + "}}}")},
			want: `auth-provider "gcp" is not supported: context "prod" (user "ci") uses it, and Kubernetes clients dropped it in 1.26. Install gke-gcloud-auth-plugin and run gcloud container clusters get-credentials again, or use a kubeconfig with a ServiceAccount token (` + accessDocs + ")"},
		{name: "auth-provider azure", access: Access{Data: kubeconfigWith("{auth-provider: {name: azure}}")},
			want: `auth-provider "azure" is not supported: context "prod" (user "ci") uses it, and Kubernetes clients dropped it in 1.26. Convert the kubeconfig with kubelogin convert-kubeconfig, or use a kubeconfig with a ServiceAccount token (` + accessDocs + ")"},
		{name: "auth-provider oidc", access: Access{Data: kubeconfigWith("{auth-provider: {name: oidc, config: {id-token: " + secret + "}}}")},
			want: `auth-provider "oidc" is not supported: context "prod" (user "ci") uses it, and meshroll has no auth-provider plugins. Use a credential plugin (exec) instead, or use a kubeconfig with a ServiceAccount token (` + accessDocs + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.inPod {
				skipInPod(t)
			}
			_, err := Connect(tt.access)
			if err == nil {
				t.Fatal("Connect succeeded")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the kubeconfig's secret is in the error: %v", err)
			}
		})
	}
}

// homeWith returns a home directory whose ~/.kube/config is a copy of file.
func homeWith(t *testing.T, file string) string {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), text, 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

func TestConnectAcceptsWhatWorks(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	writeExecutable(t, bin, "meshroll-test-plugin")
	dir := t.TempDir()
	writeExecutable(t, dir, "beside-the-kubeconfig")
	token := write(t, "token", kubeconfigWith("{token: "+secret+"}"))
	tests := []struct {
		name   string
		access Access
	}{
		{name: "credential plugin on PATH", access: Access{Data: kubeconfigWith(execUser("meshroll-test-plugin")), Path: "relative" + string(os.PathListSeparator) + bin}},
		{name: "credential plugin beside the kubeconfig", access: Access{Kubeconfig: []string{writeIn(t, dir, "config", kubeconfigWith(execUser("./beside-the-kubeconfig")))}}},
		{name: "a missing file beside one that exists, as kubectl merges them", access: Access{Kubeconfig: []string{filepath.Join(dir, "gone"), token}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Connect(tt.access)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff("https://prod.example:6443", c.Host); diff != "" {
				t.Errorf("host (-want +got):\n%s", diff)
			}
		})
	}
}

func writeIn(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The plugin client-go runs is the one found on Access.Path, not one of the process's PATH.
func TestCredentialPluginRunIsTheOneFound(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	plugin := writeExecutable(t, bin, "meshroll-test-plugin")
	raw, err := clientcmd.Load([]byte(kubeconfigWith(execUser("meshroll-test-plugin"))))
	if err != nil {
		t.Fatal(err)
	}
	loader := clientcmd.NewNonInteractiveClientConfig(*raw, "", &clientcmd.ConfigOverrides{}, nil)
	cfg, err := loader.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := credentialProblem(Access{Path: bin}, *raw, cfg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(plugin, cfg.ExecProvider.Command); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("meshroll-test-plugin", raw.AuthInfos["ci"].Exec.Command); diff != "" {
		t.Errorf("the loader's own config changed (-want +got):\n%s", diff)
	}
}

func TestLookPath(t *testing.T) {
	t.Parallel()
	first, second := t.TempDir(), t.TempDir()
	plugin := writeExecutable(t, second, "plugin")
	writeExecutable(t, first, "other")
	if err := os.WriteFile(filepath.Join(first, "plugin"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(first, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	list := func(dirs ...string) string { return strings.Join(dirs, string(os.PathListSeparator)) }
	tests := []struct {
		command, path string
		want          string // "": not found
	}{
		{command: "plugin", path: list(first, second), want: plugin},
		{command: "plugin", path: list(first)},
		{command: "dir", path: list(first)},
		{command: "plugin", path: ""},
		{command: "plugin", path: list(".", "", "relative/"+filepath.Base(second))},
		{command: plugin, path: "", want: plugin},
		{command: filepath.Join(first, "plugin"), path: list(second)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s in %s", tt.command, tt.path), func(t *testing.T) {
			t.Parallel()
			got, ok := lookPath(tt.command, tt.path)
			if diff := cmp.Diff(tt.want, got); diff != "" || ok != (tt.want != "") {
				t.Errorf("lookPath = %q, %t; want %q (-want +got):\n%s", got, ok, tt.want, diff)
			}
		})
	}
}

func TestConnectUnreadableKubeconfig(t *testing.T) {
	t.Parallel()
	if os.Getuid() == 0 {
		t.Skip("root reads every file")
	}
	path := write(t, "config", kubeconfigWith("{token: "+secret+"}"))
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := Connect(Access{Kubeconfig: []string{path}})
	want := fmt.Sprintf(`KUBECONFIG file %s cannot be read by meshroll's user (uid %d): make it readable by that user, or run meshroll as the file's owner (docker run -u "$(id -u):$(id -g)")`, path, os.Getuid())
	if err == nil {
		t.Fatal("Connect succeeded")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}
