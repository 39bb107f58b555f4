package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/traffic"
)

// This file reads the story of a run out of a rollout.Result: which step ended a failed
// run, how many steps completed, and the labels and durations every report shows.

// failed reports whether the run ended in a way that fails a CI job.
func failed(o rollout.Outcome) bool { return o.ExitCode() != 0 }

// failedStep returns the index in res.Steps of the step during which a failed run ended
// (the rollout records why in Step.Error), or -1 when the run failed outside of a recorded
// step: before the first write, or while writing the next step (a step is recorded only
// once its weights are written).
func failedStep(res rollout.Result) int {
	for i := len(res.Steps) - 1; i >= 0; i-- {
		if s := res.Steps[i]; s.Action == rollout.ActionSet && s.Error != "" {
			return i
		}
	}
	return -1
}

// stepsCompleted counts the steps of the asked mode that were written (or found already in
// place) and held to the end: the automatic rollback, dry-run plans and the step during
// which a failed run ended do not count. A user reads "2" as "the canary got through steps
// 1 and 2".
func stepsCompleted(res rollout.Result) int {
	n := 0
	for _, s := range res.Steps {
		if s.Action == rollout.ActionSet {
			n++
		}
	}
	if failedStep(res) >= 0 {
		n--
	}
	return n
}

// stepsAsked is the number of steps the mode asked for (Of of any step), 0 when unknown.
func stepsAsked(res rollout.Result) int {
	for _, s := range res.Steps {
		if s.Of > 0 {
			return s.Of
		}
	}
	return 0
}

// passed reports whether every check of a window passed.
func passed(w analysis.Window) bool {
	for _, r := range w.Results {
		if r.Verdict != analysis.VerdictPass {
			return false
		}
	}
	return true
}

// FinalWeights returns the route's destinations at the end of the run as the cluster holds
// them (nil when the run never read the route) and, for a dry run only, those its plan ends
// with. A dry run writes nothing, so it ends with the weights it read before planning (its
// first step's Before), not with its plan's, which the result's Final holds.
func FinalWeights(res rollout.Result) (now, planned []traffic.Destination) {
	if res.Outcome != rollout.DryRun || len(res.Steps) == 0 {
		return res.Final, nil
	}
	return res.Steps[0].Before, res.Steps[len(res.Steps)-1].After
}

// reason is why the run ended as it did, for the outputs and result.json: the result's
// reason, or for a dry run, which has none, what it planned.
func reason(res rollout.Result) string {
	if res.Reason != "" || res.Outcome != rollout.DryRun || len(res.Steps) == 0 {
		return res.Reason
	}
	weights := make([]string, len(res.Steps))
	for i, s := range res.Steps {
		weights[i] = fmt.Sprintf("%d%%", canaryAfter(s))
	}
	what := "planned canary weight"
	if len(weights) > 1 {
		what += "s"
	}
	_, planned := FinalWeights(res)
	return fmt.Sprintf("dry run, nothing was written: %s %s, ending with %s", what, strings.Join(weights, " → "), traffic.DescribeWeights(planned))
}

// weightOf returns the weight of the destination with role, and whether the weights are
// known at all (a run that failed before reading the VirtualService knows none).
func weightOf(ds []traffic.Destination, role traffic.Role) (int, bool) {
	if len(ds) == 0 {
		return 0, false
	}
	for _, d := range ds {
		if d.Role == role {
			return d.Weight, true
		}
	}
	return 0, true
}

// durationSeconds is the run's wall-clock duration in whole seconds, rounded.
func durationSeconds(res rollout.Result) int64 {
	if res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
		return 0
	}
	return int64(math.Round(res.FinishedAt.Sub(res.StartedAt).Seconds()))
}

// stepLabel names a step in tables and charts: "2/4", or "rollback".
func stepLabel(s rollout.Step) string {
	if s.Action == rollout.ActionRollback {
		return "rollback"
	}
	return fmt.Sprintf("%d/%d%s", s.Index, s.Of, kindNote(s))
}

// kindNote names a stage that is not a weighted step: " mirror", " A/B".
func kindNote(s rollout.Step) string {
	switch s.Kind {
	case rollout.KindMirror:
		return " mirror"
	case rollout.KindAB:
		return " A/B"
	}
	return ""
}

// stepTitle names a step in log groups and sections.
func stepTitle(s rollout.Step) string {
	switch s.Action {
	case rollout.ActionRollback:
		return "rollback to stable"
	case rollout.ActionPlan:
		return fmt.Sprintf("step %d/%d%s: canary %d%% (dry run)", s.Index, s.Of, kindNote(s), s.CanaryWeight)
	}
	return fmt.Sprintf("step %d/%d%s: canary %d%%", s.Index, s.Of, kindNote(s), s.CanaryWeight)
}

