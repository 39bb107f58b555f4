package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshroll/meshroll/internal/rollout"
)

// maxWebhookRows bounds the webhook table of the summary; every call is in the result file.
const maxWebhookRows = 20

// writeWarnings writes what the preflight found worth saying that did not stop the run.
func writeWarnings(b *strings.Builder, res rollout.Result, cell func(string) string) {
	if len(res.Warnings) == 0 {
		return
	}
	b.WriteString("> [!WARNING]\n")
	for _, w := range res.Warnings {
		fmt.Fprintf(b, "> - %s\n", cell(w))
	}
	b.WriteString("\n")
}

// writeWebhooks writes the run's webhook calls as a table: when, which, what it answered.
// The rollout webhooks are checks of the analysis windows and show there.
func writeWebhooks(b *strings.Builder, res rollout.Result, cell func(string) string) {
	if len(res.Webhooks) == 0 {
		return
	}
	b.WriteString("### Webhooks\n\n| at | webhook | type | answer | latency |\n|---|---|---|---|---|\n")
	for i, c := range res.Webhooks {
		if i == maxWebhookRows {
			fmt.Fprintf(b, "\n_%d more calls are in %s._\n", len(res.Webhooks)-i, ResultFile)
			break
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", offset(res, c.At), cell(c.Name), c.Type, cell(answer(c)), latency(c))
	}
	b.WriteString("\n")
}

// answer says what a webhook call got: "✅ 200", "❌ 503: not yet", "❌ no answer within 10s";
// at a manual gate, after how many polls.
func answer(c rollout.HookCall) string {
	var s string
	switch {
	case c.OK:
		s = fmt.Sprintf("✅ %d", c.Status)
	case c.Error != "":
		s = "❌ " + c.Error
	default:
		s = fmt.Sprintf("❌ %d", c.Status)
	}
	if c.Polls > 1 || c.Polls == 1 && !c.OK {
		s += fmt.Sprintf(" (poll %d)", c.Polls)
	}
	return s
}

func latency(c rollout.HookCall) string {
	if c.Status == 0 {
		return "—"
	}
	return c.Latency.Round(time.Millisecond).String()
}

// writeLoad writes what the built-in load generator saw of each held step.
func writeLoad(b *strings.Builder, res rollout.Result, cell func(string) string) {
	var rows []string
	for _, s := range res.Steps {
		if s.Load != nil {
			rows = append(rows, fmt.Sprintf("| %s | %s |", stepLabel(s), cell(s.Load.Summary)))
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("### Load (client side)\n\n| step | requests sent by meshroll |\n|---|---|\n")
	b.WriteString(strings.Join(rows, "\n"))
	b.WriteString("\n\n_Judging stays on the mesh's metrics; these are the load generator's own figures._\n\n")
}
