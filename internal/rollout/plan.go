package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Stage is one entry of a run's plan: what the steered route should do, and how long it is
// held (and judged, when metric analysis is on) before the next stage.
type Stage struct {
	Index   int             `json:"index"` // 1-based
	Of      int             `json:"of"`
	Desired traffic.Desired `json:"desired"`
	Hold    time.Duration   `json:"hold,omitempty"`
	Judged  bool            `json:"judged,omitempty"`
}

// Describe renders a stage for the plan's log lines: "canary 25%, held 1m0s and judged".
func (s Stage) Describe() string {
	d := fmt.Sprintf("canary %d%%", s.Desired.CanaryWeight)
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
func NewPlan(cfg config.Config, judged bool) Plan {
	weights := stepWeights(cfg)
	plan := make(Plan, len(weights))
	for i, w := range weights {
		hold := holdFor(cfg, judged, i == len(weights)-1, w)
		plan[i] = Stage{
			Index: i + 1, Of: len(weights),
			Desired: traffic.Desired{CanaryWeight: w},
			Hold:    hold,
			Judged:  judged && hold > 0,
		}
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
	case cfg.Mode == config.ModeProgress && !(last && w == 100) && !(analysis && w == 0):
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
