package analysis

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Verdict is the outcome of one check in one window.
type Verdict string

// The verdicts. Only pass and fail judge the canary; no-data and error mean
// the window could not be judged on that check.
const (
	VerdictPass   Verdict = "pass"
	VerdictFail   Verdict = "fail"
	VerdictNoData Verdict = "no-data"
	VerdictError  Verdict = "error"
)

// Result is one check in one window.
type Result struct {
	// Check is "request-volume", "success-rate", "latency-p99", "mtls" or a
	// custom check's name.
	Check string `json:"check"`
	// Canary is the canary's value, nil when its query gave no value. With
	// too few requests the built-ins keep the value they got, for the
	// record, but their verdict is no-data.
	Canary *float64 `json:"canary"`
	// Stable is the stable version's value for the built-ins, reported side
	// by side and never judged; nil when it gave no value, and always nil for
	// custom checks.
	Stable *float64 `json:"stable"`
	// Threshold is for people: "≥ 99%", "≤ 500 ms", "≥ 20 requests",
	// "between 0 and 5".
	Threshold string  `json:"threshold"`
	Verdict   Verdict `json:"verdict"`
	// Message says why for fail, no-data and error (naming the query on
	// errors); on a pass it is empty unless the stable side had a problem.
	Message string `json:"message,omitempty"`
}

// Window is the result of every check at one instant.
type Window struct {
	At      time.Time `json:"at"`
	Results []Result  `json:"results"`
	// Counts are what both workloads served in the window, exactly (nil when the counters
	// could not be read); Comparisons are the sequential tests of canary against stable after
	// it, over the run so far (internal/judge decides; the rollout fills them in).
	Counts      *Counts      `json:"counts,omitempty"`
	Comparisons []Comparison `json:"comparisons,omitempty"`
}

// Comparison is where one sequential test of canary against stable stands: its totals over
// the run so far, and the evidence.
type Comparison struct {
	// Name is what is compared: "5xx", or "slower than 250 ms".
	Name           string `json:"name"`
	CanaryRequests int64  `json:"canaryRequests"`
	CanaryBad      int64  `json:"canaryBad"`
	StableRequests int64  `json:"stableRequests"`
	StableBad      int64  `json:"stableBad"`
	// Confidence that the canary is worse, from 0 to 1; Worse once it reaches the run's
	// confidence (MESHROLL_CONFIDENCE, split across the comparisons).
	Confidence float64 `json:"confidence"`
	Worse      bool    `json:"worse"`
	// CloseEnough says the canary is shown within the margin of stable (early completion).
	CloseEnough bool `json:"closeEnough,omitempty"`
	// Evidence says it in words: "5xx 0.9 % vs 0.4 % over 1,840 canary requests: worse with
	// 99.2 % confidence".
	Evidence string `json:"evidence"`
}

// Judged reports whether the window can decide anything: every result is a
// pass or a fail, so the canary had enough requests and every query had a
// value.
func (w Window) Judged() bool {
	if len(w.Results) == 0 {
		return false
	}
	for _, r := range w.Results {
		if r.Verdict != VerdictPass && r.Verdict != VerdictFail {
			return false
		}
	}
	return true
}

// Failed returns the results that failed their threshold.
func (w Window) Failed() []Result { return w.with(VerdictFail) }

// Errored returns the results whose query failed.
func (w Window) Errored() []Result { return w.with(VerdictError) }

func (w Window) with(v Verdict) []Result {
	var out []Result
	for _, r := range w.Results {
		if r.Verdict == v {
			out = append(out, r)
		}
	}
	return out
}

// answer is what one query gave: a value, or an error (wrapping ErrNoData
// when there was simply nothing to judge).
type answer struct {
	value float64
	err   error
}

func (a answer) ptr() *float64 {
	if a.err != nil {
		return nil
	}
	v := a.value
	return &v
}

