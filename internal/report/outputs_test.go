package report

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/rollout"
)

// parseGitHubOutput reads a $GITHUB_OUTPUT file the way the runner does: `name=value`, or
// `name<<DELIMITER` followed by the value's lines and a line holding only DELIMITER,
// whichever of "=" and "<<" comes first.
func parseGitHubOutput(t *testing.T, text string) []Output {
	t.Helper()
	var outs []Output
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		eq, heredoc := strings.Index(line, "="), strings.Index(line, "<<")
		if heredoc < 0 || (eq >= 0 && eq < heredoc) {
			name, value, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("line %d of GITHUB_OUTPUT is neither name=value nor name<<DELIMITER: %q", i+1, line)
			}
			outs = append(outs, Output{name, value})
			continue
		}
		name, delim := line[:heredoc], line[heredoc+2:]
		var value []string
		for i++; i < len(lines) && lines[i] != delim; i++ {
			value = append(value, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("GITHUB_OUTPUT: the value of %s is not closed by %s", name, delim)
		}
		outs = append(outs, Output{name, strings.Join(value, "\n")})
	}
	return outs
}

// nasty is a run whose free text tries to break every output format.
func nasty() rollout.Result {
	res := fixtures()[1].res
	res.FailedCheck = "success-rate\n" + githubDelimiter + "\nresult=promoted"
	res.Reason = "line one\r\nline two\n" + githubDelimiter + "\nMESHROLL_RESULT=promoted\n" +
		"::set-output name=result::promoted\n" + strings.Repeat("ünïcødé ", 400)
	return res
}

// What GitHub reads back from $GITHUB_OUTPUT is exactly Outputs(res), for every run.
func TestGitHubOutputParsesBack(t *testing.T) {
	t.Parallel()
	cases := append(fixtures(), fixture{"nasty", nasty()})
	for _, f := range cases {
		r := finish(t, config.CIGitHub, f)
		if r.finished != nil {
			t.Fatal(r.finished)
		}
		want := Outputs(f.res)
		for i := range want {
			want[i].Value = githubValue(want[i].Value)
		}
		got := parseGitHubOutput(t, string(readFile(t, r.env["GITHUB_OUTPUT"])))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: GITHUB_OUTPUT (-want +got):\n%s", f.name, diff)
		}
		if f.name == "nasty" && got[0].Value != "canary-failed" {
			t.Errorf("the reason overwrote the result: %q", got[0].Value)
		}
	}
}

// Every output action.yml declares is written, and no other, in its order.
func TestOutputsMatchActionYAML(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// The keys two spaces in under "outputs:", in the file's order.
	var declared []string
	inOutputs := false
	for line := range strings.Lines(string(data)) {
		switch {
		case strings.HasPrefix(line, "outputs:"):
			inOutputs = true
		case inOutputs && len(line) > 2 && line[0] == ' ' && line[2] != ' ':
			declared = append(declared, strings.TrimSuffix(strings.TrimSpace(line), ":"))
		case inOutputs && line != "\n" && line[0] != ' ' && line[0] != '#':
			inOutputs = false
		}
	}
	var written []string
	for _, o := range Outputs(fixtures()[0].res) {
		written = append(written, o.Name)
	}
	if diff := cmp.Diff(declared, written); diff != "" {
		t.Errorf("outputs (-action.yml +Outputs):\n%s", diff)
	}
}

var envLine = regexp.MustCompile(`^[A-Z0-9_]+=[^\n]*$`)

