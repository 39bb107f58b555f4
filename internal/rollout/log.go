package rollout

import (
	"fmt"
	"io"
	"strings"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Log receives a run as it happens: lines, and the bounds of each step so that a CI system
// can fold a step's lines into a section.
type Log interface {
	Printf(format string, args ...any)
	StepStarted(s Step) // before the step's write; s.After is empty
	StepDone(s Step)    // after the write and the hold, or the failure that ended the step
}

// WriterLog is a Log that writes plain lines to w.
func WriterLog(w io.Writer) Log { return writerLog{w} }

type writerLog struct{ w io.Writer }

func (l writerLog) Printf(format string, args ...any) { fmt.Fprintf(l.w, format+"\n", args...) }
func (writerLog) StepStarted(Step)                    {}
func (writerLog) StepDone(Step)                       {}

// dryRun logs the plan and every patch it would send, and records the planned steps.
func (r *Runner) dryRun(plan Plan, changes []traffic.Change, resourceVersion string, res *Result) {
	r.logf("dry run: nothing will be written")
	for i, stage := range plan {
		c := changes[i]
		step := Step{Index: stage.Index, Of: stage.Of, Action: ActionPlan, Kind: stage.Kind, CanaryWeight: c.After.CanaryWeight(),
			Before: c.Before.Destinations, After: c.After.Destinations, Changed: c.Changed, Patch: c.Patch, StartedAt: r.Now()}
		res.Steps = append(res.Steps, step)
		r.Log.StepStarted(step)
		r.logDryRun(step, c, resourceVersion)
		r.Log.StepDone(step)
		if c.Changed {
			// A later step's precondition is the version the previous write creates.
			resourceVersion = fmt.Sprintf("<resourceVersion after step %d>", stage.Index)
		}
	}
	res.Outcome, res.Final = DryRun, changes[len(changes)-1].After.Destinations
}

func (r *Runner) logStep(s Step, vs string, applied traffic.Applied) {
	r.logf("step %d/%d: %s %s", s.Index, s.Of, vs, describe(applied))
	for _, w := range applied.Warnings {
		r.logf("warning: %s", w)
	}
}

func describe(applied traffic.Applied) string {
	if !applied.Changed {
		return traffic.DescribeWeights(applied.After.Destinations) + " (already in place, nothing written)"
	}
	return applied.Describe()
}

func (r *Runner) logDryRun(s Step, c traffic.Change, resourceVersion string) {
	if !c.Changed {
		r.logf("dry run step %d/%d: %s (already in place, nothing to write)", s.Index, s.Of, traffic.DescribeWeights(c.After.Destinations))
		return
	}
	patch, err := c.PatchJSON(resourceVersion)
	if err != nil {
		patch = []byte(err.Error())
	}
	r.logf("dry run step %d/%d: %s\n  patch: %s", s.Index, s.Of, c.Describe(), patch)
}

func (r *Runner) logf(format string, args ...any) {
	r.Log.Printf(format, args...)
}

func holdNote(cfg config.Config) string {
	if !cfg.Mode.Progressive() {
		return ""
	}
	return fmt.Sprintf(", holding each %s", cfg.StepDuration)
}

func joinInts(ws []int) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprint(w)
	}
	return strings.Join(parts, ",")
}

// announce logs what the run is about to do.
func (r *Runner) announce(cfg config.Config, plan Plan, judged bool) {
	if !judged && cfg.Mode.Progressive() {
		note := "nothing stops a failing canary between steps"
		switch {
		case r.hooked(config.WebhookRollout):
			note = "only the rollout webhooks judge the canary, every " + cfg.Analysis.Interval.String()
		case plan.held():
			note = "steps are timed only and " + note
		}
		r.logf("NOTE: no metric analysis (neither MESHROLL_PROMETHEUS_URL nor MESHROLL_PROMETHEUS_SERVICE is set): %s", note)
	}
	kind, name := cfg.RouteObject()
	r.logf("meshroll %s: %s %s/%s, stable %s, canary %s, canary weights %s%s",
		cfg.Mode, kind, cfg.Namespace, name, cfg.StableName(), cfg.CanaryName(), joinInts(stepWeights(cfg)), holdNote(cfg))
	if cfg.DryRun || plan.shaped() {
		r.logf("plan:\n%s", plan.Describe())
	}
}
