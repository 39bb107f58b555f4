package rollout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// errInconclusive ends a step whose hold judged no window.
var errInconclusive = errors.New("inconclusive")

// errAnalysisInput marks an analysis preflight failure caused by the input (a rejected query,
// labels that match nothing, refused credentials): exit 2, like any other bad input.
var errAnalysisInput = errors.New("metric analysis preflight failed")

func analysisPreflightError(err error) error {
	if errors.Is(err, analysis.ErrQuery) || errors.Is(err, analysis.ErrNoData) || errors.Is(err, analysis.ErrUnauthorized) {
		return fmt.Errorf("%w: %w", errAnalysisInput, err)
	}
	return err
}

// checkFailed ends a run whose canary failed checks in MESHROLL_FAILURE_THRESHOLD windows.
type checkFailed struct {
	result             analysis.Result // the failing check of the window that reached the threshold
	windows, threshold int
}

func (e *checkFailed) Error() string {
	r := e.result
	return fmt.Sprintf("check %s failed: canary %s, stable %s, threshold %s: %s (%d failed windows, MESHROLL_FAILURE_THRESHOLD=%d)",
		r.Check, analysis.Format(r.Canary), analysis.Format(r.Stable), r.Threshold, r.Message, e.windows, e.threshold)
}

// verdicts keep, over the whole run, the windows with a failed check (a guardrail, a custom
// check), the windows in a row that could not be evaluated (Prometheus down, a query
// failing), and the sequential comparisons of canary against stable.
type verdicts struct {
	threshold int
	failed    int // windows with at least one failed check, since the run started
	troubled  int // consecutive windows without an answer for every check
	compare   *comparisons
}

// window records one evaluated window and returns the error that ends the run, if any.
func (j *verdicts) window(w analysis.Window) error {
	if failed := w.Failed(); len(failed) > 0 {
		j.failed++
		if j.failed >= j.threshold {
			return &checkFailed{result: failed[0], windows: j.failed, threshold: j.threshold}
		}
	}
	if errored := w.Errored(); len(errored) > 0 {
		return j.trouble(fmt.Errorf("check %s could not be evaluated: %s", errored[0].Check, errored[0].Message))
	}
	j.troubled = 0
	return nil
}

// trouble records a window that could not be evaluated.
func (j *verdicts) trouble(err error) error {
	j.troubled++
	if j.troubled >= j.threshold {
		return fmt.Errorf("metric analysis failed in %d windows in a row (MESHROLL_FAILURE_THRESHOLD=%d), so the canary cannot be judged: %w",
			j.troubled, j.threshold, err)
	}
	return nil
}

// analyze holds a step for d from from, judging the canary every analysis interval: on the
// mesh's metrics, and by the rollout webhooks (without metric analysis, by them alone).
// Windows are counted from from, so a slow evaluation does not make the hold drift.
func (r *Runner) analyze(ctx context.Context, cfg config.Config, step *Step, from time.Time, d time.Duration, j *verdicts, last traffic.Routing) error {
	interval := cfg.Analysis.Interval
	end := from.Add(d)
	before := len(step.Windows) // a hold extended at a gate numbers its windows on
	judged := false
	var lastNoData string
	// unevaluated is why the last window that was not judged could not be evaluated (nil when
	// it had no data): when it ends a step without a judged window, Prometheus or a query is at
	// fault, not the canary's traffic, and that is a runtime failure rather than inconclusive.
	var unevaluated error
	var prev analysis.Snapshot
	if r.Analysis != nil {
		prev = r.stepStart(ctx, *step, interval, j.compare)
	}
	for n := 1; ; n++ {
		at := from.Add(time.Duration(n) * interval)
		if at.After(end) {
			break
		}
		if err := r.hold(ctx, at.Sub(r.Now()), last); err != nil {
			return err
		}
		w, err := r.evaluate(ctx)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			r.logf("step %d/%d window %d: %v", step.Index, step.Of, before+n, err)
			if err := j.trouble(err); err != nil {
				return err
			}
			unevaluated = err
			prev = analysis.Snapshot{} // the next window's counts start over
			continue
		}
		var worse error
		if r.Analysis != nil {
			prev, worse = r.compare(ctx, *step, before+n, &w, prev, j.compare)
		}
		step.Windows = append(step.Windows, w)
		r.logWindow(*step, before+n, w)
		if worse != nil {
			return worse // the test already paid for looking every window: at once
		}
		if err := j.window(w); err != nil {
			return err
		}
		if w.Judged() {
			judged = true
		} else if errored := w.Errored(); len(errored) > 0 {
			unevaluated = fmt.Errorf("check %s could not be evaluated: %s", errored[0].Check, errored[0].Message)
		} else if msg := firstMessage(w, analysis.VerdictNoData); msg != "" {
			lastNoData, unevaluated = msg, nil
		}
		if judged && j.compare.closeEnough() && r.Now().Sub(step.StartedAt) >= cfg.Analysis.MinStepDuration {
			r.logf("step %d/%d: ending the step early: the canary is within the margin of stable (%s) with %s confidence",
				step.Index, step.Of, marginWords(cfg.Analysis), percentWords(cfg.Analysis.Confidence))
			step.HeldUntil = r.Now()
			return nil
		}
	}
	if err := r.hold(ctx, end.Sub(r.Now()), last); err != nil {
		return err
	}
	if !judged {
		if unevaluated != nil {
			return fmt.Errorf("step %d/%d held %s without one judged window because metric analysis could not be evaluated: %w", step.Index, step.Of, d, unevaluated)
		}
		why := "no window was evaluated"
		if lastNoData != "" {
			why = lastNoData
		}
		return fmt.Errorf("%w: step %d/%d held %s without one judged window (%s); send the canary more traffic, lower MESHROLL_MIN_REQUESTS or hold longer with MESHROLL_STEP_DURATION",
			errInconclusive, step.Index, step.Of, d, why)
	}
	return nil
}

