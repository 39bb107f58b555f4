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
	kindMTLS
	kindCustom
)

// check is a check ready to run: its queries rendered for this rollout.
type check struct {
	name   string
	kind   checkKind
	canary string // query for the canary
	stable string // query for the stable version (built-ins only), reported beside the canary's
	// canaryTotal and stableTotal count all the requests of which canary and stable count a
	// part, for a check judged on a share of two exact counts (mtls); "" for the others.
	canaryTotal, stableTotal string
	min                      *float64
	max                      *float64
}

// queries are the check's queries in the order a window sends them: canary, stable,
// canaryTotal, stableTotal; "" for one it does not have.
func (c check) queries() [4]string {
	return [4]string{c.canary, c.stable, c.canaryTotal, c.stableTotal}
}

// labelEscaper writes a value as the inside of a PromQL double-quoted string.
// PromQL strings follow Go's escaping and end at an unescaped quote or a
// newline, so these three are all that can break out of one.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabelValue(v string) string { return labelEscaper.Replace(v) }

// selector is the label matcher of one workload's Istio metrics; the values
// are already escaped. Several reporters ("destination|waypoint") are matched as
// the alternatives of a regular expression, which Prometheus anchors: each
// reports a request the others do not (a sidecar's, an ambient waypoint's).
func selector(reporter, namespace, workload string) string {
	op := "="
	if strings.Contains(reporter, "|") {
		op = "=~"
	}
	return fmt.Sprintf(`reporter%s"%s",destination_workload_namespace="%s",destination_workload="%s"`, op, reporter, namespace, workload)
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

// serverReporters are, of the reporters of MESHROLL_REPORTER, those whose requests carry the
// connection's security: only the server's side knows whether the connection came with mutual
// TLS (a sidecar's reporter destination, an ambient waypoint's reporter waypoint); the client's
// reports connection_security_policy="unknown". Without either, destination.
func serverReporters(reporter string) string {
	var out []string
	for _, r := range strings.Split(reporter, "|") {
		if r != "source" {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return "destination"
	}
	return strings.Join(out, "|")
}

// notMTLSQuery counts the requests the workload's own proxy received without mutual TLS
// (Istio writes connection_security_policy="none" for plaintext) in the window.
//
// A count of the requests that were not mutual TLS, judged against exactly 0, rather than a
// share of those that were, judged against exactly 100: with all traffic mutual TLS no series
// matches (the sum is empty and "or vector(0)" makes it 0) or the ones that match (plaintext
// from before the window) did not grow, and increase() of a counter that did not grow is 0,
// exactly. A counter that grew by n reads at least n, since increase() only ever extrapolates
// outwards to the window's edges, so one plaintext request never reads as 0. A share is 100
// only if two sums of floats come out bit for bit the same, which is harder to promise.
//
// What increase() cannot see: a series' first sample (the requests that created a plaintext
// series before its first scrape count once it grows again), and a rise between one window's
// last scrape and the next window's first (the series is flat in both). Plaintext traffic that
// goes on fails every window; a lone plaintext request may go unseen.
func notMTLSQuery(reporter, namespace, workload, window string) string {
	return fmt.Sprintf(`sum(increase(istio_requests_total{%s,connection_security_policy!="mutual_tls"}[%s])) or vector(0)`,
		selector(serverReporters(reporter), namespace, workload), window)
}

// builtinChecks are the checks every window runs, request volume first: it
// decides whether the others can be judged. The success rate and the p99 are
// guardrails, run only when their threshold is set: the canary is compared
// with stable by the sequential test (internal/judge) on counts. mtls runs when
// a.MTLS is set (MESHROLL_VERIFY_SECURITY), on the server side's requests
// (serverReporters) whatever else MESHROLL_REPORTER says.
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
	if a.MTLS {
		checks = append(checks, check{name: CheckMTLS, kind: kindMTLS,
			canary:      notMTLSQuery(q.reporter, q.namespace, q.canary, window),
			stable:      notMTLSQuery(q.reporter, q.namespace, q.stable, window),
			canaryTotal: volumeQuery(serverReporters(q.reporter), q.namespace, q.canary, window),
			stableTotal: volumeQuery(serverReporters(q.reporter), q.namespace, q.stable, window)})
	}
	return checks
}
