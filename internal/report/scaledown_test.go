package report

import (
	"strings"
	"testing"

	"github.com/meshroll/meshroll/internal/rollout"
)

// The summary says what the scale-down did, or why it did not.
func TestSummaryScaleDown(t *testing.T) {
	t.Parallel()
	for _, sd := range []rollout.ScaleDown{
		{Deployment: "shop/reviews-v1", From: 3, Scaled: true},
		{Deployment: "shop/reviews-v2", Why: "it still has traffic (route tester of VirtualService shop/reviews still sends it traffic)"},
	} {
		res := rollout.Result{Mode: "promote", Outcome: rollout.Promoted, Namespace: "shop", VirtualService: "reviews", ScaleDown: &sd}
		md := summaryMarkdown(res, redactor{})
		if want := "| scale-down | " + sd.String() + " |"; !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
	if md := summaryMarkdown(rollout.Result{Outcome: rollout.WeightSet}, redactor{}); strings.Contains(md, "scale-down") {
		t.Errorf("a run without scale-down mentions it:\n%s", md)
	}
}
