package kube

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const clusters = `apiVersion: v1
kind: Config
clusters:
- name: staging
  cluster: {server: "https://staging.example:6443"}
- name: prod
  cluster: {server: "https://prod.example:6443"}
users:
- name: ci
  user: {token: not-printed}
`

const contexts = `apiVersion: v1
kind: Config
contexts:
- name: staging
  context: {cluster: staging, user: ci, namespace: shop}
- name: prod
  context: {cluster: prod, user: ci}
current-context: staging
`

func write(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConnect(t *testing.T) {
	t.Parallel()
	files := []string{write(t, "contexts", contexts), write(t, "clusters", clusters)}
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o755); err != nil {
		t.Fatal(err)
	}
	homeConfig := strings.Replace(clusters+strings.TrimPrefix(contexts, "apiVersion: v1\nkind: Config\n"), "current-context: staging", "current-context: prod", 1)
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), []byte(homeConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	merged := clusters + strings.TrimPrefix(contexts, "apiVersion: v1\nkind: Config\n")
	tests := []struct {
		name          string
		access        Access
		wantHost      string
		wantNamespace string
	}{
		{name: "several files merged, current context", access: Access{Kubeconfig: files}, wantHost: "https://staging.example:6443", wantNamespace: "shop"},
		{name: "context chosen", access: Access{Kubeconfig: files, Context: "prod"}, wantHost: "https://prod.example:6443", wantNamespace: "default"},
		{name: "home config when KUBECONFIG is empty", access: Access{Home: home}, wantHost: "https://prod.example:6443", wantNamespace: "default"},
		{name: "contents as YAML", access: Access{Data: merged, Kubeconfig: files, Context: "prod"}, wantHost: "https://prod.example:6443", wantNamespace: "default"},
		{name: "contents as base64", access: Access{Data: base64.StdEncoding.EncodeToString([]byte(merged))}, wantHost: "https://staging.example:6443", wantNamespace: "shop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Connect(tt.access)
			if err != nil {
				t.Fatal(err)
			}
			if c.Host != tt.wantHost || c.Namespace != tt.wantNamespace {
				t.Errorf("host %s namespace %s, want %s %s", c.Host, c.Namespace, tt.wantHost, tt.wantNamespace)
			}
		})
	}
}
