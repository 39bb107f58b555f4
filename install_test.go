package main

// Tests of the action's install script (.github/action/install.sh), run with sh against a
// fake GitHub on loopback: a repository with tags, served as git serves one over plain HTTP,
// and releases whose files are named by .goreleaser.yaml's templates.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// needTools skips the test when a program it runs is missing, or fails it with CI=true.
func needTools(t *testing.T, alternatives ...string) {
	t.Helper()
	for _, alt := range alternatives {
		found := false
		for name := range strings.SplitSeq(alt, "|") {
			if _, err := exec.LookPath(name); err == nil {
				found = true
			}
		}
		if found {
			continue
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed", alt)
		}
		t.Skipf("%s is not installed", alt)
	}
}

// fakeGitHub is meshroll/meshroll as github.com serves it, in a directory: the repository at
// <dir>/meshroll/meshroll (a bare one, which git reads over HTTP from its info/refs), a
// release's files at <dir>/meshroll/meshroll/releases/download/<tag>/<file>.
type fakeGitHub struct {
	dir     string
	commits map[string]string // commit label → hash
}

const fakeRepository = "meshroll/meshroll"

// The fake repository: which tags and branches point at which commit, and which tags have a
// release (badChecksums: one whose checksums file does not match its archives).
var (
	fakeRefs = []struct{ commit, tags, branches string }{
		{"a", "v1.2.3 v1", "release-1.2"},
		{"b", "v1.2.4", ""},
		{"c", "v1.3.0-rc.1 v1.3.0 v1.3", ""},
		{"d", "v1.2.5", ""},
		{"e", "", "main"},
	}
	fakeReleases = []string{"v1.2.3", "v1.2.4", "v1.3.0-rc.1", "v1.3.0"}
	badChecksums = "v1.2.4"
)

// fakeBinary is what the archive of a release for a platform holds: a script that prints
// which it is, so that install.sh's run of the installed binary works on any machine.
func fakeBinary(tag, platform string) []byte {
	return []byte("#!/bin/sh\necho fake " + tag + " " + platform + "\n")
}

// newFakeGitHub builds the fake repository and its releases. host, when not nil, is the
// binary the archives for this machine's platform hold.
func newFakeGitHub(t *testing.T, host []byte) *fakeGitHub {
	t.Helper()
	needTools(t, "git")
	root := t.TempDir()
	f := &fakeGitHub{dir: filepath.Join(root, "srv"), commits: map[string]string{}}
	work := filepath.Join(root, "work")
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = gitEnv(root)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	git(work, "init", "--quiet", "--initial-branch=main")
	for _, r := range fakeRefs {
		if err := os.WriteFile(filepath.Join(work, "commit"), []byte(r.commit), 0o644); err != nil {
			t.Fatal(err)
		}
		git(work, "add", "commit")
		git(work, "commit", "--quiet", "-m", r.commit)
		f.commits[r.commit] = git(work, "rev-parse", "HEAD")
		for tag := range strings.FieldsSeq(r.tags) {
			if strings.Count(tag, ".") == 2 { // releases are annotated, vX and vX.Y light
				git(work, "tag", "-a", "-m", tag, tag)
			} else {
				git(work, "tag", tag)
			}
		}
		for branch := range strings.FieldsSeq(r.branches) {
			if branch != "main" {
				git(work, "branch", branch)
			}
		}
	}
	repo := filepath.Join(f.dir, filepath.FromSlash(fakeRepository))
	git(root, "clone", "--quiet", "--bare", work, repo)
	git(repo, "update-server-info")

	c := readGoreleaser(t)
	for _, tag := range fakeReleases {
		assets := c.assets(t, tag)
		dir := filepath.Join(repo, "releases", "download", tag)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var sums []string
		for platform, name := range assets.archives {
			bin := fakeBinary(tag, platform)
			if host != nil && platform == runtime.GOOS+"/"+runtime.GOARCH {
				bin = host
			}
			archive := tarGz(t, map[string][]byte{"meshroll": bin, "README.md": []byte("# meshroll\n")})
			if err := os.WriteFile(filepath.Join(dir, name), archive, 0o644); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(archive)
			if tag == badChecksums {
				sum = sha256.Sum256(append(archive, 0))
			}
			sums = append(sums, fmt.Sprintf("%x  %s\n", sum, name))
		}
		slices.Sort(sums)
		if err := os.WriteFile(filepath.Join(dir, assets.checksums), []byte(strings.Join(sums, "")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// gitEnv is an environment in which git reads no configuration of this machine.
func gitEnv(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_TERMINAL_PROMPT=0", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
	}
}

func tarGz(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if !yield(n) {
				return
			}
		}
	}) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(files[name])), ModTime: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// serve starts an HTTP server on loopback for the fake GitHub, recording the paths asked for.
