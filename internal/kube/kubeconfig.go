package kube

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// containerHint is the fix for a kubeconfig the runner has and meshroll cannot see: a
// container (docker run, a CI job's image) sees only the workspace of the runner's files,
// while `aws eks update-kubeconfig` writes to the runner's home and azure/k8s-set-context to
// its temp directory. The GitHub Action runs meshroll on the runner, where both are seen.
const containerHint = "a container (docker run, a container job) sees none of the runner's files outside the workspace, such as the kubeconfig that aws eks update-kubeconfig or azure/k8s-set-context writes: run meshroll on the runner (the GitHub Action does), give the kubeconfig in MESHROLL_KUBECONFIG from a secret holding its YAML or base64, or copy it into the workspace"

// fileLoader returns the loader of a's kubeconfig files (KUBECONFIG, else ~/.kube/config, else
// the in-cluster service account), and the files of KUBECONFIG that do not exist.
//
// KUBECONFIG's files are merged as kubectl merges them: those that exist are used, and a
// missing one is only named when the load fails for another reason (a context it held is
// not found). KUBECONFIG naming no file that exists is an error even in a pod: the user
// asked for those files, not for the pod's service account. A file that exists but cannot
// be read or parsed is an error, with the parser's message left out: it may quote the file.
func fileLoader(a Access, overrides *clientcmd.ConfigOverrides) (clientcmd.ClientConfig, []string, error) {
	files := a.Kubeconfig
	if len(files) == 0 && a.Home != "" {
		files = []string{filepath.Join(a.Home, ".kube", "config")}
	}
	var missing []string
	found := 0
	for _, f := range files {
		_, err := clientcmd.LoadFromFile(f)
		switch {
		case err == nil:
			found++
		case !errors.Is(err, fs.ErrNotExist):
			return nil, nil, unreadable(a, f, err)
		case !slices.Contains(missing, f):
			missing = append(missing, f)
		}
	}
	if len(a.Kubeconfig) > 0 && found == 0 {
		what, check := "a file that does not exist", "Check the path"
		if len(missing) > 1 {
			what, check = "files that do not exist", "Check the paths"
		}
		return nil, nil, fmt.Errorf("KUBECONFIG names %s: %s. %s; %s", what, strings.Join(missing, ", "), check, containerHint)
	}
	if len(a.Kubeconfig) == 0 {
		missing = nil // the default file: said only when there is no service account either
	}
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: files}
	// With no kubeconfig file at all, the deferred loader falls back to the in-cluster
	// service account (KUBERNETES_SERVICE_HOST and the mounted token).
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides), missing, nil
}

// unreadable says why the kubeconfig file f, which exists, cannot be used.
func unreadable(a Access, f string, err error) error {
	name := "KUBECONFIG file " + f
	if len(a.Kubeconfig) == 0 {
		name = "the kubeconfig " + f
	}
	if info, statErr := os.Stat(f); statErr == nil && info.IsDir() {
		return fmt.Errorf("%s is a directory, not a kubeconfig file", name)
	}
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s cannot be read by meshroll's user (uid %d): make it readable by that user, or run meshroll as the file's owner (docker run -u \"$(id -u):$(id -g)\")", name, os.Getuid())
	case errors.As(err, &pathErr):
		return fmt.Errorf("%s cannot be read: %v", name, pathErr.Err)
	default:
		// The parser's message may quote the file, credentials included.
		return fmt.Errorf("%s is not a kubeconfig (YAML): `kubectl config view --kubeconfig %s` shows where it goes wrong", name, f)
	}
}

