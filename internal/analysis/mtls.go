package analysis

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// mtlsThreshold is how the mtls check's threshold reads in a window's table.
const mtlsThreshold = "100% mutual TLS"

// plaintextMeans says what a request without mutual TLS at the canary's proxy tells.
const plaintextMeans = "plaintext traffic reached the canary: its PeerAuthentication is not STRICT, " +
	"and a client outside the mesh (or with mutual TLS disabled) called it"

// judgeMTLS judges the mtls check. notMTLS and total are the canary's requests that came
// without mutual TLS and all its requests in the window, both as its own proxy reported them
// (reporter="destination"); stableNot and stableTotal are the same for stable, reported beside
// the canary's and never judged. The value shown is the share of requests that came with
// mutual TLS, in percent.
//
// One request without mutual TLS fails the window, however few requests the canary served:
// it is a request counted, not an estimate. A pass needs MinRequests requests, as the other
// built-ins do: no request, or too few, is no-data, never a pass.
func (a *Analyzer) judgeMTLS(notMTLS, total, stableNot, stableTotal answer) Result {
	s := a.settings
	window := humanDuration(s.Interval)
	r := Result{Check: CheckMTLS, Threshold: mtlsThreshold}
	var notes []string

	bad, badErr := requestCount(notMTLS)
	all, allErr := requestCount(total)
	// Both queries are evaluated at the window's instant, but one after the other: a scrape
	// stored in between can show the first one a sample the second did not see. All the
	// requests are never fewer than some of them.
	all = max(all, bad)
	switch {
	case badErr != nil:
		r.Verdict, r.Message = VerdictError, badErr.Error()
	case bad > 0 && allErr != nil:
		r.Verdict = VerdictFail
		r.Message = fmt.Sprintf("%s canary requests in the last %s were not mutual TLS: %s", num(bad), window, plaintextMeans)
		notes = append(notes, "the count of all its requests is unavailable: "+allErr.Error())
	case bad > 0:
		r.Canary = mtlsShare(bad, all)
		r.Verdict = VerdictFail
		r.Message = fmt.Sprintf("%s of %s canary requests in the last %s (%s%%) were not mutual TLS: %s",
			num(bad), num(all), window, num(100*bad/all), plaintextMeans)
	case allErr != nil:
		r.Verdict, r.Message = VerdictError, allErr.Error()
	case all == 0:
		r.Verdict = VerdictNoData
		r.Message = fmt.Sprintf("no requests recorded by the canary's proxy (reporter=%q) in the last %s, so whether they came with mutual TLS is unknown", serverReporters(s.Reporter), window)
	case all < s.MinRequests:
		r.Canary = mtlsShare(bad, all) // for the record
		r.Verdict = VerdictNoData
		r.Message = fmt.Sprintf("the canary's proxy recorded %s requests in the last %s, fewer than the %s needed to judge a window", num(all), window, num(s.MinRequests))
	default:
		r.Canary = mtlsShare(bad, all)
		r.Verdict = VerdictPass
	}

	stableBad, err := requestCount(stableNot)
	stableAll, stableAllErr := requestCount(stableTotal)
	if err = errors.Join(err, stableAllErr); err != nil {
		notes = append(notes, "stable value unavailable: "+err.Error())
	} else if stableAll = max(stableAll, stableBad); stableAll > 0 {
		r.Stable = mtlsShare(stableBad, stableAll)
	}

	r.Message = strings.Join(append([]string{r.Message}, notes...), "; ")
	r.Message = redact(strings.TrimPrefix(r.Message, "; "), a.secrets)
	return r
}

// requestCount reads an answer as whole requests: increase() extrapolates to the window's
// edges, so a count comes back as, say, 79.5. No series at all is 0 requests; any other
// problem is returned.
func requestCount(a answer) (float64, error) {
	switch {
	case errors.Is(a.err, ErrNoData):
		return 0, nil
	case a.err != nil:
		return 0, a.err
	}
	// A counter that grew by n reads at least n (see notMTLSQuery), so rounding never turns a
	// request into none.
	return max(math.Round(a.value), 0), nil
}

// mtlsShare is the share of all requests that came with mutual TLS, in percent: exactly 100
// when bad is 0 (all·100/all is exact for whole numbers of requests).
func mtlsShare(bad, all float64) *float64 {
	v := 100 * (all - bad) / all
	return &v
}
