package main

// Release tests: .goreleaser.yaml and .github/workflows/release.yml against the Dockerfile,
// the action's install script and each other, and a build of every released target as
// GoReleaser builds it. No network: `goreleaser check` (make release-check) needs GoReleaser
// built from source, minutes on a cold machine, so CI holds the configuration here instead.

import (
	"debug/elf"
	"debug/macho"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

const (
	goreleaserPath = ".goreleaser.yaml"
	releasePath    = ".github/workflows/release.yml"
)

// goreleaserConfig is the part of .goreleaser.yaml meshroll uses. Parsed strictly: a key it
// does not model (a typo, or a section added without a test) fails.
type goreleaserConfig struct {
	Version     int    `json:"version"`
	ProjectName string `json:"project_name"`
	Builds      []struct {
		ID           string   `json:"id"`
		Main         string   `json:"main"`
		Binary       string   `json:"binary"`
		Env          []string `json:"env"`
		Goos         []string `json:"goos"`
		Goarch       []string `json:"goarch"`
		Flags        []string `json:"flags"`
		Ldflags      []string `json:"ldflags"`
		ModTimestamp string   `json:"mod_timestamp"`
	} `json:"builds"`
	Archives []struct {
		ID           string   `json:"id"`
		IDs          []string `json:"ids"`
		Formats      []string `json:"formats"`
		NameTemplate string   `json:"name_template"`
		Files        []string `json:"files"`
	} `json:"archives"`
	Checksum struct {
		NameTemplate string `json:"name_template"`
		Algorithm    string `json:"algorithm"`
	} `json:"checksum"`
	SBOMs []struct {
		ID        string   `json:"id"`
		Artifacts string   `json:"artifacts"`
		Documents []string `json:"documents"`
	} `json:"sboms"`
	Signs []struct {
		ID        string   `json:"id"`
		Cmd       string   `json:"cmd"`
		Artifacts string   `json:"artifacts"`
		Signature string   `json:"signature"`
		Args      []string `json:"args"`
	} `json:"signs"`
	Release struct {
		GitHub struct {
			Owner string `json:"owner"`
			Name  string `json:"name"`
		} `json:"github"`
		Prerelease   string `json:"prerelease"`
		NameTemplate string `json:"name_template"`
	} `json:"release"`
	Changelog struct {
		Use string `json:"use"`
	} `json:"changelog"`
}

func readGoreleaser(t *testing.T) goreleaserConfig {
	t.Helper()
	raw, err := os.ReadFile(goreleaserPath)
	if err != nil {
		t.Fatal(err)
	}
	var c goreleaserConfig
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		t.Fatalf("%s: %v", goreleaserPath, err)
	}
	if len(c.Builds) != 1 || len(c.Archives) != 1 {
		t.Fatalf("%s: %d builds and %d archives, want one of each", goreleaserPath, len(c.Builds), len(c.Archives))
	}
	return c
}

// templateData is what GoReleaser gives its name templates (the fields meshroll's use).
type templateData struct {
	ProjectName, Tag, Version, Os, Arch, ArtifactName, CommitTimestamp string
}

// render executes a GoReleaser template (Go's text/template, as GoReleaser's are) for a tag
// and a target.
func (c goreleaserConfig) render(t *testing.T, text, tag, goos, goarch string) string {
	t.Helper()
	tpl, err := template.New("").Option("missingkey=error").Parse(text)
	if err != nil {
		t.Fatalf("%s: template %q: %v", goreleaserPath, text, err)
	}
	var b strings.Builder
	data := templateData{ProjectName: c.ProjectName, Tag: tag, Version: strings.TrimPrefix(tag, "v"), Os: goos, Arch: goarch, CommitTimestamp: "1700000000"}
	if err := tpl.Execute(&b, data); err != nil {
		t.Fatalf("%s: template %q: %v", goreleaserPath, text, err)
	}
	return b.String()
}

// releaseAssets are the files of a release the action's install script reads.
type releaseAssets struct {
	archives  map[string]string // "linux/amd64" → archive file name
	checksums string
}

func (c goreleaserConfig) assets(t *testing.T, tag string) releaseAssets {
	t.Helper()
	a := releaseAssets{archives: map[string]string{}, checksums: c.render(t, c.Checksum.NameTemplate, tag, "", "")}
	for _, goos := range c.Builds[0].Goos {
		for _, goarch := range c.Builds[0].Goarch {
			a.archives[goos+"/"+goarch] = c.render(t, c.Archives[0].NameTemplate, tag, goos, goarch) + "." + c.Archives[0].Formats[0]
		}
	}
	return a
}

