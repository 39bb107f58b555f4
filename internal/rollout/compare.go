package rollout

import (
	"fmt"
	"math"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/judge"
)

// comparisons are the run's sequential tests of the canary against stable (internal/judge):
// its 5xx, and its requests slower than a boundary near stable's p99. Their evidence builds
// up over the whole run, across steps whose weights differ; a test that finds the canary
// worse rolls it back at once.
type comparisons struct {
	errors, slow *judge.Test
	// boundary is the latency boundary (ms) of the step in progress, chosen at its start;
	// 0 when stable's histogram had nothing to choose from.
	boundary float64
	early    bool // MESHROLL_MIN_STEP_DURATION: a step may end once the canary is close enough
}

func newComparisons(a config.Analysis) *comparisons {
	alpha := 1 - a.Confidence/100
	each := judge.Split(alpha, 2)
	c := &comparisons{errors: judge.NewTest(each), slow: judge.NewTest(each), early: a.MinStepDuration > 0}
	if c.early {
		// Early completion needs every comparison close enough, so each runs at the full α.
		m := judge.Margin{Factor: a.MarginFactor, Floor: a.MarginPoints / 100}
		c.errors.WithMargin(m, alpha)
		c.slow.WithMargin(m, alpha)
	}
	return c
}

// chooseBoundary takes, at a step's start, the bucket boundary nearest stable's p99 in what
// it served lately.
func (c *comparisons) chooseBoundary(stable analysis.Tally) {
	les := stable.Boundaries()
	cumulative := make([]float64, len(les))
	for i, le := range les {
		cumulative[i] = float64(stable.Within[le])
	}
	if b, ok := judge.Boundary(les, cumulative, 0.99); ok {
		c.boundary = b
	}
}

// observe adds a window's counts and returns where every comparison stands; the error is
// the canary found worse.
func (c *comparisons) observe(n analysis.Counts) ([]analysis.Comparison, error) {
	c.errors.Observe(judge.Counts{CanaryRequests: n.Canary.Requests, StableRequests: n.Stable.Requests, CanaryBad: n.Canary.Errors, StableBad: n.Stable.Errors})
	out := []analysis.Comparison{comparison(c.errors, "5xx")}
	if c.boundary > 0 {
		inf := math.Inf(1)
		c.slow.Observe(judge.Counts{CanaryRequests: n.Canary.Within[inf], StableRequests: n.Stable.Within[inf],
			CanaryBad: n.Canary.Slower(c.boundary), StableBad: n.Stable.Slower(c.boundary)})
		out = append(out, comparison(c.slow, fmt.Sprintf("slower than %g ms", c.boundary)))
	}
	for _, cmp := range out {
		if cmp.Worse {
			return out, &canaryWorse{cmp}
		}
	}
	return out, nil
}

// closeEnough says whether every comparison shows the canary within the margin of stable.
func (c *comparisons) closeEnough() bool {
	return c.early && c.errors.CloseEnough() && (c.slow.Windows() == 0 || c.slow.CloseEnough())
}

func comparison(t *judge.Test, name string) analysis.Comparison {
	tot := t.Totals()
	cmp := analysis.Comparison{
		Name: name, CanaryRequests: tot.CanaryRequests, CanaryBad: tot.CanaryBad, StableRequests: tot.StableRequests, StableBad: tot.StableBad,
		Confidence: t.Confidence(), Worse: t.Worse(), Evidence: t.Describe(name),
	}
	if _, ok := t.Margin(); ok {
		cmp.CloseEnough = t.CloseEnough()
	}
	return cmp
}

// canaryWorse ends a run whose canary a comparison found worse than stable.
type canaryWorse struct{ cmp analysis.Comparison }

func (e *canaryWorse) Error() string { return "the canary is worse than stable: " + e.cmp.Evidence }
