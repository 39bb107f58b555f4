package report

import (
	"fmt"

	"github.com/meshroll/meshroll/internal/rollout"
)

// gitlab folds each step's lines into a collapsible section of the job log:
//
//	\x1b[0Ksection_start:<unix>:<name>[collapsed=true]\r\x1b[0K<header>
//	\x1b[0Ksection_end:<unix>:<name>\r\x1b[0K
//
// Whether to collapse must be said at the start, before it is known how the step goes, so
// every section starts collapsed and a step that did not go well has its problem printed
// again after section_end, where it stays visible.
type gitlab struct {
	*base
	open string          // the name of the open section, "" when none
	used map[string]bool // section names must be unique within a job log
}

func (g *gitlab) StepStarted(s rollout.Step) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.endSection()
	name := g.sectionName(s)
	fmt.Fprintf(g.out, "\x1b[0Ksection_start:%d:%s[collapsed=true]\r\x1b[0K%s\n", g.o.Now().Unix(), name, cleanText(g.red.String(stepTitle(s))))
	g.open = name
}

func (g *gitlab) StepDone(s rollout.Step) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.endSection()
	if line := stepProblem(s); line != "" {
		g.print(line)
	}
}

func (g *gitlab) endSection() {
	if g.open == "" {
		return
	}
	fmt.Fprintf(g.out, "\x1b[0Ksection_end:%d:%s\r\x1b[0K\n", g.o.Now().Unix(), g.open)
	g.open = ""
}

// sectionName is meshroll_step_<i> (meshroll_rollback for the automatic rollback), with a
// suffix should the same step ever be reported twice.
func (g *gitlab) sectionName(s rollout.Step) string {
	name := fmt.Sprintf("meshroll_step_%d", s.Index)
	if s.Action == rollout.ActionRollback {
		name = "meshroll_rollback"
	}
	unique := name
	for n := 2; g.used[unique]; n++ {
		unique = fmt.Sprintf("%s_%d", name, n)
	}
	g.used[unique] = true
	return unique
}

func (g *gitlab) Finish(res rollout.Result) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.start(); err != nil {
		return err
	}
	g.endSection()
	written, err := g.writeFiles(res)
	g.printResult(res, written)
	return err
}
