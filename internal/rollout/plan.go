package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Kind says what a stage does to the traffic.
type Kind string

const (
	KindWeight Kind = "weight" // the canary gets a share of the route's requests
	KindAB     Kind = "ab"     // the canary gets the requests that match MESHROLL_MATCH
	KindMirror Kind = "mirror" // the canary gets a copy of a share of the requests; its answers are dropped
)

// Stage is one entry of a run's plan: what the steered route should do, and how long it is
// held (and judged, when metric analysis is on) before the next stage.
type Stage struct {
	Index   int             `json:"index"` // 1-based
	Of      int             `json:"of"`
	Kind    Kind            `json:"kind"`
	Desired traffic.Desired `json:"desired"`
	Hold    time.Duration   `json:"hold,omitempty"`
	Judged  bool            `json:"judged,omitempty"`
}

// Describe renders a stage for the plan's log lines: "canary 25%, held 1m0s and judged".
func (s Stage) Describe() string {
	var d string
	switch s.Kind {
	case KindMirror:
		d = fmt.Sprintf("mirror %g%% of the requests to the canary", s.Desired.MirrorPercent)
	case KindAB:
		d = "A/B: requests matching MESHROLL_MATCH to the canary"
	default:
		d = fmt.Sprintf("canary %d%%", s.Desired.CanaryWeight)
		if s.Desired.AB {
			d += ", A/B route kept"
		}
		if s.Desired.Prune {
			d += ", the destinations left at 0 removed"
		}
	}
	switch {
	case s.Hold > 0 && s.Judged:
		d += fmt.Sprintf(", held %s and judged", s.Hold)
	case s.Hold > 0:
		d += fmt.Sprintf(", held %s", s.Hold)
	}
	return d
}

// Plan is the list of stages a run goes through, built once from the input before anything
// is read or written.
type Plan []Stage

// NewPlan builds the stages of cfg.Mode; judged says whether metric analysis gates holds.
// A progression goes through a mirror stage (MESHROLL_MIRROR_PERCENT; the mirror is cleared
// after it), an A/B stage (MESHROLL_MATCH; the A/B route stays through the weighted steps
// and goes at promotion), then the weighted steps. A phase puts the route in the shape the
// input describes; promote and rollback clear both.
func NewPlan(cfg config.Config, judged bool) Plan {
	ab := len(cfg.Match) > 0
	var plan Plan
	if cfg.Mode.Progressive() {
		if cfg.MirrorPercent > 0 {
			plan = append(plan, Stage{Kind: KindMirror, Desired: traffic.Desired{KeepWeights: true, MirrorPercent: cfg.MirrorPercent}, Hold: cfg.StepDuration})
		}
		if ab {
			plan = append(plan, Stage{Kind: KindAB, Desired: traffic.Desired{KeepWeights: true, AB: true}, Hold: cfg.StepDuration})
		}
	}
	weights := stepWeights(cfg)
	for i, w := range weights {
		d := traffic.Desired{CanaryWeight: w}
		if cfg.Mode == config.ModePhase && w < 100 {
			d.AB, d.MirrorPercent = ab, cfg.MirrorPercent
		}
		if cfg.Mode.Progressive() && w < 100 {
			d.AB = ab
		}
		d.Prune = cfg.Prune && w == 100 // MESHROLL_PRUNE: the promotion leaves nothing at 0
		plan = append(plan, Stage{Kind: KindWeight, Desired: d, Hold: holdFor(cfg, judged, i == len(weights)-1, w)})
	}
	for i := range plan {
		plan[i].Index, plan[i].Of = i+1, len(plan)
		plan[i].Judged = judged && plan[i].Hold > 0
	}
	return plan
}

// Describe renders the plan as log lines, one per stage.
func (p Plan) Describe() string {
	lines := make([]string, len(p))
	for i, s := range p {
		lines[i] = fmt.Sprintf("  %d. %s", s.Index, s.Describe())
	}
	return strings.Join(lines, "\n")
}

// holdFor is how long a step that sets weight w holds. A progression holds every step; a
// phase holds only when analysis judges it. A step to 100 at the end is not held (there is
// no stable traffic left to compare with), nor is a step to 0 under analysis (no canary
// traffic to judge).
func holdFor(cfg config.Config, analysis, last bool, w int) time.Duration {
	switch {
	case cfg.Mode.Progressive() && !(last && w == 100) && !(analysis && w == 0):
		return cfg.StepDuration
	case cfg.Mode == config.ModePhase && analysis && w > 0 && w < 100:
		return cfg.StepDuration
	}
	return 0
}

func stepWeights(cfg config.Config) []int {
	switch cfg.Mode {
	case config.ModePhase:
		return []int{cfg.Weight}
	case config.ModePromote:
		return []int{100}
	case config.ModeRollback:
		return []int{0}
	}
	return cfg.Steps
}

// from drops the stages a progression has already passed: a progression never lowers the
// canary, so weighted steps at or below its current weight are skipped (mirror and A/B
// stages keep the weights, and stay). The stages left are numbered anew; skipped says what
// went; with no weighted step left there is nothing to do.
func (p Plan) from(current int) (left, skipped Plan) {
	if current <= 0 {
		return p, nil
	}
	weighted := false
	for _, s := range p {
		if s.Kind == KindWeight && s.Desired.CanaryWeight <= current {
			skipped = append(skipped, s)
			continue
		}
		left = append(left, s)
		weighted = weighted || s.Kind == KindWeight
	}
	if !weighted {
		return nil, p
	}
	for i := range left {
		left[i].Index, left[i].Of = i+1, len(left)
	}
	return left, skipped
}

// promotes says whether the stage gives the canary all the traffic.
func (s Stage) promotes() bool {
	return s.Kind == KindWeight && s.Desired.CanaryWeight == 100
}

// serves says whether any stage sends the stable version, and the canary, traffic.
func (p Plan) serves() (stable, canary bool) {
	for _, s := range p {
		d := s.Desired
		stable = stable || d.KeepWeights || d.CanaryWeight < 100
		canary = canary || d.AB || d.MirrorPercent > 0 || (!d.KeepWeights && d.CanaryWeight > 0)
	}
	return stable, canary
}

// shaped says whether the plan has a stage other than weights (mirror, A/B).
func (p Plan) shaped() bool {
	for _, s := range p {
		if s.Kind != KindWeight || s.Desired.AB || s.Desired.MirrorPercent > 0 {
			return true
		}
	}
	return false
}

// held says whether any stage of the plan is held.
func (p Plan) held() bool {
	for _, s := range p {
		if s.Hold > 0 {
			return true
		}
	}
	return false
}
