package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The parsers below turn one variable's text into its typed value. raw is blank only for a
// variable without a default; then, and when raw is invalid (a problem recorded in v), they
// return fallback, so that validation goes on with a value later checks can compare against.

// duration parses a Go duration. zeroOK says whether 0 is a meaningful value; negative
// durations never are.
func duration(v *validator, name, raw string, fallback time.Duration, zeroOK bool, fix string) time.Duration {
	value := strings.TrimSpace(raw)
	if value == "" {
		return fallback
	}
	d, err := time.ParseDuration(value)
	switch {
	case err != nil:
		v.invalid(name, value, "not a Go duration (a number with a unit: s, m or h); %s", fix)
	case d < 0:
		v.invalid(name, value, "must not be negative; %s", fix)
	case d == 0 && !zeroOK:
		v.invalid(name, value, "must be greater than 0; %s", fix)
	default:
		return d
	}
	return fallback
}

// number parses a decimal number in [lo, hi].
func number(v *validator, name, raw string, fallback, lo, hi float64, want string) float64 {
	value := strings.TrimSpace(raw)
	if value == "" {
		return fallback
	}
	f, err := strconv.ParseFloat(value, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < lo || f > hi {
		v.invalid(name, value, "must be %s", want)
		return fallback
	}
	return f
}

// headers parses a variable of HTTP headers (MESHROLL_PROMETHEUS_HEADERS,
// MESHROLL_LOAD_HEADERS): one "Name: value" per line; example is such a line for the
// messages. Values are secret (a tenant token, say) and never echoed.
func headers(v *validator, variable, raw, example string) map[string]string {
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	out := map[string]string{}
	for i, line := range strings.Split(raw, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			v.add(fmt.Sprintf("%s: line %d is not \"Name: value\"; write one header per line, e.g. %s", variable, i+1, example))
			continue
		}
		value = strings.TrimSpace(value)
		switch {
		case !headerName(name):
			v.add(fmt.Sprintf("%s: line %d: %q is not a valid HTTP header name; use letters, digits and '-', e.g. %s", variable, i+1, name, example))
		case strings.ContainsAny(value, "\r\x00"):
			v.add(fmt.Sprintf("%s: line %d: the value of %s holds a carriage return or NUL; remove it", variable, i+1, name))
		}
		out[name] = value // even when invalid: Reporting takes the values as secrets
	}
	return out
}

// headerName reports whether name is an HTTP field name: a token (RFC 9110).
func headerName(name string) bool {
	for _, r := range name {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return name != ""
}

// parseWeight accepts a plain decimal integer from 0 to 100 (no sign, so "-0"
// and "+5" are rejected as surprising spellings).
func parseWeight(s string) (int, bool) {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 100 {
		return 0, false
	}
	return n, true
}

// parseSteps parses comma-separated weights. It returns the steps, or a
// description of everything wrong with them.
func parseSteps(s string) ([]int, string) {
	items := strings.Split(s, ",")
	steps := make([]int, 0, len(items))
	var wrong []string
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			wrong = append(wrong, fmt.Sprintf("item %d is empty", i+1))
			continue
		}
		w, ok := parseWeight(item)
		if !ok {
			wrong = append(wrong, fmt.Sprintf("item %d (%s) is not an integer from 0 to 100", i+1, show(item)))
			continue
		}
		steps = append(steps, w)
	}
	// Order is only meaningful once every item is a weight.
	if len(wrong) == 0 {
		for i := 1; i < len(steps); i++ {
			switch prev, cur := steps[i-1], steps[i]; {
			case cur == prev:
				wrong = append(wrong, fmt.Sprintf("%d is repeated (items %d and %d)", cur, i, i+1))
			case cur < prev:
				wrong = append(wrong, fmt.Sprintf("%d comes after %d (items %d and %d)", cur, prev, i, i+1))
			}
		}
	}
	if len(steps) == 0 && len(wrong) == 0 {
		wrong = append(wrong, "no steps")
	}
	if len(wrong) > 0 {
		return nil, strings.Join(wrong, ", ")
	}
	return steps, ""
}
