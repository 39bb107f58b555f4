package rollout

import (
	"context"
	"fmt"
	"time"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Hooks calls the user's webhooks (MESHROLL_WEBHOOKS).
type Hooks interface {
	// Has reports whether any webhook is of type typ.
	Has(typ config.WebhookType) bool
	// Call calls the webhooks of type typ once, in their order, and returns what each call
	// did. A gating type stops at its first failure; notifications are all called.
	// succeeded is what a post-rollout webhook is told of how the rollout ended.
	Call(ctx context.Context, typ config.WebhookType, succeeded bool) []HookCall
}

// HookCall is one call of a webhook, as the timeline shows it.
type HookCall struct {
	Name    string             `json:"name"`
	Type    config.WebhookType `json:"type"`
	URL     string             `json:"url"`
	At      time.Time          `json:"at"`
	Status  int                `json:"status,omitempty"` // the HTTP status; 0 when no answer came
	Latency time.Duration      `json:"latency"`
	OK      bool               `json:"ok"`                // answered 2xx
	Excerpt string             `json:"excerpt,omitempty"` // the start of the response body when not OK
	Error   string             `json:"error,omitempty"`   // why the call is not OK
	// Polls is, at a manual gate (confirm-rollout, confirm-promotion), how many rounds of
	// calls it took until this answer; 0 elsewhere.
	Polls int `json:"polls,omitempty"`
}

// LoadGenerator sends the built-in load (MESHROLL_LOAD_URL) while a step holds.
type LoadGenerator interface {
	// Start starts sending until stop is called or ctx ends; stop returns what it saw.
	Start(ctx context.Context) (stop func() LoadStats)
}

// LoadStats is what the built-in load generator saw of one step, from the client's side.
type LoadStats struct {
	Requests int64         `json:"requests"`
	Non2xx   int64         `json:"non2xx"`
	Rate     float64       `json:"rate"` // requests per second achieved
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	Summary  string        `json:"summary"` // the figures in a line, for the log and the summary
}

// Security checks, writing nothing, that the canary is protected as stable is.
type Security interface {
	// Check returns what the run should warn about, and an error matching
	// traffic.ErrPreflight for what MESHROLL_VERIFY_SECURITY makes a failed preflight.
	Check(ctx context.Context) (warnings []string, err error)
}

// hooked reports whether any webhook is of type typ.
func (r *Runner) hooked(typ config.WebhookType) bool { return r.Hooks != nil && r.Hooks.Has(typ) }

// hookFailed ends a run whose gating webhook failed: the canary failed (exit 3).
type hookFailed struct{ call HookCall }

func (e *hookFailed) Error() string {
	return fmt.Sprintf("%s webhook %q (%s) failed: %s", e.call.Type, e.call.Name, e.call.URL, e.call.Error)
}

// check is the name the failed check is reported under (MESHROLL_FAILED_CHECK).
func (e *hookFailed) check() string { return webhookCheck(e.call.Name) }

func webhookCheck(name string) string { return "webhook:" + name }

// notificationBudget bounds the post-rollout and rollback webhooks of a run that ended,
// each call keeping its own timeout within it.
const notificationBudget = 30 * time.Second

// openingGates runs the gates before the run's first write: the confirm-rollout webhooks
// are polled until they open, then the pre-rollout webhooks are called; a failure of one of
// those is a failed canary (nothing was moved). A rollback passes no gate: the way out always
// proceeds. ok is false when the run ended there.
func (r *Runner) openingGates(ctx, parent context.Context, cfg config.Config, res *Result) bool {
	if r.Hooks == nil || cfg.Mode == config.ModeRollback {
		return true
	}
	if err := r.await(ctx, cfg, config.WebhookConfirmRollout, res, r.Hold); err != nil {
		r.fail(ctx, parent, res, err)
		return false
	}
	if err := r.gate(ctx, cfg, config.WebhookPreRollout, res); err != nil {
		r.fail(ctx, parent, res, err)
		r.logf("%s: nothing was moved", res.Outcome)
		return false
	}
	return true
}

// gate calls the webhooks of a gating type once and returns a *hookFailed for the first
// that failed.
func (r *Runner) gate(ctx context.Context, cfg config.Config, typ config.WebhookType, res *Result) error {
	if !r.hooked(typ) {
		return nil
	}
	_ = r.book.set(ctx, func(rec *Record) { rec.Doing = "calling the " + string(typ) + " webhooks" })
	calls := r.Hooks.Call(ctx, typ, false)
	res.Webhooks = append(res.Webhooks, calls...)
	for _, c := range calls {
		r.logf("%s", describeCall(c))
		if !c.OK {
			return &hookFailed{call: c}
		}
	}
	return nil
}

// await waits at a manual gate: it calls the webhooks of typ (confirm-rollout or
// confirm-promotion) every analysis interval until they all answer 2xx in one round, or
// the run ends (MESHROLL_TIMEOUT, a cancel). Between rounds, between(ctx, interval) keeps
// watch: a plain wait before any traffic moved, the step's hold (judging the canary) while
// a promotion waits. The log and the run's record say which webhook is awaited.
func (r *Runner) await(ctx context.Context, cfg config.Config, typ config.WebhookType, res *Result, between func(context.Context, time.Duration) error) error {
	if !r.hooked(typ) {
		return nil
	}
	every := cfg.Analysis.Interval
	awaited := ""
	for polls := 1; ; polls++ {
		calls := r.Hooks.Call(ctx, typ, false)
		last := calls[len(calls)-1]
		last.Polls = polls
		if last.OK {
			for i := range calls {
				calls[i].Polls = polls
			}
			res.Webhooks = append(res.Webhooks, calls...)
			r.logf("%s gate open: every webhook answered 2xx (poll %d)", typ, polls)
			return nil
		}
		if ctx.Err() != nil {
			res.Webhooks = append(res.Webhooks, last)
			return fmt.Errorf("failed to pass the %s gate: webhook %q (%s) had not answered 2xx after %d polls: %w", typ, last.Name, last.URL, polls, context.Cause(ctx))
		}
		if last.Name != awaited {
			awaited = last.Name
			res.Webhooks = append(res.Webhooks, last) // the first refusal of each webhook waited for
			r.logf("waiting at the %s gate for webhook %q (%s): %s; polling every %s until it answers 2xx%s",
				typ, last.Name, last.URL, last.Error, every, timeoutWords(cfg))
			_ = r.book.set(ctx, func(rec *Record) {
				rec.Doing = fmt.Sprintf("waiting at the %s gate for webhook %q", typ, last.Name)
			})
		}
		if err := between(ctx, every); err != nil {
			return err
		}
	}
}

func timeoutWords(cfg config.Config) string {
	if cfg.Timeout > 0 {
		return fmt.Sprintf(" or MESHROLL_TIMEOUT=%s ends the run", cfg.Timeout)
	}
	return " (no MESHROLL_TIMEOUT: until the job is cancelled)"
}

// rolloutHooks calls the rollout webhooks for a window and returns them as its checks: a
// webhook that did not answer 2xx is a failed check.
func (r *Runner) rolloutHooks(ctx context.Context) []analysis.Result {
	if !r.hooked(config.WebhookRollout) {
		return nil
	}
	var out []analysis.Result
	for _, c := range r.Hooks.Call(ctx, config.WebhookRollout, false) {
		res := analysis.Result{Check: webhookCheck(c.Name), Threshold: "2xx", Verdict: analysis.VerdictPass}
		if c.Status != 0 {
			status := float64(c.Status)
			res.Canary = &status
		}
		if !c.OK {
			res.Verdict, res.Message = analysis.VerdictFail, c.Error
		}
		out = append(out, res)
	}
	return out
}

// startLoad starts the built-in load for a held step; stop records what it saw in step.
func (r *Runner) startLoad(ctx context.Context, step *Step) (stop func()) {
	if r.Load == nil {
		return func() {}
	}
	end := r.Load.Start(ctx)
	return func() {
		stats := end()
		step.Load = &stats
		r.logf("step %d/%d: load: %s", step.Index, step.Of, stats.Summary)
	}
}

// notify calls the notification webhooks once the run ended: rollback when traffic went
// back to stable (a rollback this run wrote), post-rollout when the rollout is over, either
// way (promoted, or the canary is off the route or was judged failed). Their failures are
// reported and never change the outcome; they run even after a cancel, briefly.
func (r *Runner) notify(ctx context.Context, res *Result) {
	if r.Hooks == nil {
		return
	}
	budget := notificationBudget
	if res.Outcome == Cancelled {
		budget = r.CancelTimeout
	}
	ctx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), budget, fmt.Errorf("the notifications were cut off after %s", budget))
	defer cancel()
	backOnStable := rolledBack(*res)
	if backOnStable {
		r.notifyOf(ctx, config.WebhookRollback, false, res)
	}
	if res.Outcome == Promoted || res.Outcome == CanaryFailed || backOnStable {
		r.notifyOf(ctx, config.WebhookPostRollout, res.Outcome == Promoted, res)
	}
}