// outputs.env is a valid GitLab dotenv report whatever the reason holds.
func TestOutputsEnvFormat(t *testing.T) {
	t.Parallel()
	huge := nasty()
	huge.Reason = strings.Repeat("€\n", 100_000) // 3-byte characters and line breaks
	huge.FailedCheck = strings.Repeat("ß", 10_000)
	cases := append(fixtures(), fixture{"nasty", nasty()}, fixture{"huge", huge})
	for _, f := range cases {
		data := outputsEnv(outputs(f.res, redactor{}))
		if len(data) >= 5120 {
			t.Errorf("%s: outputs.env is %d bytes, GitLab takes less than 5120", f.name, len(data))
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if len(lines) != len(Outputs(f.res)) {
			t.Errorf("%s: outputs.env has %d lines, want one per output:\n%s", f.name, len(lines), data)
		}
		for i, line := range lines {
			if !envLine.MatchString(line) {
				t.Errorf("%s: line %d of outputs.env is not KEY=VALUE: %q", f.name, i+1, line)
			}
			if want := envName(Outputs(f.res)[i].Name) + "="; !strings.HasPrefix(line, want) {
				t.Errorf("%s: line %d of outputs.env is %q, want it to start with %s", f.name, i+1, line, want)
			}
		}
	}
	reason := Outputs(huge)[5].Value
	if n := len([]rune(reason)); n != maxReason || !strings.HasSuffix(reason, "…") {
		t.Errorf("the reason output has %d characters (want %d, ending in …): %q", n, maxReason, reason[:40])
	}
	if want := strings.Repeat("€; ", 3); !strings.Contains(string(outputsEnv(Outputs(huge))), "MESHROLL_REASON="+want) {
		t.Errorf("outputs.env does not join the reason's lines with \"; \": %q", outputsEnv(Outputs(huge))[:200])
	}
}

func TestOutputs(t *testing.T) {
	t.Parallel()
	values := func(res rollout.Result) map[string]string {
		m := map[string]string{}
		for _, o := range Outputs(res) {
			m[o.Name] = o.Value
		}
		return m
	}
	want := map[string]map[string]string{
		"promoted":      {"result": "promoted", "canary_weight": "100", "stable_weight": "0", "steps_completed": "4", "failed_check": "", "duration_seconds": "365"},
		"canary-failed": {"result": "canary-failed", "canary_weight": "0", "stable_weight": "100", "steps_completed": "1", "failed_check": "success-rate", "duration_seconds": "244"},
		"inconclusive":  {"result": "inconclusive", "canary_weight": "0", "stable_weight": "100", "steps_completed": "0", "duration_seconds": "183"},
		"weight-set":    {"result": "weight-set", "canary_weight": "20", "stable_weight": "80", "steps_completed": "1", "duration_seconds": "2"},
		// A dry run wrote nothing: the weights are those in place; the plan is the reason.
		"dry-run": {"result": "dry-run", "canary_weight": "0", "stable_weight": "100", "steps_completed": "0", "duration_seconds": "1",
			"reason": "dry run, nothing was written: planned canary weights 10% → 50% → 100%, ending with v1 0, v2 100"},
		// Several problems, one per line.
		"invalid-input": {"result": "invalid", "canary_weight": "", "steps_completed": "0",
			"reason": "MESHROLL_CANARY_SUBSET is required: set it to the DestinationRule subset of the canary version, e.g. v2\n" +
				"MESHROLL_WEIGHT=150: must be an integer from 0 to 100\nMESHROLL_WIEGHT is not a meshroll variable: did you mean MESHROLL_WEIGHT?"},
	}
	for _, f := range fixtures() {
		got := values(f.res)
		for k, v := range want[f.name] {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", f.name, k, got[k], v)
			}
		}
	}
	// Weights that were never read are unknown, not 0.
	invalid := rollout.Result{Outcome: rollout.Invalid, Reason: "preflight: no route"}
	if got := values(invalid); got["canary_weight"] != "" || got["stable_weight"] != "" || got["steps_completed"] != "0" {
		t.Errorf("invalid run: %v", got)
	}
}