// kubeconfigProblem explains why the kubeconfig raw gives no cluster access (loadErr is
// client-go's error), or returns nil when it cannot tell: the caller then wraps loadErr.
func kubeconfigProblem(a Access, raw clientcmdapi.Config, missing []string, loadErr error) error {
	source := "KUBECONFIG"
	// No kubeconfig and no service account, rather than a service account that failed.
	noConfig := clientcmd.IsEmptyConfig(loadErr)
	switch {
	case a.Data != "":
		source = "MESHROLL_KUBECONFIG"
	case len(a.Kubeconfig) == 0 && a.Home == "":
		if !noConfig {
			return nil
		}
		return errors.New("no kubeconfig: KUBECONFIG and HOME are unset, and this is not a pod with a service account. Set KUBECONFIG or MESHROLL_KUBECONFIG; " + containerHint)
	case len(a.Kubeconfig) == 0:
		home := filepath.Join(a.Home, ".kube", "config")
		if _, err := os.Stat(home); errors.Is(err, fs.ErrNotExist) {
			if !noConfig {
				return nil
			}
			return fmt.Errorf("no kubeconfig: KUBECONFIG is unset, %s does not exist, and this is not a pod with a service account. Set KUBECONFIG or MESHROLL_KUBECONFIG; %s", home, containerHint)
		}
		source = home
	}
	note := missingNote(missing)
	name := raw.CurrentContext
	switch {
	case a.Context != "" && raw.Contexts[a.Context] == nil:
		return fmt.Errorf("context %q (MESHROLL_KUBE_CONTEXT) is not in %s: it has %s%s", a.Context, source, contextNames(raw), note)
	case a.Context != "":
		name = a.Context
	case len(raw.Contexts) == 0:
		return fmt.Errorf("%s holds no context: give a kubeconfig with a context for the cluster%s", source, note)
	case name == "":
		return fmt.Errorf("%s has no current-context: set MESHROLL_KUBE_CONTEXT to one of its contexts (%s)%s", source, contextNames(raw), note)
	case raw.Contexts[name] == nil:
		return fmt.Errorf("current-context %q is not a context of %s: it has %s; set MESHROLL_KUBE_CONTEXT to one of them%s", name, source, contextNames(raw), note)
	}
	ctx := raw.Contexts[name]
	if raw.Clusters[ctx.Cluster] == nil {
		return fmt.Errorf("context %q names cluster %q, which %s does not hold%s", name, ctx.Cluster, source, note)
	}
	return missingFiles(name, ctx, raw)
}

// contextNames lists the contexts of raw for a message, at most ten.
func contextNames(raw clientcmdapi.Config) string {
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range raw.Contexts {
			if !yield(fmt.Sprintf("%q", n)) {
				return
			}
		}
	})
	switch {
	case len(names) == 0:
		return "none"
	case len(names) > 10:
		return strings.Join(names[:10], ", ") + fmt.Sprintf(" and %d more", len(names)-10)
	}
	return strings.Join(names, ", ")
}

// missingNote names, for a message about a failed load, KUBECONFIG's files that do not exist:
// what the load missed may be in them.
func missingNote(missing []string) string {
	switch len(missing) {
	case 0:
		return ""
	case 1:
		return "; KUBECONFIG also names " + missing[0] + ", which does not exist"
	}
	return "; KUBECONFIG also names " + strings.Join(missing, ", ") + ", which do not exist"
}

// missingFiles says which files the context's cluster and user name do not exist: certificates
// and tokens given by path, typical of a kubeconfig copied from the runner into a container.
func missingFiles(name string, ctx *clientcmdapi.Context, raw clientcmdapi.Config) error {
	var refs []struct{ what, path string }
	if cluster := raw.Clusters[ctx.Cluster]; cluster != nil {
		refs = append(refs, struct{ what, path string }{fmt.Sprintf("certificate-authority of cluster %q", ctx.Cluster), cluster.CertificateAuthority})
	}
	if user := raw.AuthInfos[ctx.AuthInfo]; user != nil {
		u := fmt.Sprintf("%q", ctx.AuthInfo)
		refs = append(refs, []struct{ what, path string }{
			{"client-certificate of user " + u, user.ClientCertificate},
			{"client-key of user " + u, user.ClientKey},
			{"tokenFile of user " + u, user.TokenFile},
		}...)
	}
	var gone []string
	for _, r := range refs {
		if r.path == "" {
			continue
		}
		if _, err := os.Stat(r.path); errors.Is(err, fs.ErrNotExist) {
			gone = append(gone, fmt.Sprintf("%s (%s)", r.path, r.what))
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return fmt.Errorf("context %q names files that do not exist: %s. Embed them in the kubeconfig (certificate-authority-data, client-certificate-data, client-key-data, token), or check the paths; %s", name, strings.Join(gone, ", "), containerHint)
}