// judge turns the answers of one window into results. answers holds, per
// check, the canary's answer, (for built-ins) the stable's and (for mtls) the
// counts of all their requests.
func (a *Analyzer) judge(canary, stable, canaryTotal, stableTotal []answer) []Result {
	s := a.settings
	window := humanDuration(s.Interval)

	// increase() extrapolates to the window's edges, so a count of requests comes back as,
	// say, 79.5. Requests are whole: the window is judged, shown and recorded on the count
	// rounded to the nearest request.
	for i, c := range a.checks {
		if c.kind == kindVolume {
			canary[i].value, stable[i].value = math.Round(canary[i].value), math.Round(stable[i].value)
		}
	}

	// The request volume decides whether the other built-ins can be judged:
	// a success rate over three requests says nothing.
	volume := canary[0]
	var tooFew string
	switch {
	case errors.Is(volume.err, ErrNoData):
		tooFew = fmt.Sprintf("no requests recorded for the canary in the last %s; at least %s are needed to judge a window", window, num(s.MinRequests))
	case volume.err != nil:
		tooFew = "the canary's request volume is unknown (its query failed), so this window cannot be judged"
	case volume.value < s.MinRequests:
		tooFew = fmt.Sprintf("the canary served %s requests in the last %s, fewer than the %s needed to judge a window", num(volume.value), window, num(s.MinRequests))
	}

	results := make([]Result, len(a.checks))
	for i, c := range a.checks {
		if c.kind == kindMTLS {
			results[i] = a.judgeMTLS(canary[i], canaryTotal[i], stable[i], stableTotal[i])
			continue
		}
		r := Result{Check: c.name, Canary: canary[i].ptr()}
		var note string
		if c.kind != kindCustom {
			r.Stable = stable[i].ptr()
			if err := stable[i].err; err != nil && !errors.Is(err, ErrNoData) {
				note = "stable value unavailable: " + err.Error()
			}
		}
		var threshold func(v float64) (bool, string)
		switch c.kind {
		case kindVolume:
			r.Threshold = "≥ " + num(s.MinRequests) + " requests"
		case kindSuccessRate:
			r.Threshold = "≥ " + num(s.MinSuccessRate) + "%"
			threshold = func(v float64) (bool, string) {
				return v >= s.MinSuccessRate, fmt.Sprintf("canary success rate %s%% is below %s%%", num(v), num(s.MinSuccessRate))
			}
		case kindLatency:
			r.Threshold = "≤ " + num(s.MaxLatencyP99) + " ms"
			threshold = func(v float64) (bool, string) {
				return v <= s.MaxLatencyP99, fmt.Sprintf("canary p99 latency %s ms is above %s ms", num(v), num(s.MaxLatencyP99))
			}
		case kindCustom:
			r.Threshold = bounds(c.min, c.max)
			threshold = func(v float64) (bool, string) {
				if c.min != nil && v < *c.min {
					return false, fmt.Sprintf("canary value %s is below the minimum %s", num(v), num(*c.min))
				}
				if c.max != nil && v > *c.max {
					return false, fmt.Sprintf("canary value %s is above the maximum %s", num(v), num(*c.max))
				}
				return true, ""
			}
		}

		err := canary[i].err
		switch {
		case err != nil && !errors.Is(err, ErrNoData):
			r.Verdict, r.Message = VerdictError, err.Error()
		case c.kind == kindVolume && tooFew != "":
			r.Verdict, r.Message = VerdictNoData, tooFew
		case c.kind == kindVolume:
			r.Verdict = VerdictPass
		case c.kind != kindCustom && tooFew != "":
			r.Verdict, r.Message = VerdictNoData, tooFew
		case err != nil:
			r.Verdict, r.Message = VerdictNoData, "no data for the canary: "+err.Error()
		default:
			ok, why := threshold(canary[i].value)
			if ok {
				r.Verdict = VerdictPass
			} else {
				r.Verdict, r.Message = VerdictFail, why
			}
		}
		if note != "" {
			r.Message = strings.TrimPrefix(r.Message+"; "+note, "; ")
		}
		r.Message = redact(r.Message, a.secrets)
		results[i] = r
	}
	return results
}

// bounds writes a custom check's bounds for people.
func bounds(lo, hi *float64) string {
	switch {
	case lo != nil && hi != nil:
		return "between " + num(*lo) + " and " + num(*hi)
	case lo != nil:
		return "≥ " + num(*lo)
	case hi != nil:
		return "≤ " + num(*hi)
	}
	return ""
}

// num writes a value with up to six significant digits and no exponent for
// the sizes a window sees (99.95, 812.345, 120000).
func num(v float64) string {
	if math.Abs(v) >= 1e6 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// humanDuration writes 5m rather than 5m0s.
func humanDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Format writes a value as the reports show it: compact digits, or "—" for no value.
func Format(v *float64) string {
	if v == nil {
		return "—"
	}
	return num(*v)
}
