package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshroll/meshroll/internal/config"
)

var allCIs = []config.CI{config.CIGitHub, config.CIGitLab, config.CIJenkins, config.CIPlain}

// run is one reporter run in a temporary directory, with everything it produced.
type run struct {
	stdout   string
	outDir   string
	env      map[string]string
	finished error
}

// newRun builds a reporter for ci whose GitHub files live in a temporary directory.
func newRun(t *testing.T, ci config.CI, secrets ...string) (Reporter, *run, *bytes.Buffer) {
	t.Helper()
	tmp := t.TempDir()
	r := &run{outDir: filepath.Join(tmp, "meshroll-out"), env: map[string]string{
		"GITHUB_OUTPUT":       filepath.Join(tmp, "github_output.txt"),
		"GITHUB_STEP_SUMMARY": filepath.Join(tmp, "step_summary.md"),
	}}
	var stdout bytes.Buffer
	rep, err := New(Options{
		CI: ci, OutputDir: r.outDir, Getenv: func(k string) string { return r.env[k] },
		Stdout: &stdout, Secrets: secrets, Version: "v1.2.3-test",
		Now: func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep, r, &stdout
}

// files returns everything a run produced, by file name: its log, the result files and, for
// GitHub, the runner's files.
func (r *run) files(t *testing.T, ci config.CI) map[string][]byte {
	t.Helper()
	out := map[string][]byte{logFile: []byte(strings.ReplaceAll(r.stdout, r.outDir, "meshroll-out"))}
	for _, name := range []string{ResultFile, SummaryFile, OutputsFile, JUnitFile} {
		out[name] = readFile(t, filepath.Join(r.outDir, name))
	}
	if ci == config.CIGitHub {
		out[githubOutputFile] = readFile(t, r.env["GITHUB_OUTPUT"])
		out[stepSummaryFile] = readFile(t, r.env["GITHUB_STEP_SUMMARY"])
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// finish replays res into a new reporter for ci and returns what it produced.
func finish(t *testing.T, ci config.CI, f fixture, secrets ...string) *run {
	t.Helper()
	rep, r, stdout := newRun(t, ci, secrets...)
	r.finished = replay(rep, f.res)
	r.stdout = stdout.String()
	return r
}

// result.json carries the schema header, every field of the result and the figures of the
// outputs; junit.xml is well-formed and its counts add up.
func TestResultFilesParse(t *testing.T) {
	t.Parallel()
	for _, f := range fixtures() {
		r := finish(t, config.CIPlain, f)
		var doc map[string]any
		if err := json.Unmarshal(readFile(t, filepath.Join(r.outDir, ResultFile)), &doc); err != nil {
			t.Fatalf("%s: result.json: %v", f.name, err)
		}
		outs := Outputs(f.res)
		want := map[string]any{
			"schemaVersion": 1.0, "version": "v1.2.3-test", "result": string(f.res.Outcome),
			"durationSeconds": float64(durationSeconds(f.res)), "stepsCompleted": float64(stepsCompleted(f.res)),
			"canaryWeight": mustFloat(t, outs[1].Value), "stableWeight": mustFloat(t, outs[2].Value),
		}
		for k, v := range want {
			if doc[k] != v {
				t.Errorf("%s: result.json %s = %v, want %v", f.name, k, doc[k], v)
			}
		}
		if steps, _ := doc["steps"].([]any); len(steps) != len(f.res.Steps) {
			t.Errorf("%s: result.json has %d steps, want %d", f.name, len(steps), len(f.res.Steps))
		}

		var suite junitSuite
		if err := xml.Unmarshal(readFile(t, filepath.Join(r.outDir, JUnitFile)), &suite); err != nil {
			t.Fatalf("%s: junit.xml: %v", f.name, err)
		}
		var failures, errs, skipped int
		for _, c := range suite.Cases {
			failures += btoi(c.Failure != nil)
			errs += btoi(c.Error != nil)
			skipped += btoi(c.Skipped != nil)
		}
		if suite.Name != "meshroll" || suite.Tests != len(suite.Cases) || suite.Failures != failures || suite.Errors != errs || suite.Skipped != skipped {
			t.Errorf("%s: junit.xml suite %q tests=%d failures=%d errors=%d skipped=%d, cases say %d/%d/%d/%d",
				f.name, suite.Name, suite.Tests, suite.Failures, suite.Errors, suite.Skipped, len(suite.Cases), failures, errs, skipped)
		}
		// A CI gate on the test report must stop exactly the runs that fail the job.
		if gate := failures+errs > 0; gate != failed(f.res.Outcome) {
			t.Errorf("%s: junit.xml has %d failures and %d errors for outcome %s", f.name, failures, errs, f.res.Outcome)
		}
	}
}

func mustFloat(t *testing.T, s string) any {
	t.Helper()
	if s == "" {
		return nil
	}
	var v float64
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
