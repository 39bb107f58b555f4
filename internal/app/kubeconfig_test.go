package app

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kubeconfigToken is the credential of the kubeconfigs below: no output may show it.
const kubeconfigToken = "kubeconfig-token-not-printed"

// eksKubeconfig is a kubeconfig as `aws eks update-kubeconfig` writes it: its user runs the
// aws CLI for a token (here a command no machine has, with the token among its arguments).
const eksKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://prod.example:6443"}
contexts:
- name: prod
  context: {cluster: prod, user: eks}
current-context: prod
users:
- name: eks
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: meshroll-test-aws
      args: [eks, get-token, --cluster-name, prod, --role-arn, ` + kubeconfigToken + `]
`

// A kubeconfig meshroll cannot use ends the run before any request: exit 2, the problem on
// the first line, nothing written, and the result files say why. None of these runs reaches
// a cluster.
func TestKubeconfigProblemsEndTheRun(t *testing.T) {
	t.Parallel()
	workspace := t.TempDir()
	missing := filepath.Join(workspace, "_temp", "kubeconfig_1712")
	eks := filepath.Join(workspace, "kubeconfig")
	if err := os.WriteFile(eks, []byte(eksKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	containerHint := "a container (docker run, a container job) sees none of the runner's files outside the workspace, such as the kubeconfig that aws eks update-kubeconfig or azure/k8s-set-context writes: run meshroll on the runner (the GitHub Action does), give the kubeconfig in MESHROLL_KUBECONFIG from a secret holding its YAML or base64, or copy it into the workspace"
	pluginProblem := `credential plugin "meshroll-test-aws" is not installed: context "prod" (user "eks") runs it to get a token, and it is not in PATH. Run meshroll on the runner, where meshroll-test-aws is installed, instead of in a container; use an image that has it; or use a kubeconfig with a ServiceAccount token (https://github.com/meshroll/meshroll/blob/HEAD/docs/ci.md#cluster-access)`
	tests := []struct {
		name string
		vars []string
		want string // the problem, the first line of stderr
	}{
		{name: "KUBECONFIG names a file the container cannot see", vars: []string{"KUBECONFIG=" + missing},
			want: "KUBECONFIG names a file that does not exist: " + missing + ". Check the path; " + containerHint},
		{name: "the EKS credential plugin is not installed", vars: []string{"KUBECONFIG=" + eks},
			want: pluginProblem},
		{name: "the same in MESHROLL_KUBECONFIG", vars: []string{"MESHROLL_KUBECONFIG=" + base64.StdEncoding.EncodeToString([]byte(eksKubeconfig))},
			want: pluginProblem},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			environ := append([]string{
				"HOME=" + t.TempDir(),
				"PATH=" + t.TempDir(), // no credential plugin there
				"MESHROLL_VIRTUAL_SERVICE=reviews",
				"MESHROLL_STABLE_SUBSET=v1",
				"MESHROLL_CANARY_SUBSET=v2",
				"MESHROLL_OUTPUT_DIR=" + out,
			}, tt.vars...)
			var stdout, stderr bytes.Buffer
			code := Main(t.Context(), []string{"meshroll"}, environ, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			lines := strings.SplitN(stderr.String(), "\n", 3)
			if len(lines) < 2 {
				t.Fatalf("stderr:\n%s", stderr.String())
			}
			want := []string{"meshroll: " + tt.want, "Check KUBECONFIG, MESHROLL_KUBECONFIG and MESHROLL_KUBE_CONTEXT; nothing was changed."}
			if diff := cmp.Diff(want, lines[:2]); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			raw, err := os.ReadFile(filepath.Join(out, "result.json"))
			if err != nil {
				t.Fatal(err)
			}
			var result struct{ Result, Reason string }
			if err := json.Unmarshal(raw, &result); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(struct{ Result, Reason string }{"invalid", tt.want}, result); diff != "" {
				t.Errorf("result.json (-want +got):\n%s", diff)
			}
			all := stdout.String() + stderr.String() + string(raw)
			if strings.Contains(all, kubeconfigToken) || strings.Contains(all, "prod.example") {
				t.Errorf("the kubeconfig's contents are in the output:\n%s", all)
			}
		})
	}
}
