package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// accessDocs shows how to give meshroll a ServiceAccount token instead of a cloud login.
const accessDocs = "https://github.com/meshroll/meshroll/blob/HEAD/docs/ci.md#cluster-access"

// credentialProblem finds, before any request, what client-go would only find at the first
// one: a certificate or token file that does not exist, an auth-provider it no longer has, a
// credential plugin (exec) that is not installed — typical of a cloud's kubeconfig (EKS's
// aws, GKE's gke-gcloud-auth-plugin, AKS's kubelogin) used in the scratch image. It points
// cfg's credential plugin at the executable found in a.Path, so that the plugin checked is
// the plugin run.
func credentialProblem(a Access, raw clientcmdapi.Config, cfg *rest.Config) error {
	name := a.Context
	if name == "" {
		name = raw.CurrentContext
	}
	ctx := raw.Contexts[name]
	if ctx == nil {
		return nil // the in-cluster service account
	}
	if err := missingFiles(name, ctx, raw); err != nil {
		return err
	}
	who := fmt.Sprintf("context %q (user %q)", name, ctx.AuthInfo)
	if p := cfg.AuthProvider; p != nil {
		return authProviderProblem(p.Name, who)
	}
	// Windows finds commands by PATHEXT as well: client-go's own error will do there.
	if cfg.ExecProvider == nil || runtime.GOOS == "windows" {
		return nil
	}
	command := cfg.ExecProvider.Command
	found, ok := lookPath(command, a.Path)
	if !ok {
		return pluginProblem(command, who, a.Path)
	}
	plugin := *cfg.ExecProvider // not the loader's own
	plugin.Command = found
	cfg.ExecProvider = &plugin
	return nil
}

// pluginProblem says that the credential plugin command, which who needs, is not there.
func pluginProblem(command, who, path string) error {
	fixes := fmt.Sprintf("Run meshroll on the runner, where %s is installed, instead of in a container; use an image that has it; or use a kubeconfig with a ServiceAccount token (%s)", filepath.Base(command), accessDocs)
	if strings.Contains(command, "/") {
		return fmt.Errorf("credential plugin %s does not exist or is not executable: %s runs it to get a token. %s", command, who, fixes)
	}
	where := "it is not in PATH"
	if path == "" {
		where = "PATH is empty"
	}
	return fmt.Errorf("credential plugin %q is not installed: %s runs it to get a token, and %s. %s", command, who, where, fixes)
}

// authProviderProblem says that the auth-provider name, which who uses, is not supported:
// meshroll links none of client-go's auth-provider plugins, and gcp and azure are gone from
// client-go since Kubernetes 1.26.
func authProviderProblem(name, who string) error {
	var fix string
	switch name {
	case "gcp":
		fix = "Kubernetes clients dropped it in 1.26. Install gke-gcloud-auth-plugin and run gcloud container clusters get-credentials again"
	case "azure":
		fix = "Kubernetes clients dropped it in 1.26. Convert the kubeconfig with kubelogin convert-kubeconfig"
	default:
		fix = "meshroll has no auth-provider plugins. Use a credential plugin (exec) instead"
	}
	return fmt.Errorf("auth-provider %q is not supported: %s uses it, and %s, or use a kubeconfig with a ServiceAccount token (%s)", name, who, fix, accessDocs)
}

// lookPath finds command as exec.LookPath does with PATH set to path: a name with a slash as
// it is, else the first executable file of that name in an absolute directory of path
// (exec.LookPath refuses what it finds through a relative one).
func lookPath(command, path string) (string, bool) {
	if strings.Contains(command, "/") {
		if !executable(command) {
			return "", false
		}
		return command, true
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		if p := filepath.Join(dir, command); executable(p) {
			return p, true
		}
	}
	return "", false
}

func executable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0
}
