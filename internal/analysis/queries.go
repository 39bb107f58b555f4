package analysis

import (
	"fmt"
	"strings"

	"github.com/meshroll/meshroll/internal/config"
)

// checkKind tells how a check's value is judged.
type checkKind int

const (
	kindVolume checkKind = iota
	kindSuccessRate
	kindLatency
	kindCustom
)

// check is a check ready to run: its queries rendered for this rollout.
type check struct {
	name   string
	kind   checkKind
	canary string // query for the canary
	stable string // query for the stable version (built-ins only), reported beside the canary's
	min    *float64
	max    *float64
}

// labelEscaper writes a value as the inside of a PromQL double-quoted string.
// PromQL strings follow Go's escaping and end at an unescaped quote or a
// newline, so these three are all that can break out of one.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabelValue(v string) string { return labelEscaper.Replace(v) }

// selector is the label matcher of one workload's Istio metrics; the values
// are already escaped.
func selector(reporter, namespace, workload string) string {
	return fmt.Sprintf(`reporter="%s",destination_workload_namespace="%s",destination_workload="%s"`, reporter, namespace, workload)
}

// volumeQuery counts the requests the workload served in the window.
func volumeQuery(reporter, namespace, workload, window string) string {
	return fmt.Sprintf(`sum(increase(istio_requests_total{%s}[%s]))`, selector(reporter, namespace, workload), window)
}

// successRateQuery is the percentage of responses that were not 5xx. The
// numerator falls back to 0 so that a workload answering only 5xx reads 0%
// rather than no data; without any request the denominator is empty (no
// data) or 0 (NaN, no data), never a pass.
func successRateQuery(reporter, namespace, workload, window string) string {
	sel := selector(reporter, namespace, workload)
	return fmt.Sprintf(`100 * (sum(rate(istio_requests_total{%s,response_code!~"5.."}[%s])) or vector(0)) / sum(rate(istio_requests_total{%s}[%s]))`,
		sel, window, sel, window)
}

// latencyQuery is the 99th percentile of the request duration in milliseconds.
func latencyQuery(reporter, namespace, workload, window string) string {
	return fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{%s}[%s])))`,
		selector(reporter, namespace, workload), window)
}

// builtinChecks are the checks every window runs, request volume first: it
// decides whether the others can be judged. The success rate and the p99 are
// guardrails, run only when their threshold is set: the canary is compared
// with stable by the sequential test (internal/judge) on counts.
func builtinChecks(q labels, window string, a config.Analysis) []check {
	checks := []check{
		{name: CheckRequestVolume, kind: kindVolume,
			canary: volumeQuery(q.reporter, q.namespace, q.canary, window),
			stable: volumeQuery(q.reporter, q.namespace, q.stable, window)},
	}
	if a.MinSuccessRate > 0 {
		checks = append(checks, check{name: CheckSuccessRate, kind: kindSuccessRate,
			canary: successRateQuery(q.reporter, q.namespace, q.canary, window),
			stable: successRateQuery(q.reporter, q.namespace, q.stable, window)})
	}
	if a.MaxLatencyP99 > 0 {
		checks = append(checks, check{name: CheckLatencyP99, kind: kindLatency,
			canary: latencyQuery(q.reporter, q.namespace, q.canary, window),
			stable: latencyQuery(q.reporter, q.namespace, q.stable, window)})
	}
	return checks
}