// steps_completed counts what a user means: steps written and held to the end.
func TestStepsCompleted(t *testing.T) {
	t.Parallel()
	m := time.Minute
	step := func(i int, start time.Duration, hold time.Duration, ws ...analysis.Window) rollout.Step {
		return setStep(i, 3, i*30, (i-1)*30, at(start), hold, ws...)
	}
	// ended is a step during whose hold the run ended.
	ended := func(s rollout.Step, why string) rollout.Step {
		s.Error = why
		return s
	}
	tests := []struct {
		name string
		res  rollout.Result
		want int
	}{
		{"cancelled during the hold of step 2", rollout.Result{Outcome: rollout.Cancelled, StartedAt: t0, FinishedAt: at(3 * m),
			Steps: []rollout.Step{step(1, 0, m), ended(step(2, m, 5*m), "context canceled"), rollbackStep(60, at(2*m))}}, 1},
		{"the write of step 3 failed after step 2 was held", rollout.Result{Outcome: rollout.Failed, StartedAt: t0, FinishedAt: at(3 * m),
			Steps: []rollout.Step{step(1, 0, m), step(2, m, m), rollbackStep(60, at(2*m+time.Second))}}, 2},
		{"a failed analysis window ended step 1", rollout.Result{Outcome: rollout.Failed, StartedAt: t0, FinishedAt: at(3 * m),
			Steps: []rollout.Step{ended(step(1, 0, m, window(at(m), 100, 50, 100)), "check success-rate failed"), rollbackStep(30, at(m))}}, 0},
		{"unchanged counts: the weights are in place", rollout.Result{Outcome: rollout.Unchanged,
			Steps: []rollout.Step{{Index: 1, Of: 1, Action: rollout.ActionSet}}}, 1},
		{"nothing recorded", rollout.Result{Outcome: rollout.Failed}, 0},
	}
	for _, tt := range tests {
		if got := stepsCompleted(tt.res); got != tt.want {
			t.Errorf("%s: steps completed = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestDetect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want config.CI
	}{
		{map[string]string{"GITHUB_ACTIONS": "true"}, config.CIGitHub},
		{map[string]string{"GITHUB_ACTIONS": "true", "GITLAB_CI": "true", "JENKINS_URL": "http://j"}, config.CIGitHub},
		{map[string]string{"GITHUB_ACTIONS": "false", "GITLAB_CI": "true"}, config.CIGitLab},
		{map[string]string{"GITLAB_CI": "true", "JENKINS_URL": "http://j"}, config.CIGitLab},
		{map[string]string{"GITLAB_CI": "1", "JENKINS_URL": "http://jenkins:8080/"}, config.CIJenkins},
		{map[string]string{"JENKINS_URL": ""}, config.CIPlain},
		{map[string]string{"CI": "true"}, config.CIPlain},
		{nil, config.CIPlain},
	}
	for _, tt := range tests {
		if got := Detect(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("Detect(%v) = %s, want %s", tt.env, got, tt.want)
		}
	}
}

// New resolves "auto" with Detect; an unknown CI is an error.
func TestNewResolvesCI(t *testing.T) {
	t.Parallel()
	env := map[string]string{"GITLAB_CI": "true"}
	rep, err := New(Options{CI: config.CIAuto, OutputDir: t.TempDir(), Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rep.(*gitlab); !ok {
		t.Errorf("auto with GITLAB_CI=true gave %T", rep)
	}
	if _, err := New(Options{CI: "circleci", OutputDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "circleci") {
		t.Errorf("unknown CI: err = %v", err)
	}
}

// The summary stays far below GitHub's 1 MiB, however many windows a run judged.
func TestSummarySizeBound(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a long message naming a query sum(rate(istio_requests_total[1m])) ", 20)
	build := func(steps, windows, checks int) rollout.Result {
		res := baseResult(config.ModeProgress)
		res.Analysis, res.Outcome, res.FinishedAt = true, rollout.Promoted, at(time.Hour)
		for i := range steps {
			s := setStep(i+1, steps, min(100, i+1), i, at(time.Duration(i)*time.Minute), time.Minute)
			for j := range windows / steps {
				w := analysis.Window{At: s.StartedAt.Add(time.Duration(j) * time.Second)}
				for c := range checks {
					w.Results = append(w.Results, analysis.Result{Check: fmt.Sprintf("custom-%d", c), Canary: ptr(float64(j)), Threshold: "≤ 5", Verdict: analysis.VerdictFail, Message: long})
				}
				s.Windows = append(s.Windows, w)
			}
			res.Steps = append(res.Steps, s)
		}
		return res
	}
	for _, res := range []rollout.Result{build(1, 10_000, 3), build(100, 10_000, 3), build(100, 10_000, 50)} {
		md := summaryMarkdown(res, redactor{})
		if len(md) > 512<<10 {
			t.Errorf("%d steps, %d checks: summary is %d bytes", len(res.Steps), len(res.Steps[0].Windows[0].Results), len(md))
		}
		if !strings.Contains(md, "earlier ones are in result.json") {
			t.Errorf("the summary does not say that windows were left out")
		}
	}
	one := summaryMarkdown(build(1, 10_000, 3), redactor{})
	if rows := strings.Count(one, "| custom-"); rows != maxWindowsShown*3 {
		t.Errorf("one step of 10,000 windows shows %d rows, want %d", rows, maxWindowsShown*3)
	}
	if !strings.Contains(one, "The latest 20 of 10000 windows; 9980 earlier ones are in result.json.") {
		t.Errorf("the omission note is missing:\n%s", one[:2000])
	}
}

// The files are written even when GitHub's are not there; an unwritable file is an error
// that names it, and never a panic.
func TestGitHubFilesMissingOrBroken(t *testing.T) {
	t.Parallel()
	f := fixtures()[1]

	rep, r, stdout := newRun(t, config.CIGitHub)
	delete(r.env, "GITHUB_OUTPUT")
	delete(r.env, "GITHUB_STEP_SUMMARY")
	if err := replay(rep, f.res); err != nil {
		t.Errorf("without GitHub's files: %v", err)
	}
	for _, name := range []string{ResultFile, SummaryFile, OutputsFile, JUnitFile} {
		readFile(t, filepath.Join(r.outDir, name))
	}
	if !strings.Contains(stdout.String(), "GITHUB_OUTPUT is not set") || !strings.Contains(stdout.String(), "::error title=meshroll canary-failed::") {
		t.Errorf("stdout:\n%s", stdout)
	}

	rep, r, _ = newRun(t, config.CIGitHub)
	r.env["GITHUB_OUTPUT"] = t.TempDir() // a directory cannot be appended to
	err := replay(rep, f.res)
	if err == nil || !strings.Contains(err.Error(), r.env["GITHUB_OUTPUT"]) {
		t.Errorf("GITHUB_OUTPUT is a directory: err = %v", err)
	}
	if data := readFile(t, r.env["GITHUB_STEP_SUMMARY"]); !strings.Contains(string(data), "canary-failed") {
		t.Errorf("the job summary was not written after the outputs failed")
	}
}

// A result file that cannot be written is an error naming its path; the others are written.
func TestFinishReportsUnwritableFiles(t *testing.T) {
	t.Parallel()
	for _, ci := range allCIs {
		rep, r, stdout := newRun(t, ci)
		blocked := filepath.Join(r.outDir, JUnitFile)
		if err := os.Mkdir(blocked, 0o755); err != nil { // a directory where the file goes
			t.Fatal(err)
		}
		err := replay(rep, fixtures()[0].res)
		if err == nil || !strings.Contains(err.Error(), blocked) {
			t.Errorf("%s: err = %v, want it to name %s", ci, err, blocked)
		}
		readFile(t, filepath.Join(r.outDir, ResultFile))
		if strings.Contains(stdout.String(), "meshroll-out/junit.xml") {
			t.Errorf("%s: the closing block lists junit.xml as written", ci)
		}
		if err := rep.Finish(fixtures()[0].res); err == nil {
			t.Errorf("%s: a second Finish did not fail", ci)
		}
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{CI: config.CIPlain, OutputDir: filepath.Join(file, "out")}); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("New with an output directory under a file: err = %v", err)
	}
}

// GitLab sections pair up, have unique names, and a failed step's problem follows its end.
func TestGitLabSections(t *testing.T) {
	t.Parallel()
	out := finish(t, config.CIGitLab, fixtures()[1]).stdout
	starts := regexp.MustCompile(`\x1b\[0Ksection_start:\d+:(\w+)\[collapsed=true\]\r\x1b\[0K`).FindAllStringSubmatch(out, -1)
	ends := regexp.MustCompile(`\x1b\[0Ksection_end:\d+:(\w+)\r\x1b\[0K\n`).FindAllStringSubmatch(out, -1)
	var startNames, endNames []string
	for _, m := range starts {
		startNames = append(startNames, m[1])
	}
	for _, m := range ends {
		endNames = append(endNames, m[1])
	}
	want := []string{"meshroll_step_1", "meshroll_step_2", "meshroll_rollback"}
	if !slices.Equal(startNames, want) || !slices.Equal(endNames, want) {
		t.Errorf("sections start %v and end %v, want %v", startNames, endNames, want)
	}
	end := strings.Index(out, "section_end:1772359200:meshroll_step_2")
	problem := strings.Index(out, "step 2/4: check success-rate failed")
	if end < 0 || problem < end {
		t.Errorf("the failure of step 2 is not printed after its section ends:\n%s", out)
	}
}
