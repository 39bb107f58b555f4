// Package report tells the story of a run in the conventions of the CI system that started
// it: log lines folded per step (GitHub groups, GitLab sections), step outputs, a job
// summary and an error annotation, and always the same four files in the output directory:
// result.json, summary.md, outputs.env and junit.xml.
//
// Every byte a reporter writes, to stdout, to its files or to GitHub's, first passes through
// a redactor that replaces the secrets it was given with "***".
package report

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Reporter receives a run as it happens (rollout.Log) and writes its result at the end.
type Reporter interface {
	rollout.Log
	// Finish writes the result files, the CI outputs and summaries. It is called once, at
	// the end; its error names the file that could not be written.
	Finish(res rollout.Result) error
}

// Options configure a Reporter.
type Options struct {
	CI        config.CI           // already resolved, or "auto" (or "") to Detect
	OutputDir string              // for result.json, summary.md, outputs.env, junit.xml; created if missing
	Getenv    func(string) string // environment lookup (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, …); nil = empty
	Stdout    io.Writer           // log lines and CI workflow commands; nil = discard
	Secrets   []string            // values that must never appear in any output
	Version   string              // meshroll's version, written in result.json
	Now       func() time.Time    // nil = time.Now
}

// The names of the result files in OutputDir.
const (
	ResultFile  = "result.json"
	SummaryFile = "summary.md"
	OutputsFile = "outputs.env"
	JUnitFile   = "junit.xml"
)

// Detect names the CI system the environment belongs to: GITHUB_ACTIONS=true is GitHub,
// GITLAB_CI=true is GitLab, a set JENKINS_URL is Jenkins, anything else plain.
func Detect(getenv func(string) string) config.CI {
	switch {
	case getenv("GITHUB_ACTIONS") == "true":
		return config.CIGitHub
	case getenv("GITLAB_CI") == "true":
		return config.CIGitLab
	case getenv("JENKINS_URL") != "":
		return config.CIJenkins
	}
	return config.CIPlain
}

// New returns the Reporter for o.CI and creates o.OutputDir, so that an output directory
// that cannot be written is known before any traffic moves. On GitHub it first registers
// every secret with ::add-mask::, before anything else is printed.
func New(o Options) (Reporter, error) {
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OutputDir == "" {
		return nil, errors.New("report: no output directory given (MESHROLL_OUTPUT_DIR)")
	}
	ci := o.CI
	if ci == "" || ci == config.CIAuto {
		ci = Detect(o.Getenv)
	}
	switch ci {
	case config.CIGitHub, config.CIGitLab, config.CIJenkins, config.CIPlain:
	default:
		return nil, fmt.Errorf("report: unknown CI system %q: use auto, github, gitlab, jenkins or plain", o.CI)
	}
	if err := os.MkdirAll(o.OutputDir, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create the output directory %s (MESHROLL_OUTPUT_DIR): %w", o.OutputDir, err)
	}

	red := newRedactor(o.Secrets)
	b := &base{o: o, red: red, out: &outWriter{w: o.Stdout, red: red}}
	switch ci {
	case config.CIGitHub:
		return newGitHub(b), nil
	case config.CIGitLab:
		return &gitlab{base: b, used: map[string]bool{}}, nil
	}
	return &plain{base: b}, nil
}

// Output is one step output: a name of action.yml's outputs and its value. Every value is a
// single line but the reason, which holds one problem per line when there are several
// (GitHub takes it as it is; outputs.env, which cannot, joins its lines with "; ").
type Output struct{ Name, Value string }

// Limits of the free-text outputs, in characters: GitLab's dotenv report must stay under
// 5 KB, and a reason longer than this is read in result.json anyway.
const (
	maxReason      = 1000
	maxFailedCheck = 100
)

// Outputs returns the outputs of a run in the order action.yml declares them: result,
// canary_weight, stable_weight, steps_completed, failed_check, reason, duration_seconds.
// The weights are those the route holds at the end (a dry run's are those it read: it wrote
// nothing), empty when the run never read them.
func Outputs(res rollout.Result) []Output { return outputs(res, redactor{}) }

// outputs redacts the free text before cutting it, so that a secret at the cut is not
// half left behind.
func outputs(res rollout.Result, red redactor) []Output {
	canary, stable := "", ""
	now, _ := FinalWeights(res)
	if w, ok := weightOf(now, traffic.RoleCanary); ok {
		canary = strconv.Itoa(w)
	}
	if w, ok := weightOf(now, traffic.RoleStable); ok {
		stable = strconv.Itoa(w)
	}
	return []Output{
		{"result", string(res.Outcome)},
		{"canary_weight", canary},
		{"stable_weight", stable},
		{"steps_completed", strconv.Itoa(stepsCompleted(res))},
		{"failed_check", oneLine(red, res.FailedCheck, maxFailedCheck)},
		{"reason", cut(lines(red, reason(res)), maxReason)},
		{"duration_seconds", strconv.FormatInt(durationSeconds(res), 10)},
	}
}

// oneLine redacts s, joins its lines with "; " (a reason that lists several problems has
// one per line), drops control characters and cuts it to limit characters, the last of them
// "…".
func oneLine(red redactor, s string, limit int) string {
	return cut(red.String(joinLines(lines(red, s))), limit)
}

