package app

import (
	"os/exec"
	"strings"
	"testing"
)

// The layout of DESIGN.md: config, kube, traffic and judge import no other internal
// package; traffic/cluster (what every backend does in the cluster around its routing object)
// imports traffic and kube only; the traffic backends (traffic/istio, traffic/gatewayapi)
// import those three only;
// the lease implements rollout's Lock with rollout's types; analysis knows config only (its
// validated input); rollout knows config, traffic, analysis and judge (types and errors)
// only; gates knows config only; testenv and demo are never linked into meshroll.
func TestLayout(t *testing.T) {
	t.Parallel()
	const module = "github.com/meshroll/meshroll/"
	allowed := map[string][]string{
		"internal/config":             nil,
		"internal/testenv":            nil,
		"internal/kube":               nil,
		"internal/traffic":            nil,
		"internal/traffic/cluster":    {"internal/kube", "internal/traffic"},
		"internal/traffic/istio":      {"internal/kube", "internal/traffic", "internal/traffic/cluster"},
		"internal/traffic/gatewayapi": {"internal/kube", "internal/traffic", "internal/traffic/cluster"},
		"internal/lease":              {"internal/analysis", "internal/config", "internal/judge", "internal/kube", "internal/rollout", "internal/traffic"},
		"internal/analysis":           {"internal/config"},
		"internal/rollout":            {"internal/analysis", "internal/config", "internal/judge", "internal/traffic"},
		"internal/judge":              nil,
		"internal/gates":              {"internal/config", "internal/kube"},
		"internal/report":             {"internal/analysis", "internal/config", "internal/judge", "internal/rollout", "internal/traffic"},
		".":                           {"internal/analysis", "internal/app", "internal/config", "internal/gates", "internal/judge", "internal/kube", "internal/lease", "internal/report", "internal/rollout", "internal/traffic", "internal/traffic/cluster", "internal/traffic/gatewayapi", "internal/traffic/istio"},
	}
	for pkg, want := range allowed {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", strings.TrimSuffix(module+pkg, "/.")).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			internal, ok := strings.CutPrefix(dep, module)
			if !ok || internal == pkg || dep == strings.TrimSuffix(module, "/") {
				continue
			}
			found := false
			for _, w := range want {
				found = found || w == internal
			}
			if !found {
				t.Errorf("%s imports %s", pkg, internal)
			}
		}
	}
}

// text/template (and html/template) look methods up by name through reflection, which stops
// the linker from dropping any exported method: meshroll's binary grew from 29 to 50 MB when
// internal/analysis executed a template. Custom queries use text/template/parse instead.
func TestNoTemplateExecution(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}: {{.Imports}}", "github.com/meshroll/meshroll", "github.com/meshroll/meshroll/internal/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		for _, dep := range strings.Fields(strings.Trim(imports, "[]")) {
			if (dep == "text/template" || dep == "html/template") && !strings.Contains(pkg, "/internal/testenv") && !strings.Contains(pkg, "/internal/demo") {
				t.Errorf("%s imports %s; keep it out of meshroll (see internal/analysis/template.go)", pkg, dep)
			}
		}
	}
}
