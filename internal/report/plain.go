package report

import (
	"github.com/meshroll/meshroll/internal/rollout"
)

// plain reports for Jenkins and any terminal: readable lines, a closing text block and the
// files. Jenkins shows nothing that needs more (its junit and readJSON steps read the files).
type plain struct{ *base }

func (p *plain) StepStarted(rollout.Step) {}

func (p *plain) StepDone(s rollout.Step) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if line := stepProblem(s); line != "" {
		p.print(line)
	}
}

func (p *plain) Finish(res rollout.Result) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.start(); err != nil {
		return err
	}
	written, err := p.writeFiles(res)
	p.printResult(res, written)
	return err
}
