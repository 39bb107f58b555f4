package report

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Bounds that keep summary.md far below GitHub's 1 MiB job summary limit whatever the run:
// result.json keeps every window.
const (
	maxWindowsShown = 20      // analysis windows shown per step, the latest ones
	maxRowsShown    = 60      // rows (windows × checks) shown per step
	maxCell         = 300     // characters of a message in a table cell
	analysisBudget  = 300_000 // bytes of summary after which step tables are left out
)

// successRate is the built-in check the chart draws next to the canary weight.
const successRate = "success-rate"

// summaryMarkdown is summary.md (and GitHub's job summary): a headline, the key facts, the
// timeline, a chart, and each step's analysis windows. Text taken from the result is
// redacted before it is escaped for Markdown, so that escaping cannot hide a secret.
func summaryMarkdown(res rollout.Result, red redactor) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s meshroll: %s\n\n%s\n\n", marker(res.Outcome), res.Outcome, headline(res.Outcome))

	cell := func(s string) string { return mdCell(red.String(s)) }
	code := func(s string) string {
		if s == "" {
			return "—"
		}
		// No backslash escapes in a code span: only the cell's end must be escaped.
		s = strings.Join(strings.Fields(cleanText(red.String(s))), " ")
		return "`" + strings.NewReplacer("`", "'", "|", `\|`).Replace(s) + "`"
	}
	b.WriteString("| | |\n|---|---|\n")
	fact := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	kind, vs := res.Object()
	if vs != "" && res.Namespace != "" {
		vs = res.Namespace + "/" + vs
	}
	fact(kind, code(vs))
	fact(traffic.RouteWord(kind), code(res.Route))
	fact("stable → canary", code(res.StableName())+" → "+code(res.CanaryName()))
	now, planned := FinalWeights(res)
	switch {
	case planned != nil:
		fact("weights", cell(traffic.DescribeWeights(now))+" (unchanged: a dry run writes nothing)")
		fact("planned weights", cell(traffic.DescribeWeights(planned))+" (after the last step, not written)")
	case len(now) > 0:
		fact("final weights", cell(traffic.DescribeWeights(now)))
	}
	if asked := stepsAsked(res); asked > 0 && res.Outcome != rollout.DryRun {
		fact("steps completed", fmt.Sprintf("%d of %d", stepsCompleted(res), asked))
	}
	fact("duration", human(span(res.StartedAt, res.FinishedAt)))
	if res.ScaleDown != nil {
		fact("scale-down", cell(res.ScaleDown.String()))
	}
	if res.FailedCheck != "" {
		fact("failed check", code(oneLine(red, res.FailedCheck, maxFailedCheck)))
	}
	if r := cut(lines(red, res.Reason), maxReason); r != "" {
		// One problem per line: a table cell holds no line break, but HTML's.
		var rows []string
		for l := range strings.SplitSeq(r, "\n") {
			rows = append(rows, cell(l))
		}
		fact("reason", strings.Join(rows, "<br>"))
	}
	b.WriteString("\n")
	writeWarnings(&b, res, cell)

	if timedOnly(res) {
		head, rest, _ := strings.Cut(strings.NewReplacer("MESHROLL_PROMETHEUS_SERVICE", "`MESHROLL_PROMETHEUS_SERVICE`", "MESHROLL_PROMETHEUS_URL", "`MESHROLL_PROMETHEUS_URL`").Replace(noAnalysisNote), ": ")
		fmt.Fprintf(&b, "> [!WARNING]\n> **%s:** %s\n\n", head, rest)
	}
	if len(res.Steps) == 0 {
		writeWebhooks(&b, res, cell)
		return b.String()
	}

	if res.Outcome == rollout.DryRun {
		b.WriteString("### Timeline (planned)\n\n| step | at | planned canary | planned weights after | changed |")
	} else {
		b.WriteString("### Timeline\n\n| step | at | canary | weights after | changed |")
	}
	if res.Analysis {
		b.WriteString(" analysis |")
	}
	b.WriteString("\n|---|---|---|---|---|")
	if res.Analysis {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, s := range res.Steps {
		fmt.Fprintf(&b, "| %s | %s | %d%% | %s | %s |", stepLabel(s), offset(res, s.StartedAt), canaryAfter(s), cell(traffic.DescribeWeights(s.After)), changed(s))
		if res.Analysis {
			fmt.Fprintf(&b, " %s |", stepVerdict(s))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	writeWebhooks(&b, res, cell)
	writeLoad(&b, res, cell)
	if len(res.Steps) >= 2 {
		writeChart(&b, res)
	}

	if slices.ContainsFunc(res.Steps, func(s rollout.Step) bool { return len(s.Windows) > 0 }) {
		b.WriteString("### Analysis\n\n")
		for i, s := range res.Steps {
			if len(s.Windows) == 0 {
				continue
			}
			if b.Len() > analysisBudget {
				fmt.Fprintf(&b, "_The analysis of the remaining steps is left out to keep this summary short; every window is in %s._\n", ResultFile)
				break
			}
			writeWindows(&b, res, res.Steps[i], cell)
		}
	}
	return b.String()
}

// marker starts the headline: a sign a reader sees at a glance, next to the outcome's name.
func marker(o rollout.Outcome) string {
	switch o {
	case rollout.CanaryFailed, rollout.Failed, rollout.Invalid:
		return "❌"
	case rollout.Inconclusive, rollout.Cancelled, rollout.Interrupted:
		return "⚠️"
	}
	return "✅"
}

// canaryAfter is the canary weight a step left (or planned): its written weights when
// known, else the weight it asked for.
func canaryAfter(s rollout.Step) int {
	if w, ok := weightOf(s.After, traffic.RoleCanary); ok {
		return w
	}
	return s.CanaryWeight
}

func changed(s rollout.Step) string {
	switch {
	case s.Action == rollout.ActionPlan && s.Changed:
		return "would change"
	case s.Action == rollout.ActionPlan:
		return "no change"
	case s.Changed:
		return "yes"
	}
	return "no, already in place"
}

// stepVerdict sums up a step's analysis for the timeline: its last window decides.
func stepVerdict(s rollout.Step) string {
	if len(s.Windows) == 0 {
		return "—"
	}
	last := s.Windows[len(s.Windows)-1]
	for _, c := range last.Comparisons {
		if c.Worse {
			return "❌ worse: " + mdCell(c.Name)
		}
	}
	switch {
	case len(last.Failed()) > 0:
		return "❌ fail: " + checkNames(last.Failed())
	case len(last.Errored()) > 0:
		return "⚠️ error: " + checkNames(last.Errored())
	case !passed(last):
		return "no data"
	}
	tolerated := 0
	for _, w := range s.Windows {
		if !passed(w) {
			tolerated++
		}
	}
	if tolerated > 0 {
		return fmt.Sprintf("✅ pass (%d windows, %d not passed)", len(s.Windows), tolerated)
	}
	return fmt.Sprintf("✅ pass (%d windows)", len(s.Windows))
}

func checkNames(rs []analysis.Result) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = mdCell(r.Check)
	}
	return strings.Join(names, ", ")
}