// evaluate judges one window: the metric checks (none without metric analysis), then the
// rollout webhooks, each a check of its own.
func (r *Runner) evaluate(ctx context.Context) (analysis.Window, error) {
	w := analysis.Window{At: r.Now()}
	if r.Analysis != nil {
		var err error
		if w, err = r.Analysis.Evaluate(ctx, w.At); err != nil {
			return w, err
		}
	}
	w.Results = append(w.Results, r.rolloutHooks(ctx)...)
	return w, nil
}

// logWindow prints a window as a canary-versus-stable table.
func (r *Runner) logWindow(step Step, n int, w analysis.Window) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  check\tcanary\tstable\tthreshold\tverdict\t")
	for _, res := range w.Results {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", res.Check, analysis.Format(res.Canary), analysis.Format(res.Stable), res.Threshold, res.Verdict, res.Message)
	}
	tw.Flush()
	for _, c := range w.Comparisons {
		fmt.Fprintf(&buf, "  %s\n", c.Evidence)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	r.logf("step %d/%d window %d at %s:\n%s", step.Index, step.Of, n, w.At.UTC().Format(time.TimeOnly), strings.Join(lines, "\n"))
}

func firstMessage(w analysis.Window, v analysis.Verdict) string {
	for _, res := range w.Results {
		if res.Verdict == v {
			return res.Message
		}
	}
	return ""
}

// stepStart reads the counters when a step starts holding: the first window's counts are
// taken from there, and the latency boundary from what stable served in the last two
// analysis intervals (its p99 as it is now, not over its pods' lifetime). A failed read
// leaves the first window without counts (and the step without a latency comparison).
func (r *Runner) stepStart(ctx context.Context, step Step, interval time.Duration, c *comparisons) analysis.Snapshot {
	now := r.Now()
	c.boundary = 0
	back, _, err := r.Analysis.Count(ctx, analysis.Snapshot{}, now.Add(-2*interval))
	if err == nil {
		var recent analysis.Counts
		var snap analysis.Snapshot
		if snap, recent, err = r.Analysis.Count(ctx, back, now); err == nil {
			c.chooseBoundary(recent.Stable)
			return snap
		}
	}
	r.logf("step %d/%d: the counters could not be read at the step's start, so its first window is not compared: %v", step.Index, step.Of, err)
	return analysis.Snapshot{}
}

// compare reads the counters at the end of window n, adds what both versions served since
// prev to the comparisons, and records both in w; it returns the snapshot the next window
// starts from, and the canary found worse.
func (r *Runner) compare(ctx context.Context, step Step, n int, w *analysis.Window, prev analysis.Snapshot, c *comparisons) (analysis.Snapshot, error) {
	snap, counts, err := r.Analysis.Count(ctx, prev, w.At)
	switch {
	case err != nil:
		r.logf("step %d/%d window %d: the counters could not be read, so the window is not compared: %v", step.Index, step.Of, n, err)
		return analysis.Snapshot{}, nil
	case prev.At.IsZero():
		return snap, nil // nothing to count from: the next window is
	}
	w.Counts = &counts
	var worse error
	w.Comparisons, worse = c.observe(counts)
	return snap, worse
}

func marginWords(a config.Analysis) string {
	return fmt.Sprintf("%g× or +%g points, whichever is larger", a.MarginFactor, a.MarginPoints)
}

func percentWords(p float64) string { return strconv.FormatFloat(p, 'g', -1, 64) + "%" }