func (r *Runner) notifyOf(ctx context.Context, typ config.WebhookType, succeeded bool, res *Result) {
	for _, c := range r.Hooks.Call(ctx, typ, succeeded) {
		res.Webhooks = append(res.Webhooks, c)
		r.logf("%s", describeCall(c))
		if !c.OK {
			r.logf("NOTE: the %s webhook %q failed; the result stays %s", typ, c.Name, res.Outcome)
		}
	}
}

// rolledBack says whether the run returned traffic to stable: its automatic rollback
// landed, or rollback mode moved the traffic.
func rolledBack(res Result) bool {
	if res.Outcome == RolledBack {
		return true
	}
	for _, s := range res.Steps {
		if s.Action == ActionRollback && s.Changed {
			return true
		}
	}
	return false
}

// describeCall says what a webhook call did in one log line.
func describeCall(c HookCall) string {
	if c.OK {
		return fmt.Sprintf("%s webhook %q (%s): %d in %s", c.Type, c.Name, c.URL, c.Status, c.Latency.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s webhook %q (%s) failed: %s", c.Type, c.Name, c.URL, c.Error)
}

// watching returns a wait that checks every DriftInterval that the route still does what
// the run left it doing.
func (r *Runner) watching(last *traffic.Routing) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error { return r.hold(ctx, d, *last) }
}

// judging says whether the run's holds are judged: by metric analysis, or by rollout
// webhooks alone, which then make windows of MESHROLL_ANALYSIS_INTERVAL of their own.
func (r *Runner) judging(res *Result) bool {
	return res.Analysis || (analyzed(res.Mode) && r.hooked(config.WebhookRollout))
}
