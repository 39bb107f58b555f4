package judge

import (
	"math"
	"strconv"
	"strings"
)

// Describe says where the test stands in words a release manager reads, quoting the counts of
// the whole run so far, e.g.
//
//	5xx 0.9 % vs 0.4 % over 1,840 canary requests: worse with 99.2 % confidence
//	5xx 0.5 % vs 0.4 % over 1,840 canary requests: no evidence yet that the canary is worse (confidence 62 %)
//	5xx 0.4 % vs 0.4 % over 30,000 canary requests: within the margin (1.5× or +0.2 points) with 99.3 % confidence
//
// With a margin and neither verdict yet, the close-enough confidence follows the first
// sentence ("…; within the margin (1.5× or +0.2 points) with 97 % confidence so far").
// Confidences are rounded down, so the words never claim more than the test has shown.
func (t *Test) Describe(name string) string {
	c := t.totals
	if c.CanaryRequests == 0 {
		return name + ": no canary requests yet"
	}
	canary := percent(rate(c.CanaryBad, c.CanaryRequests))
	over := " over " + thousands(c.CanaryRequests) + " canary " + plural(c.CanaryRequests, "request", "requests")
	if c.StableRequests == 0 {
		return name + " " + canary + over + ": no stable requests to compare with yet"
	}
	head := name + " " + canary + " vs " + percent(rate(c.StableBad, c.StableRequests)) + over + ": "
	switch {
	case t.Worse():
		return head + "worse with " + confidenceWords(t.Confidence()) + " confidence"
	case t.CloseEnough():
		return head + "within the margin (" + t.close.margin.words() + ") with " +
			confidenceWords(t.CloseConfidence()) + " confidence"
	}
	out := head + "no evidence yet that the canary is worse (confidence " + confidenceWords(t.Confidence()) + ")"
	if t.close != nil {
		out += "; within the margin (" + t.close.margin.words() + ") with " +
			confidenceWords(t.CloseConfidence()) + " confidence so far"
	}
	return out
}

// words spells the margin: "1.5× or +0.2 points".
func (m Margin) words() string {
	var parts []string
	if m.Factor > 1 {
		parts = append(parts, trimmed(m.Factor, 2)+"×")
	}
	if m.Floor > 0 {
		parts = append(parts, "+"+trimmed(m.Floor*100, 3)+" points")
	}
	return strings.Join(parts, " or ")
}

func rate(bad, requests int64) float64 {
	if requests <= 0 {
		return 0
	}
	return float64(bad) / float64(requests)
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// percent writes a rate as a percentage with two significant digits: 0.9 %, 0.45 %, 12 %.
func percent(r float64) string {
	v := r * 100
	if v <= 0 || math.IsNaN(v) {
		return "0 %"
	}
	decimals := min(max(1-int(math.Floor(math.Log10(v))), 0), 4)
	return trimmed(v, decimals) + " %"
}

// confidenceWords writes a confidence rounded down: integer percents below 90 %, at most one
// decimal below 99.9 % (99.2 %), at most two above (99.97 %), and never 100 %.
func confidenceWords(c float64) string {
	v := c * 100
	decimals := 0
	switch {
	case v >= 99.9:
		decimals = 2
	case v >= 90:
		decimals = 1
	}
	scale := math.Pow(10, float64(decimals))
	// The tiny addition keeps 0.995 (99.49999… in binary) from rounding down to 99.4. An
	// e-value is never infinite, so 100 % is never true: 99.99 % is the most said.
	v = min(math.Floor(v*scale+1e-9)/scale, 99.99)
	return trimmed(v, decimals) + " %"
}

// trimmed writes v with at most decimals decimals and no trailing zeros.
func trimmed(v float64, decimals int) string {
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// thousands writes n with commas between groups of three digits: 1,840.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return b.String()
}