// stepEnd is when step i of res ended: when the next one started, or when the run finished.
func stepEnd(res rollout.Result, i int) time.Time {
	if i+1 < len(res.Steps) {
		return res.Steps[i+1].StartedAt
	}
	return res.FinishedAt
}

// span is end-start, never negative, and zero when either is unknown.
func span(start, end time.Time) time.Duration {
	if start.IsZero() || end.IsZero() || end.Before(start) {
		return 0
	}
	return end.Sub(start)
}

// human writes a duration rounded to the second without trailing zero units: 5m, 1m30s, 2h.
func human(d time.Duration) string {
	s := d.Round(time.Second).String()
	for _, zero := range []string{"m0s", "h0m"} {
		if strings.HasSuffix(s, zero) {
			s = strings.TrimSuffix(s, zero[1:])
		}
	}
	return s
}

// offset writes when t happened, relative to the start of the run: +1m30s.
func offset(res rollout.Result, t time.Time) string {
	return "+" + human(span(res.StartedAt, t))
}

// stepProblem is the line printed after a step's log group or section when the step did not
// go well, so that it stays visible while the group is folded; "" when it went well. It
// reads only the step (the rest of the run is not known yet), so it says what happened, not
// whether the run will go on: a failed window may still be tolerated by the analysis.
func stepProblem(s rollout.Step) string {
	label := "step " + stepLabel(s)
	switch {
	case s.Action == rollout.ActionRollback && len(s.After) == 0:
		return "rollback to stable failed: the canary may still receive traffic (see the reason below)"
	case s.Action == rollout.ActionRollback:
		return ""
	case len(s.After) == 0:
		return label + ": the weights were not written (see the reason below)"
	case strings.Contains(s.Error, label):
		return s.Error
	case s.Error != "":
		return label + ": " + s.Error
	case len(s.Windows) == 0:
		return ""
	}
	w := s.Windows[len(s.Windows)-1]
	if bad := w.Failed(); len(bad) > 0 {
		return label + ": " + describeResults("failed", bad)
	}
	if bad := w.Errored(); len(bad) > 0 {
		return label + ": " + describeResults("could not be evaluated", bad)
	}
	for _, r := range w.Results {
		if r.Verdict == analysis.VerdictNoData {
			return fmt.Sprintf("%s: not enough data to judge the canary: %s", label, r.Message)
		}
	}
	return ""
}

// describeResults writes "check success-rate failed: <message>; check … failed: …".
func describeResults(what string, rs []analysis.Result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("check %s %s: %s", r.Check, what, r.Message)
	}
	return strings.Join(parts, "; ")
}

// headline is one sentence on what the outcome means for the traffic.
func headline(o rollout.Outcome) string {
	switch o {
	case rollout.Promoted:
		return "The canary receives all traffic."
	case rollout.WeightSet:
		return "The canary receives the asked share of the traffic."
	case rollout.RolledBack:
		return "All traffic is on the stable version."
	case rollout.Unchanged:
		return "Every weight was already in place; nothing was written."
	case rollout.Status:
		return "Read only; nothing was written."
	case rollout.DryRun:
		return "Dry run: the steps below were planned and nothing was written."
	case rollout.Invalid:
		return "Invalid input or a failed preflight check; nothing was written."
	case rollout.CanaryFailed:
		return "The canary failed its analysis or a webhook; all traffic is on the stable version."
	case rollout.Inconclusive:
		return "There was not enough data to judge the canary; traffic was returned to the stable version."
	case rollout.Failed:
		return "The run failed; traffic was returned to the stable version where possible."
	case rollout.Cancelled:
		return "The run was cancelled; traffic was returned to the stable version where possible."
	case rollout.Interrupted:
		return "Someone else changed the route during the run; meshroll stopped without writing and left their change in place."
	}
	return ""
}

// timedOnly reports whether the run moved (or planned to move) traffic to the canary
// without metric analysis nor rollout webhooks judging it: the case the reports warn about
// loudly.
func timedOnly(res rollout.Result) bool {
	if res.Analysis || slices.ContainsFunc(res.Steps, func(s rollout.Step) bool { return len(s.Windows) > 0 }) {
		return false
	}
	for _, s := range res.Steps {
		if s.Action != rollout.ActionRollback && s.CanaryWeight > 0 {
			return true
		}
	}
	return false
}

// noAnalysisNote is the warning of timedOnly runs.
const noAnalysisNote = "No metric analysis: steps were timed only; set MESHROLL_PROMETHEUS_SERVICE (or MESHROLL_PROMETHEUS_URL) to have " +
	"Prometheus judge the canary between steps and roll it back when it fails."