// writeChart draws the canary weight at each step and, when analysis measured it, the
// lowest canary success rate seen in each step's windows. Mermaid's xychart needs a value
// at every step, so a step without one (the rollback, a final step that is not held)
// repeats the one before it.
func writeChart(b *strings.Builder, res rollout.Result) {
	labels := make([]string, len(res.Steps))
	weights := make([]string, len(res.Steps))
	rates := make([]*float64, len(res.Steps))
	measured := 0
	for i, s := range res.Steps {
		labels[i] = fmt.Sprintf("%q", stepLabel(s))
		weights[i] = fmt.Sprint(canaryAfter(s))
		for _, w := range s.Windows {
			for _, r := range w.Results {
				if r.Check == successRate && r.Canary != nil && (rates[i] == nil || *r.Canary < *rates[i]) {
					v := *r.Canary
					rates[i] = &v
				}
			}
		}
		if rates[i] != nil {
			measured++
		}
	}
	title := "Canary weight"
	if res.Outcome == rollout.DryRun {
		title = "Planned canary weight"
	}
	b.WriteString("### " + title + "\n\n```mermaid\nxychart-beta\n")
	b.WriteString("    x-axis [" + strings.Join(labels, ", ") + "]\n")
	b.WriteString("    y-axis \"%\" 0 --> 100\n")
	b.WriteString("    line [" + strings.Join(weights, ", ") + "]\n")
	if measured > 0 {
		b.WriteString("    line [" + strings.Join(fillRates(rates), ", ") + "]\n")
	}
	b.WriteString("```\n\n")
	if measured > 0 {
		b.WriteString("Lines: the canary weight, and the lowest canary success rate (%) of each step's analysis windows (a step without windows repeats the previous value). The tables are the exact record.\n\n")
	}
}