func (f *fakeGitHub) serve(t *testing.T) (url string, requests func() []string) {
	t.Helper()
	var mu sync.Mutex
	var paths []string
	files := http.FileServer(http.Dir(f.dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(paths)
	}
}

type installRun struct {
	code    int
	stdout  string
	outputs map[string]string // GITHUB_OUTPUT
	temp    string            // RUNNER_TEMP
}

// runInstall runs install.sh as the action's install step does on a runner of this OS and
// architecture (RUNNER_OS, RUNNER_ARCH), for the action at ref, against the server at url.
func runInstall(t *testing.T, url, runnerOS, runnerArch, ref string, args ...string) installRun {
	t.Helper()
	needTools(t, "sh", "tar", "curl|wget", "sha256sum|shasum")
	dir := t.TempDir()
	r := installRun{temp: filepath.Join(dir, "runner-temp"), outputs: map[string]string{}}
	if err := os.Mkdir(r.temp, 0o755); err != nil {
		t.Fatal(err)
	}
	output := filepath.Join(dir, "github_output")
	cmd := exec.CommandContext(t.Context(), "sh", append([]string{installScript}, args...)...)
	cmd.Env = append(gitEnv(dir),
		"TMPDIR="+dir, "RUNNER_TEMP="+r.temp, "RUNNER_OS="+runnerOS, "RUNNER_ARCH="+runnerArch,
		"GITHUB_OUTPUT="+output, "ACTION_SERVER_URL="+url, "ACTION_REPOSITORY="+fakeRepository, "ACTION_REF="+ref)
	out, err := cmd.CombinedOutput()
	r.stdout = string(out)
	if exit, ok := err.(*exec.ExitError); ok {
		r.code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile(output); err == nil {
		for line := range strings.Lines(string(raw)) {
			k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
			if _, dup := r.outputs[k]; dup {
				t.Errorf("GITHUB_OUTPUT sets %s twice", k)
			}
			r.outputs[k] = v
		}
	}
	return r
}

// The runner platforms the action supports, as RUNNER_OS and RUNNER_ARCH name them.
var runnerPlatforms = []struct{ os, arch, platform string }{
	{"Linux", "X64", "linux/amd64"},
	{"Linux", "ARM64", "linux/arm64"},
	{"macOS", "X64", "darwin/amd64"},
	{"macOS", "ARM64", "darwin/arm64"},
}

// The release of the action's ref, for the runner's platform: the ref itself when it is a
// release tag, else the newest release tag at its commit.
func TestActionInstallPicksTheRelease(t *testing.T) {
	t.Parallel()
	f := newFakeGitHub(t, nil)
	type install struct{ ref, runnerOS, runnerArch, platform, tag string }
	var cases []install
	for _, p := range runnerPlatforms {
		cases = append(cases, install{"v1.2.3", p.os, p.arch, p.platform, "v1.2.3"})
	}
	for ref, tag := range map[string]string{
		"v1":                "v1.2.3", // the major tag, as `uses: meshroll/meshroll@v1`
		f.commits["a"]:      "v1.2.3", // a commit, as pinned by its hash
		f.commits["a"][:12]: "v1.2.3",
		"release-1.2":       "v1.2.3", // a branch at a release
		"v1.3":              "v1.3.0", // a release before a pre-release at the same commit
		"v1.3.0-rc.1":       "v1.3.0-rc.1",
	} {
		cases = append(cases, install{ref, "Linux", "X64", "linux/amd64", tag})
	}
	for _, c := range cases {
		t.Run(c.ref+"/"+c.platform, func(t *testing.T) {
			t.Parallel()
			url, requests := f.serve(t)
			got := runInstall(t, url, c.runnerOS, c.runnerArch, c.ref)
			if got.code != 0 {
				t.Fatalf("exit %d:\n%s", got.code, got.stdout)
			}
			bin := filepath.Join(got.temp, "meshroll", c.tag, "meshroll")
			want := map[string]string{"path": bin, "source": "release", "version": c.tag}
			if diff := cmp.Diff(want, got.outputs); diff != "" {
				t.Errorf("outputs (-want +got):\n%s", diff)
			}
			content, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(content, fakeBinary(c.tag, c.platform)) {
				t.Errorf("installed %q, want the %s binary of %s", content, c.platform, c.tag)
			}
			if info, err := os.Stat(bin); err != nil || info.Mode().Perm() != 0o755 {
				t.Errorf("%s: %v, %v; want mode 0755", bin, info.Mode(), err)
			}
			if line := "meshroll fake " + c.tag + " " + c.platform + ": release " + c.tag; !strings.Contains(got.stdout, line) {
				t.Errorf("stdout lacks %q:\n%s", line, got.stdout)
			}
			// A release tag is taken as it is, with no look at the repository.
			asked := requests()
			if listed := slices.ContainsFunc(asked, func(p string) bool { return strings.HasSuffix(p, "/info/refs") }); listed != (c.ref != c.tag) {
				t.Errorf("listed the repository's refs: %v; asked for %q", listed, asked)
			}
		})
	}
}

// A ref at no release tag builds meshroll from the action's source: nothing is downloaded.
func TestActionInstallWithoutRelease(t *testing.T) {
	t.Parallel()
	f := newFakeGitHub(t, nil)
	for ref, version := range map[string]string{
		"main":              "main",
		f.commits["e"]:      f.commits["e"],
		f.commits["e"][:12]: f.commits["e"][:12],
		"no-such-branch":    "no-such-branch",
		"V1":                "V1",
		"refs/tags/v1":      "refs/tags/v1",
		"":                  "dev", // a local action, uses: ./
	} {
		t.Run("ref="+ref, func(t *testing.T) {
			t.Parallel()
			url, requests := f.serve(t)
			got := runInstall(t, url, "Linux", "X64", ref)
			if got.code != 0 {
				t.Fatalf("exit %d:\n%s", got.code, got.stdout)
			}
			want := map[string]string{"path": filepath.Join(got.temp, "meshroll", "source", "meshroll"), "source": "build", "version": version}
			if diff := cmp.Diff(want, got.outputs); diff != "" {
				t.Errorf("outputs (-want +got):\n%s", diff)
			}
			if !strings.Contains(got.stdout, "::notice title=meshroll::") || !strings.Contains(got.stdout, "is not a release") {
				t.Errorf("stdout does not say the ref is no release:\n%s", got.stdout)
			}
			if asked := requests(); slices.ContainsFunc(asked, func(p string) bool { return strings.Contains(p, "/releases/") }) {
				t.Errorf("downloaded from a release: %q", asked)
			}
		})
	}
}

// What install.sh refuses: it exits non-zero, says why in an ::error:: annotation, and
// leaves no executable behind.
func TestActionInstallRefuses(t *testing.T) {
	t.Parallel()
	f := newFakeGitHub(t, nil)
	for _, tt := range []struct {
		name, ref, runnerOS, runnerArch string
		message                         string
	}{
		{"bad checksum", badChecksums, "Linux", "X64", "checksum mismatch: meshroll_1.2.4_linux_amd64.tar.gz has sha256 "},
		{"bad checksum on arm64", badChecksums, "macOS", "ARM64", "checksum mismatch: meshroll_1.2.4_darwin_arm64.tar.gz has sha256 "},
		{"release not published", "v1.2.5", "Linux", "X64", "cannot download "},
		{"ref with a space", "v1.2.3 ; echo x", "Linux", "X64", "ACTION_REF is not a tag, branch or commit"},
		{"ref with a line break", "main\npath=/bin/sh", "Linux", "X64", "ACTION_REF is not a tag, branch or commit"},
		{"ref like an option", "--upload-pack=x", "Linux", "X64", "ACTION_REF is not a tag, branch or commit"},
		{"windows", "v1.2.3", "Windows", "X64", "meshroll is released for Linux and macOS runners, not Windows"},
		{"32-bit arm", "v1.2.3", "Linux", "ARM", "meshroll is released for x64 and ARM64 runners, not ARM"},
		{"unknown subcommand", "v1.2.3", "Linux", "X64", "usage: install.sh"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, _ := f.serve(t)
			var args []string
			if tt.name == "unknown subcommand" {
				args = []string{"upgrade"}
			}
			got := runInstall(t, url, tt.runnerOS, tt.runnerArch, tt.ref, args...)
			if got.code == 0 {
				t.Fatalf("exit 0, want a failure:\n%s", got.stdout)
			}
			if !strings.Contains(got.stdout, tt.message) {
				t.Errorf("output lacks %q:\n%s", tt.message, got.stdout)
			}
			if len(args) == 0 && !strings.Contains(got.stdout, "::error title=meshroll::") {
				t.Errorf("no ::error:: annotation:\n%s", got.stdout)
			}
			if len(got.outputs) != 0 {
				t.Errorf("outputs %v, want none", got.outputs)
			}
			err := filepath.WalkDir(got.temp, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				if info, err := d.Info(); err == nil && info.Mode()&0o111 != 0 {
					t.Errorf("%s is executable", path)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The archive GoReleaser makes for this machine, installed and run: meshroll's own binary.
func TestActionInstallRunsTheReleasedBinary(t *testing.T) {
	t.Parallel()
	runner := map[string]string{"linux": "Linux", "darwin": "macOS", "amd64": "X64", "arm64": "ARM64"}
	if runner[runtime.GOOS] == "" || runner[runtime.GOARCH] == "" {
		t.Skipf("%s/%s is no runner the action supports", runtime.GOOS, runtime.GOARCH)
	}
	host, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeGitHub(t, host)
	url, _ := f.serve(t)
	got := runInstall(t, url, runner[runtime.GOOS], runner[runtime.GOARCH], "v1")
	if got.code != 0 {
		t.Fatalf("exit %d:\n%s", got.code, got.stdout)
	}
	if !strings.Contains(got.stdout, "meshroll "+binaryVersion+": release v1.2.3") {
		t.Errorf("stdout does not name the installed version:\n%s", got.stdout)
	}
	cmd := exec.CommandContext(t.Context(), got.outputs["path"])
	cmd.Env = []string{"MESHROLL_MODE=version"}
	out, err := cmd.CombinedOutput()
	if strings.TrimSpace(string(out)) != binaryVersion || err != nil {
		t.Errorf("MESHROLL_MODE=version %s: %q (%v), want %s", got.outputs["path"], out, err, binaryVersion)
	}
}

// install.sh build: meshroll from the action's source, as the Dockerfile builds it, with the
// ref for its version.
func TestActionInstallBuildsFromSource(t *testing.T) {
	t.Parallel()
	// The same go build as the Dockerfile's (but the version and the output).
	docker := dockerfileGoBuild(t, stageNamed(t, parseDockerfile(t, "Dockerfile"), "build"), "${ACTION_REF:-dev}")
	line := "CGO_ENABLED=0 go build"
	for i := 1; i < len(docker.args); i++ {
		switch docker.args[i] {
		case "-ldflags":
			line += ` -ldflags "` + docker.args[i+1] + `"`
			i++
		case "-o":
			line += ` -o "$BINARY"`
			i++
		default:
			line += " " + docker.args[i]
		}
	}
	if script := readFile(t, installScript); !strings.Contains(script, "\t"+line+"\n") {
		t.Errorf("%s does not build as the Dockerfile does; want the line\n\t%s", installScript, line)
	}

	if testing.Short() {
		t.Skip("builds meshroll; skipped with -short")
	}
	needTools(t, "sh", "go")
	bin := filepath.Join(t.TempDir(), "meshroll")
	cmd := exec.CommandContext(t.Context(), "sh", installScript, "build")
	// The go command's own settings (GOCACHE, GOFLAGS, …) pass through, as on a runner.
	cmd.Env = append(os.Environ(), "ACTION_REPOSITORY="+fakeRepository, "ACTION_REF=feature-x", "BINARY="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh build: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "meshroll feature-x: built from the source of meshroll/meshroll@feature-x") {
		t.Errorf("output does not name what was built:\n%s", out)
	}
	run := exec.CommandContext(t.Context(), bin)
	run.Env = []string{"MESHROLL_MODE=version"}
	if v, err := run.CombinedOutput(); strings.TrimSpace(string(v)) != "feature-x" || err != nil {
		t.Errorf("MESHROLL_MODE=version: %q (%v), want feature-x", v, err)
	}
}