// lines redacts s and keeps its line breaks, as "\n": each line without control characters
// or surrounding space, blank lines dropped.
func lines(red redactor, s string) string {
	s = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\t", " ").Replace(red.String(s))
	var kept []string
	for l := range strings.SplitSeq(cleanText(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			kept = append(kept, l)
		}
	}
	return red.String(strings.Join(kept, "\n"))
}

// joinLines writes text that may hold several lines as one, for the places that cannot hold
// a line break (outputs.env, a table cell): its lines joined with "; ".
func joinLines(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// cut shortens s to limit characters, the last of them "…".
func cut(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	return string([]rune(s)[:limit-1]) + "…"
}

// base is what every reporter shares: redacted log lines and the result files.
type base struct {
	mu       sync.Mutex // Log may be called from the analysis goroutine as well
	o        Options
	red      redactor
	out      *outWriter // redacting stdout
	finished bool
	// escapeLine, when set, rewrites one log line before it is written (GitHub: lines that
	// would be read as workflow commands).
	escapeLine func(string) string
}

// Printf writes one log line (or several, when the text has newlines).
func (b *base) Printf(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.print(fmt.Sprintf(format, args...))
}

// print writes text as log lines: redacted, then stripped of control characters.
func (b *base) print(text string) {
	text = cleanText(b.red.String(strings.TrimSuffix(text, "\n")))
	if b.escapeLine != nil {
		lines := strings.Split(text, "\n")
		for i, l := range lines {
			lines[i] = b.escapeLine(l)
		}
		text = strings.Join(lines, "\n")
	}
	io.WriteString(b.out, text+"\n")
}

// start guards against a second Finish.
func (b *base) start() error {
	if b.finished {
		return errors.New("report: Finish called twice")
	}
	b.finished = true
	return nil
}

// writeFiles writes the four result files into OutputDir. It writes every file it can and
// returns the paths written and an error naming each path that failed.
func (b *base) writeFiles(res rollout.Result) ([]string, error) {
	dir := b.o.OutputDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create the output directory %s: %w", dir, unwrapPath(err))
	}
	summary := b.summary(res)
	files := []struct {
		name string
		data func() ([]byte, error)
	}{
		{ResultFile, func() ([]byte, error) { return resultJSON(res, b.o.Version, b.red) }},
		{SummaryFile, func() ([]byte, error) { return []byte(summary), nil }},
		{OutputsFile, func() ([]byte, error) { return outputsEnv(outputs(res, b.red)), nil }},
		{JUnitFile, func() ([]byte, error) { return junitXML(res, b.red) }},
	}
	var written []string
	var errs []error
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		data, err := f.data()
		if err == nil {
			err = os.WriteFile(path, []byte(b.red.String(string(data))), 0o644)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to write %s: %w", path, unwrapPath(err)))
			continue
		}
		written = append(written, path)
	}
	return written, errors.Join(errs...)
}

// summary is summary.md, redacted.
func (b *base) summary(res rollout.Result) string {
	return b.red.String(summaryMarkdown(res, b.red))
}

// unwrapPath drops the *fs.PathError layer, whose path the caller's message names already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// printResult prints the closing block of every log: the result, the weights, why, and
// where the files are.
func (b *base) printResult(res rollout.Result, written []string) {
	var t strings.Builder
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&t, "\n  %-15s %s", k, v)
		}
	}
	fmt.Fprintf(&t, "meshroll summary: %s", res.Outcome)
	if kind, name := res.Object(); name != "" {
		vs := res.Namespace + "/" + name
		if res.Route != "" {
			vs += ", " + traffic.RouteWord(kind) + " " + res.Route
		}
		row(kind, fmt.Sprintf("%s (stable %s, canary %s)", vs, res.StableName(), res.CanaryName()))
	}
	now, planned := FinalWeights(res)
	describe := func(ds []traffic.Destination) string {
		canary, _ := weightOf(ds, traffic.RoleCanary)
		stable, _ := weightOf(ds, traffic.RoleStable)
		return fmt.Sprintf("%s (canary %d, stable %d)", traffic.DescribeWeights(ds), canary, stable)
	}
	switch {
	case planned != nil:
		row("weights", describe(now)+", unchanged: a dry run writes nothing")
		row("planned", describe(planned)+" after the last step")
	case len(now) > 0:
		row("weights", describe(now))
	}
	if asked := stepsAsked(res); asked > 0 && res.Outcome != rollout.DryRun {
		row("steps", fmt.Sprintf("%d of %d completed", stepsCompleted(res), asked))
	}
	row("duration", human(span(res.StartedAt, res.FinishedAt)))
	if timedOnly(res) {
		row("analysis", "none: steps were timed only (set MESHROLL_PROMETHEUS_SERVICE or MESHROLL_PROMETHEUS_URL to judge the canary)")
	}
	row("failed check", oneLine(b.red, res.FailedCheck, maxFailedCheck))
	// One problem per line, each under the one before.
	row("reason", strings.ReplaceAll(cut(lines(b.red, res.Reason), maxReason), "\n", "\n"+strings.Repeat(" ", 18)))
	row("files", strings.Join(written, ", "))
	b.print(t.String())
}