// fillRates carries each measured rate forward (and the first one back) over the gaps.
func fillRates(rates []*float64) []string {
	out := make([]string, len(rates))
	var last *float64
	for i := range rates {
		if rates[i] != nil {
			last = rates[i]
		}
		if last == nil {
			continue
		}
		out[i] = analysis.Format(last)
	}
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] == "" {
			out[i] = out[i+1]
		}
	}
	return out
}

// writeWindows writes one step's latest windows as a table: one row per check.
func writeWindows(b *strings.Builder, res rollout.Result, s rollout.Step, cell func(string) string) {
	shown := s.Windows
	rows := 0
	for i := len(shown) - 1; i >= 0; i-- {
		if len(s.Windows)-i > maxWindowsShown || (rows > 0 && rows+len(s.Windows[i].Results) > maxRowsShown) {
			shown = s.Windows[i+1:]
			break
		}
		rows += len(s.Windows[i].Results) + len(s.Windows[i].Comparisons)
	}
	fmt.Fprintf(b, "#### %s, canary %d%%\n\n", stepTitleShort(s), s.CanaryWeight)
	if omitted := len(s.Windows) - len(shown); omitted > 0 {
		fmt.Fprintf(b, "_The latest %d of %d windows; %d earlier ones are in %s._\n\n", len(shown), len(s.Windows), omitted, ResultFile)
	}
	b.WriteString("| at | check | canary | stable | threshold | verdict |\n|---|---|---|---|---|---|\n")
	for _, w := range shown {
		for _, r := range w.Results {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", offset(res, w.At), cell(r.Check),
				analysis.Format(r.Canary), analysis.Format(r.Stable), cell(r.Threshold), cell(verdictText(r)))
		}
		for _, c := range w.Comparisons {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", offset(res, w.At), cell(c.Name+", run so far"),
				badShare(c.CanaryBad, c.CanaryRequests), badShare(c.StableBad, c.StableRequests), "canary no worse", cell(comparisonText(c)))
		}
	}
	b.WriteString("\n")
}

// badShare renders a comparison's bad events among requests: "0.92% (17 of 1840)".
func badShare(bad, requests int64) string {
	if requests == 0 {
		return "no requests"
	}
	return fmt.Sprintf("%s (%d of %d)", percent(float64(bad)/float64(requests)), bad, requests)
}

// percent renders a share with two decimals below 10%, one above, trailing zeros dropped.
func percent(share float64) string {
	decimals := 2
	if share >= 0.1 {
		decimals = 1
	}
	s := strconv.FormatFloat(100*share, 'f', decimals, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s + "%"
}

// comparisonText is where a sequential comparison stands, for the verdict cell.
func comparisonText(c analysis.Comparison) string {
	switch {
	case c.Worse:
		return "❌ worse (confidence " + percent(c.Confidence) + ")"
	case c.CloseEnough:
		return "✅ close enough to stable"
	}
	return "✅ not shown worse (confidence " + percent(c.Confidence) + ")"
}

func stepTitleShort(s rollout.Step) string {
	if s.Action == rollout.ActionRollback {
		return "Rollback"
	}
	return fmt.Sprintf("Step %d/%d", s.Index, s.Of)
}

// verdictText is a verdict and, when it has one, its message, cut to fit a cell.
func verdictText(r analysis.Result) string {
	text := string(r.Verdict)
	switch r.Verdict {
	case analysis.VerdictPass:
		text = "✅ pass"
	case analysis.VerdictFail:
		text = "❌ fail"
	case analysis.VerdictError:
		text = "⚠️ error"
	}
	if r.Message == "" {
		return text
	}
	msg := strings.Join(strings.Fields(r.Message), " ")
	if utf8.RuneCountInString(msg) > maxCell {
		msg = string([]rune(msg)[:maxCell-1]) + "…"
	}
	return text + ": " + msg
}

// mdCell makes text safe inside a Markdown table cell: one line, and no character that
// would end the cell, start HTML, a link or emphasis.
func mdCell(s string) string {
	s = strings.Join(strings.Fields(cleanText(s)), " ")
	return mdEscaper.Replace(s)
}

var mdEscaper = strings.NewReplacer(
	`\`, `\\`, "|", `\|`, "<", "&lt;", ">", "&gt;", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "`", "\\`",
)
