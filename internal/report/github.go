package report

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sethvargo/go-githubactions"

	"github.com/meshroll/meshroll/internal/rollout"
)

// github speaks GitHub Actions through go-githubactions, always through an Action built on
// the injected environment and stdout (never the package-level functions, which read
// os.Getenv and write os.Stdout, and never Fatalf, which exits): ::add-mask:: for every
// secret, a log group per step, step outputs in $GITHUB_OUTPUT, the summary in
// $GITHUB_STEP_SUMMARY and an ::error:: annotation when the run failed.
type github struct {
	*base
	gh   *githubactions.Action // writes through the redacting stdout
	open bool                  // a group is open
}

// githubDelimiter is the heredoc delimiter go-githubactions v1.3.0 writes around every
// value in $GITHUB_OUTPUT; a value must never contain it.
const githubDelimiter = "_GitHubActionsFileCommandDelimeter_"

func newGitHub(b *base) *github {
	// Masks go first, before any other line, and around the redactor: they must carry the
	// secret itself. The runner swallows the command and hides the value from then on.
	raw := githubactions.New(githubactions.WithGetenv(b.o.Getenv), githubactions.WithWriter(&outWriter{w: b.o.Stdout}))
	for _, m := range b.red.masks() {
		raw.AddMask(m)
	}
	b.escapeLine = escapeCommand
	return &github{base: b, gh: githubactions.New(githubactions.WithGetenv(b.o.Getenv), githubactions.WithWriter(b.out))}
}

// escapeCommand keeps a log line from being read as a workflow command: the runner takes
// any line starting with "::" (after spaces) as one, and an error message may hold any text.
func escapeCommand(line string) string {
	if strings.HasPrefix(strings.TrimSpace(line), "::") {
		return "> " + line
	}
	return line
}

func (g *github) StepStarted(s rollout.Step) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.endGroup()
	g.gh.Group(cleanText(g.red.String(stepTitle(s))))
	g.open = true
}

func (g *github) StepDone(s rollout.Step) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.endGroup()
	if line := stepProblem(s); line != "" {
		g.print(line)
	}
}

func (g *github) endGroup() {
	if g.open {
		g.gh.EndGroup()
		g.open = false
	}
}

func (g *github) Finish(res rollout.Result) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.start(); err != nil {
		return err
	}
	g.endGroup()
	written, err := g.writeFiles(res)
	errs := []error{err}

	// Without the runner's files (the image run by hand with MESHROLL_CI=github), the
	// outputs and the summary are still in OutputDir: say so, and carry on.
	errs = append(errs, g.fileCommand("GITHUB_OUTPUT", "step outputs", func() {
		for _, o := range outputs(res, g.red) {
			g.gh.SetOutput(o.Name, githubValue(o.Value))
		}
	}))
	errs = append(errs, g.fileCommand("GITHUB_STEP_SUMMARY", "job summary", func() {
		g.gh.AddStepSummary(g.summary(res))
	}))

	g.printResult(res, written)
	if failed(res.Outcome) {
		// Several problems stay one per line: the annotation escapes line breaks as %0A.
		message := cut(lines(g.red, res.Reason), maxReason)
		if res.FailedCheck != "" && !strings.Contains(message, res.FailedCheck) {
			message = fmt.Sprintf("check %s failed: %s", oneLine(g.red, res.FailedCheck, maxFailedCheck), message)
		}
		if message == "" {
			message = headline(res.Outcome)
		}
		title := "meshroll " + string(res.Outcome)
		g.gh.WithFieldsMap(map[string]string{"title": title}).Errorf("%s", message)
	}
	return errors.Join(errs...)
}

// fileCommand runs issue, which writes to the file named by the environment variable env.
// go-githubactions panics when it cannot write; that becomes an error naming the file.
func (g *github) fileCommand(env, what string, issue func()) (err error) {
	path := g.o.Getenv(env)
	if path == "" {
		g.print(fmt.Sprintf("%s is not set: the %s were not written to GitHub (they are in %s)", env, what, g.o.OutputDir))
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("failed to write the %s to %s (%s): %v", what, path, env, p)
		}
	}()
	issue()
	return nil
}

// githubValue makes sure a value cannot break $GITHUB_OUTPUT, whose heredoc form holds
// several lines (the reason's problems, one per line): no carriage return, and never the
// heredoc delimiter, which would end the value early.
func githubValue(v string) string {
	v = strings.ReplaceAll(v, "\r", " ")
	for strings.Contains(v, githubDelimiter) {
		v = strings.ReplaceAll(v, githubDelimiter, "")
	}
	return v
}