func TestReleaseConfig(t *testing.T) {
	t.Parallel()
	c := readGoreleaser(t)
	if c.Version != 2 || c.ProjectName != "meshroll" {
		t.Errorf("version %d, project_name %q; want 2, meshroll", c.Version, c.ProjectName)
	}

	// The binaries: every runner the action supports, built as the Dockerfile builds.
	b := c.Builds[0]
	if b.Main != "." || b.Binary != "meshroll" {
		t.Errorf("builds: main %q, binary %q; want ., meshroll", b.Main, b.Binary)
	}
	for what, got := range map[string][]string{"goos": b.Goos, "goarch": b.Goarch} {
		want := map[string][]string{"goos": {"darwin", "linux"}, "goarch": {"amd64", "arm64"}}[what]
		if diff := cmp.Diff(want, sorted(slices.Clone(got))); diff != "" {
			t.Errorf("builds: %s (-want +got):\n%s", what, diff)
		}
	}
	docker := dockerfileGoBuild(t, stageNamed(t, parseDockerfile(t, "Dockerfile"), "build"), "{{ .Tag }}")
	if !slices.Contains(docker.env, "CGO_ENABLED=0") || !slices.Equal(b.Env, []string{"CGO_ENABLED=0"}) {
		t.Errorf("builds: env %q, want [CGO_ENABLED=0] as the Dockerfile's %q", b.Env, docker.env)
	}
	var dockerFlags []string
	dockerLdflags := ""
	for i := 1; i < len(docker.args); i++ { // after "build"
		switch arg := docker.args[i]; {
		case arg == "-ldflags":
			dockerLdflags = docker.args[i+1]
			i++
		case arg == "-o":
			i++
		case arg != ".":
			dockerFlags = append(dockerFlags, arg)
		}
	}
	if diff := cmp.Diff(dockerFlags, b.Flags); diff != "" {
		t.Errorf("builds: flags differ from the Dockerfile's go build (-Dockerfile +goreleaser):\n%s", diff)
	}
	// {{ .Tag }}, v1.2.3: the version `docker build --build-arg VERSION=v1.2.3` stamps.
	if got := strings.Join(b.Ldflags, " "); got != dockerLdflags {
		t.Errorf("builds: ldflags %q, want the Dockerfile's with the tag for VERSION: %q", got, dockerLdflags)
	}
	if b.ModTimestamp == "" {
		t.Error("builds: no mod_timestamp; {{ .CommitTimestamp }} makes the same tag build the same bytes")
	}

	// The files install.sh reads, by the names it computes.
	a := c.Archives[0]
	if !slices.Equal(a.IDs, []string{b.ID}) || !slices.Equal(a.Formats, []string{"tar.gz"}) {
		t.Errorf("archives: ids %q, formats %q; want [%s], [tar.gz]", a.IDs, a.Formats, b.ID)
	}
	assets := c.assets(t, "v1.2.3")
	wantAssets := releaseAssets{checksums: "meshroll_1.2.3_checksums.txt", archives: map[string]string{
		"darwin/amd64": "meshroll_1.2.3_darwin_amd64.tar.gz", "darwin/arm64": "meshroll_1.2.3_darwin_arm64.tar.gz",
		"linux/amd64": "meshroll_1.2.3_linux_amd64.tar.gz", "linux/arm64": "meshroll_1.2.3_linux_arm64.tar.gz",
	}}
	if diff := cmp.Diff(wantAssets, assets, cmp.AllowUnexported(releaseAssets{})); diff != "" {
		t.Errorf("release v1.2.3's files (-install.sh and docs +goreleaser):\n%s", diff)
	}
	if c.Checksum.Algorithm != "sha256" {
		t.Errorf("checksum: algorithm %q; install.sh checks sha256", c.Checksum.Algorithm)
	}

	if len(c.SBOMs) != 1 || c.SBOMs[0].Artifacts != "archive" {
		t.Errorf("sboms: %+v; want one, of the archives", c.SBOMs)
	}
	// Keyless: the checksums file, which names every archive's sha256, signed by cosign
	// into a Sigstore bundle (docs/ci.md, "Verifying a download").
	if len(c.Signs) != 1 {
		t.Fatalf("signs: %d, want 1 (cosign, the checksums file)", len(c.Signs))
	}
	s := c.Signs[0]
	if s.Cmd != "cosign" || s.Artifacts != "checksum" || s.Signature != "${artifact}.sigstore.json" {
		t.Errorf("signs: cmd %q, artifacts %q, signature %q; want cosign, checksum, ${artifact}.sigstore.json", s.Cmd, s.Artifacts, s.Signature)
	}
	if diff := cmp.Diff([]string{"sign-blob", "--bundle=${signature}", "${artifact}", "--yes"}, s.Args); diff != "" {
		t.Errorf("signs: args (-want +got):\n%s", diff)
	}

	module := regexp.MustCompile(`(?m)^module github\.com/([^/\s]+)/([^/\s]+)$`).FindStringSubmatch(readFile(t, "go.mod"))
	if module == nil || c.Release.GitHub.Owner != module[1] || c.Release.GitHub.Name != module[2] {
		t.Errorf("release: github %s/%s, want the module's repository %v", c.Release.GitHub.Owner, c.Release.GitHub.Name, module)
	}
	if c.Release.Prerelease != "auto" {
		t.Errorf("release: prerelease %q; want auto (v1.2.0-rc.1 is a pre-release)", c.Release.Prerelease)
	}
}

