package app

import (
	"strings"
	"testing"
)

// The sequential test on a real Prometheus fed by meshsim, whose errors are random per
// request: identical versions that both fail 1.5 % of their requests are promoted with no
// threshold set (the former 99 % success-rate default rolled most of them back), and a
// canary failing six times as often as stable is rolled back with the evidence in the reason.
func TestJudgeAgainstStable(t *testing.T) {
	t.Parallel()
	t.Run("identical versions at 1.5 % 5xx", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, rigOptions{rps: 200})
		r.mesh.SetBehaviour("v1", 0.015, 0)
		r.mesh.SetBehaviour("v2", 0.015, 0)
		got := r.start(t).wait(t)
		got.expect(t, 0, "promoted")
		r.expectWeights(t, "v1 0, v2 100")
		got.expectOutput(t, "5xx ", "no evidence yet that the canary is worse")
	})
	t.Run("a canary at 6× the stable error rate", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, rigOptions{rps: 300})
		r.mesh.SetBehaviour("v1", 0.01, 0)
		r.mesh.SetBehaviour("v2", 0.06, 0)
		got := r.start(t).wait(t)
		got.expect(t, 3, "canary-failed")
		r.expectWeights(t, "v1 100, v2 0")
		got.expectOutput(t, "the canary is worse than stable: 5xx ", "canary requests: worse with ")
		if strings.Contains(got.stdout+got.stderr, "check success-rate") {
			t.Errorf("a threshold judged the canary, but none was set:\n%s", got.stdout)
		}
	})
}
