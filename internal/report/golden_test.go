package report

import (
	"flag"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden/report")

// goldenRoot holds the reporters' golden files, each output stored once:
//
//	common/<fixture>/result.json, summary.md, outputs.env, junit.xml   the same for every CI
//	plain/<fixture>/stdout.txt    the log of plain, and of Jenkins, which is plain by design
//	github/<fixture>/stdout.txt, github_output.txt                     what only GitHub writes
//	gitlab/<fixture>/stdout.txt   GitLab's log, for runs with steps (without, it is plain's)
//
// Every output of every CI is held to exactly one of these files (goldenFiles), so a change
// in any reporter fails a test, however many reporters share the file.
var goldenRoot = filepath.Join("..", "..", "testdata", "golden", "report")

// The names of what a run produces besides the result files (see run.files).
const (
	logFile          = "stdout.txt"
	githubOutputFile = "github_output.txt"
	stepSummaryFile  = "step_summary.md"
)

// output is one thing a reporter for ci produced in a run, by its name in run.files.
type output struct {
	ci   config.CI
	name string
}

// check holds an output to a golden file: the output is the file's content followed by
// suffix.
type check struct {
	output
	suffix string
}

// goldenFile is one file under goldenRoot and the outputs that must equal it. With -update,
// the first check, which has no suffix, writes it.
type goldenFile struct {
	path   string // slash-separated, under goldenRoot
	checks []check
}

// goldenFiles returns the golden files of fixture f and what each one holds.
func goldenFiles(f fixture) []goldenFile {
	in := func(dir, name string) string { return path.Join(dir, f.name, name) }
	of := func(ci config.CI, name string) check { return check{output: output{ci, name}} }
	everyCI := func(name string) []check {
		checks := []check{of(config.CIPlain, name)}
		for _, ci := range allCIs {
			if ci != config.CIPlain {
				checks = append(checks, of(ci, name))
			}
		}
		return checks
	}

	// GitHub's job summary is summary.md, ended by the line break go-githubactions appends.
	summary := append(everyCI(SummaryFile), check{output{config.CIGitHub, stepSummaryFile}, "\n"})
	files := []goldenFile{
		{in("common", ResultFile), everyCI(ResultFile)},
		{in("common", SummaryFile), summary},
		{in("common", OutputsFile), everyCI(OutputsFile)},
		{in("common", JUnitFile), everyCI(JUnitFile)},
		{in("github", logFile), []check{of(config.CIGitHub, logFile)}},
		{in("github", githubOutputFile), []check{of(config.CIGitHub, githubOutputFile)}},
	}
	plainLog := []check{of(config.CIPlain, logFile), of(config.CIJenkins, logFile)}
	if len(f.res.Steps) == 0 {
		// GitLab's log is plain's with a section around each step: without steps, it is plain's.
		plainLog = append(plainLog, of(config.CIGitLab, logFile))
	} else {
		files = append(files, goldenFile{in("gitlab", logFile), []check{of(config.CIGitLab, logFile)}})
	}
	return append(files, goldenFile{in("plain", logFile), plainLog})
}

func TestGolden(t *testing.T) {
	t.Parallel()
	for _, f := range fixtures() {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			got := map[output][]byte{}
			for _, ci := range allCIs {
				r := finish(t, ci, f)
				if r.finished != nil {
					t.Fatalf("%s: Finish: %v", ci, r.finished)
				}
				for name, data := range r.files(t, ci) {
					got[output{ci, name}] = data
				}
			}
			for _, g := range goldenFiles(f) {
				want := golden(t, g.path, got[g.checks[0].output])
				for _, c := range g.checks {
					data, ok := got[c.output]
					if !ok {
						t.Errorf("%s produced no %s for %s", c.ci, c.name, g.path)
						continue
					}
					delete(got, c.output)
					diff := cmp.Diff(string(want)+c.suffix, string(data))
					switch {
					case diff == "":
					case *update:
						first := g.checks[0]
						t.Errorf("%s %s differs from %s %s, which -update wrote to %s; outputs that share a golden file must agree (-want +got):\n%s", c.ci, c.name, first.ci, first.name, g.path, diff)
					default:
						t.Errorf("%s %s differs from %s (-want +got; go test ./internal/report -update rewrites the golden files):\n%s", c.ci, c.name, g.path, diff)
					}
				}
			}
			for o := range got {
				t.Errorf("%s %s is held to no golden file: add it to goldenFiles", o.ci, o.name)
			}
		})
	}
}

// golden returns the content of testdata/golden/report/<name>; with -update it first writes
// got there.
func golden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	path := filepath.Join(goldenRoot, filepath.FromSlash(name))
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/report -update to create it)", err)
	}
	return want
}

// Every file under testdata/golden/report is the golden file of one fixture's outputs: a
// copy left behind by an older layout is an error (-update removes nothing).
func TestGoldenFilesAreUsed(t *testing.T) {
	t.Parallel()
	used := map[string]bool{}
	for _, f := range fixtures() {
		for _, g := range goldenFiles(f) {
			if used[g.path] {
				t.Errorf("%s is listed twice", g.path)
			}
			used[g.path] = true
		}
	}
	var unused []string
	err := filepath.WalkDir(goldenRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(goldenRoot, p)
		if err != nil {
			return err
		}
		if !used[filepath.ToSlash(rel)] {
			unused = append(unused, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(unused)
	if diff := cmp.Diff([]string(nil), unused); diff != "" {
		t.Errorf("files under testdata/golden/report that no test reads; delete them (-want +got):\n%s", diff)
	}
}