// githubPattern is the regexp of a GitHub Actions filter pattern (on.push.tags): * is any
// run of characters but /, ** any run, ? and + make the character before optional or
// repeated, […] is a class; the rest is literal.
func githubPattern(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*':
			if strings.HasPrefix(p[i:], "**") {
				b.WriteString(".*")
				i++
			} else {
				b.WriteString("[^/]*")
			}
		case '?', '+':
			b.WriteByte(c)
		case '[':
			end := strings.IndexByte(p[i:], ']')
			b.WriteString(p[i : i+end+1])
			i += end
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// pinnedAction is an action reference pinned to a commit.
var pinnedAction = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$`)

// workflow is the part of a GitHub workflow the release test reads.
type workflow struct {
	On          map[string]any         `json:"on"`
	Permissions map[string]string      `json:"permissions"`
	Jobs        map[string]workflowJob `json:"jobs"`
}

type workflowJob struct {
	Needs       []string          `json:"needs"`
	If          string            `json:"if"`
	Permissions map[string]string `json:"permissions"`
	Strategy    struct {
		Matrix struct {
			Include []map[string]string `json:"include"`
		} `json:"matrix"`
	} `json:"strategy"`
	Steps []struct {
		ID   string            `json:"id"`
		Uses string            `json:"uses"`
		With map[string]string `json:"with"`
		Env  map[string]string `json:"env"`
		Run  string            `json:"run"`
	} `json:"steps"`
}

func readWorkflow(t *testing.T, path string) workflow {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The YAML library reads the key on as YAML 1.1 did, as true; GitHub as the string.
	raw = regexp.MustCompile(`(?m)^on:`).ReplaceAll(raw, []byte(`"on":`))
	var w workflow
	if err := yaml.Unmarshal(raw, &w); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return w
}

func TestReleaseWorkflow(t *testing.T) {
	t.Parallel()
	w := readWorkflow(t, releasePath)

	// Triggers: a full version tag, and nothing else (moving v1 must not start a release).
	if len(w.On) != 1 || w.On["push"] == nil {
		t.Fatalf("on: %v; want push only", w.On)
	}
	push := mapOf(w.On["push"])
	if len(push) != 1 {
		t.Errorf("on.push: %v; want tags only", push)
	}
	var patterns []*regexp.Regexp
	for _, p := range anyList(push["tags"]) {
		patterns = append(patterns, githubPattern(fmt.Sprint(p)))
	}
	for tag, want := range map[string]bool{
		"v1.2.3": true, "v10.20.30": true, "v1.2.3-rc.1": true, "v2.0.0-beta": true,
		"v1": false, "v1.2": false, "1.2.3": false, "v1.2.3.4": false, "latest": false, "v1.2.x": false,
	} {
		got := slices.ContainsFunc(patterns, func(re *regexp.Regexp) bool { return re.MatchString(tag) })
		if got != want {
			t.Errorf("on.push.tags %v: a push of tag %s starts a release: %v, want %v", push["tags"], tag, got, want)
		}
	}

	// Permissions: none by default, each job only what it needs.
	if len(w.Permissions) != 0 {
		t.Errorf("permissions: %v; want {} at the top, each job its own", w.Permissions)
	}
	want := map[string]map[string]string{
		"plan":     {"contents": "read"},
		"binaries": {"contents": "write", "id-token": "write"},
		"images":   {"contents": "read", "packages": "write", "id-token": "write"},
		"float":    {"contents": "write"},
	}
	got := map[string]map[string]string{}
	for name, job := range w.Jobs {
		got[name] = job.Permissions
		for i, s := range job.Steps {
			if s.Uses != "" && !pinnedAction.MatchString(s.Uses) {
				t.Errorf("job %s, step %d: uses %s; pin it to a commit", name, i+1, s.Uses)
			}
			if strings.Contains(s.Run, "${{") {
				t.Errorf("job %s, step %d: run holds an expression; pass it in env", name, i+1)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("jobs' permissions (-want +got):\n%s", diff)
	}

	binaries := w.Jobs["binaries"]
	uses := func(job workflowJob, action string) (map[string]string, int) {
		for i, s := range job.Steps {
			if name, _, _ := strings.Cut(s.Uses, "@"); name == action {
				return s.With, i
			}
		}
		t.Errorf("a job does not use %s", action)
		return nil, -1
	}
	goreleaser, at := uses(binaries, "goreleaser/goreleaser-action")
	makefile := regexp.MustCompile(`(?m)^GORELEASER_VERSION \?= (\S+)$`).FindStringSubmatch(readFile(t, "Makefile"))
	if makefile == nil || goreleaser["version"] != makefile[1] || goreleaser["args"] != "release --clean" {
		t.Errorf("goreleaser-action: version %q, args %q; want the Makefile's GORELEASER_VERSION (%v), release --clean", goreleaser["version"], goreleaser["args"], makefile)
	}
	// The programs .goreleaser.yaml runs are installed before it.
	for _, tool := range []string{"sigstore/cosign-installer", "anchore/sbom-action/download-syft", "actions/setup-go"} {
		if _, i := uses(binaries, tool); i > at {
			t.Errorf("job binaries: %s after GoReleaser", tool)
		}
	}

	// The images: every target of the Dockerfile, for both architectures, signed.
	images := w.Jobs["images"]
	targets := map[string]string{}
	for _, m := range images.Strategy.Matrix.Include {
		targets[m["target"]] = m["suffix"]
	}
	if diff := cmp.Diff(map[string]string{"runtime": "", "shell": "-shell", "nonroot": "-nonroot"}, targets); diff != "" {
		t.Errorf("job images: matrix targets and tag suffixes (-want +got):\n%s", diff)
	}
	stages := parseDockerfile(t, "Dockerfile")
	for target := range targets {
		stageNamed(t, stages, target)
	}
	build, at := uses(images, "docker/build-push-action")
	for input, value := range map[string]string{
		"target": "${{ matrix.target }}", "platforms": "linux/amd64,linux/arm64", "build-args": "VERSION=${{ github.ref_name }}",
		"push": "true", "tags": "${{ steps.image.outputs.tags }}",
	} {
		if build[input] != value {
			t.Errorf("job images: build-push-action %s: %q, want %q", input, build[input], value)
		}
	}
	if at >= 0 && images.Steps[at-1].ID != "image" {
		t.Errorf("job images: the step before the build is %q, not the tags' (image)", images.Steps[at-1].ID)
	}
	if last := images.Steps[len(images.Steps)-1]; !strings.Contains(last.Run, `cosign sign --yes "$IMAGE@$DIGEST"`) || last.Env["DIGEST"] != "${{ steps.build.outputs.digest }}" {
		t.Errorf("job images: the last step does not sign the pushed digest: %q, env %v", last.Run, last.Env)
	}
	// The build stage cross-compiles for the target platform on the builder's own.
	if !regexp.MustCompile(`(?m)^FROM --platform=\$BUILDPLATFORM golang:\S+ AS build$`).MatchString(readFile(t, "Dockerfile")) {
		t.Error("Dockerfile: the build stage is not FROM --platform=$BUILDPLATFORM: a linux/arm64 image would compile under emulation")
	}
	goBuild := dockerfileGoBuild(t, stageNamed(t, stages, "build"), "dev")
	for _, v := range []string{"GOOS=", "GOARCH="} { // ${TARGETOS}, ${TARGETARCH}: empty here
		if !slices.Contains(goBuild.env, v) {
			t.Errorf("Dockerfile: the go build does not set %s${TARGET…} (env %q)", v, goBuild.env)
		}
	}

	float := w.Jobs["float"]
	if !slices.Equal(float.Needs, []string{"plan", "binaries", "images"}) || float.If != "${{ needs.plan.outputs.lines != '' }}" {
		t.Errorf("job float: needs %q, if %q; want the binaries and the images published, and the plan's tags to move", float.Needs, float.If)
	}
}

// runStep runs a workflow step's script as GitHub runs it on Linux (bash -e -o pipefail) in
// dir, with env, and returns what it wrote to GITHUB_OUTPUT.
func runStep(t *testing.T, script, dir string, env ...string) map[string]string {
	t.Helper()
	needTools(t, "bash", "git")
	output := filepath.Join(t.TempDir(), "github_output")
	cmd := exec.CommandContext(t.Context(), "bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(gitEnv(t.TempDir()), append(env, "GITHUB_OUTPUT="+output)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]string{}
	for line := range strings.Lines(readFile(t, output)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		got[k] = v
	}
	return got
}

// The floating tags (job plan) and the image tags (job images), by the workflow's own scripts:
// vX and vX.Y follow a release only when it is the newest of their line.
func TestReleaseTags(t *testing.T) {
	t.Parallel()
	w := readWorkflow(t, releasePath)
	step := func(job, id string) string {
		for _, s := range w.Jobs[job].Steps {
			if s.ID == id {
				return s.Run
			}
		}
		t.Fatalf("job %s has no step %s", job, id)
		return ""
	}
	plan, image := step("plan", "lines"), step("images", "image")

	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = repo, gitEnv(repo)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	needTools(t, "git")
	git("init", "--quiet")
	git("commit", "--quiet", "--allow-empty", "-m", "a")
	for _, tag := range []string{"v1.1.5", "v1.2.0", "v1.2.1-rc.1", "v1.10.0-rc.1", "v1.9.0", "v2.0.0", "v1", "v1.2"} {
		git("tag", tag)
	}
	for tag, lines := range map[string]string{
		"v1.9.0":       "v1 v1.9", // v1.10.0-rc.1 is no release yet; 9 < 10 as numbers
		"v1.2.0":       "v1.2",
		"v1.1.5":       "v1.1",
		"v2.0.0":       "v2 v2.0",
		"v1.2.1-rc.1":  "",
		"v1.10.0-rc.1": "",
	} {
		if got := runStep(t, plan, repo, "TAG="+tag)["lines"]; got != lines {
			t.Errorf("a release %s moves %q, want %q", tag, got, lines)
		}
	}
	got := runStep(t, image, repo, "REPOSITORY=Meshroll/meshroll", "TAG=v1.9.0", "SUFFIX=-shell", "LINES=v1 v1.9")
	want := map[string]string{
		"name": "ghcr.io/meshroll/meshroll",
		"tags": "ghcr.io/meshroll/meshroll:v1.9.0-shell,ghcr.io/meshroll/meshroll:v1-shell,ghcr.io/meshroll/meshroll:v1.9-shell",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("job images, step image: outputs (-want +got):\n%s", diff)
	}
}

// checkBinaryFormat opens a binary as the runner's OS would load it: a static ELF for Linux,
// a Mach-O executable for macOS, each for its CPU.
func checkBinaryFormat(t *testing.T, path, goos, goarch string) {
	t.Helper()
	switch goos {
	case "linux":
		f, err := elf.Open(path)
		if err != nil {
			t.Fatalf("not an ELF binary: %v", err)
		}
		defer f.Close()
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
		if f.Machine != want || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
			t.Errorf("ELF machine %v, class %v, type %v; want %v, ELFCLASS64, ET_EXEC", f.Machine, f.Class, f.Type, want)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("dynamically linked (PT_INTERP): CGO_ENABLED=0 is missing")
			}
		}
	case "darwin":
		f, err := macho.Open(path)
		if err != nil {
			t.Fatalf("not a Mach-O binary: %v", err)
		}
		defer f.Close()
		want := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[goarch]
		if f.Cpu != want || f.Type != macho.TypeExec {
			t.Errorf("Mach-O cpu %v, type %v; want %v, executable", f.Cpu, f.Type, want)
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			t.Fatal(err)
		}
		for _, lib := range libs { // libSystem, and the frameworks crypto/x509 reads the roots with
			if !strings.HasPrefix(lib, "/usr/lib/") && !strings.HasPrefix(lib, "/System/Library/Frameworks/") {
				t.Errorf("links %s, which a Mac does not have", lib)
			}
		}
	default:
		t.Fatalf("GOOS %s is not a runner the action supports", goos)
	}
}
