package rollout

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/config"
)

func TestNewPlan(t *testing.T) {
	t.Parallel()
	india := []map[string]any{{"headers": map[string]any{"region": map[string]any{"exact": "india"}}}}
	tests := []struct {
		name   string
		cfg    config.Config
		judged bool
		want   []string
	}{
		{name: "progress", cfg: cfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{10, 50, 100}; c.StepDuration = time.Minute }),
			want: []string{"1. canary 10%, held 1m0s", "2. canary 50%, held 1m0s", "3. canary 100%"}},
		{name: "progress: mirror, A/B, then weights; the A/B route goes at promotion", judged: true,
			cfg: cfg(config.ModeProgress, func(c *config.Config) {
				c.Steps, c.StepDuration, c.Match, c.MirrorPercent = []int{20, 100}, time.Minute, india, 50
			}),
			want: []string{"1. mirror 50% of the requests to the canary, held 1m0s and judged", "2. A/B: requests matching MESHROLL_MATCH to the canary, held 1m0s and judged",
				"3. canary 20%, A/B route kept, held 1m0s and judged", "4. canary 100%"}},
		{name: "progress to 100 alone: A/B then promote", judged: true,
			cfg:  cfg(config.ModeProgress, func(c *config.Config) { c.Steps, c.StepDuration, c.Match = []int{100}, time.Minute, india }),
			want: []string{"1. A/B: requests matching MESHROLL_MATCH to the canary, held 1m0s and judged", "2. canary 100%"}},
		{name: "phase keeps the shapes", cfg: cfg(config.ModePhase, func(c *config.Config) { c.Weight, c.Match, c.MirrorPercent = 20, india, 10 }),
			want: []string{"1. canary 20%, A/B route kept"}},
		{name: "rollback clears them", cfg: cfg(config.ModeRollback, func(c *config.Config) { c.Match, c.MirrorPercent = india, 10 }),
			want: []string{"1. canary 0%"}},
		{name: "promote clears them", cfg: cfg(config.ModePromote, func(c *config.Config) { c.Match, c.MirrorPercent = india, 10 }),
			want: []string{"1. canary 100%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			plan := NewPlan(tt.cfg, tt.judged)
			var got []string
			for _, s := range plan {
				got = append(got, Plan{s}.Describe()[2:]) // without the indent
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			last := plan[len(plan)-1].Desired
			if tt.cfg.Mode != config.ModePhase && (last.CanaryWeight == 100 || last.CanaryWeight == 0) && (last.AB || last.MirrorPercent > 0) {
				t.Errorf("the last stage of %s keeps an A/B route or mirror: %+v", tt.cfg.Mode, last)
			}
		})
	}
}
