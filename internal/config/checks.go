package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Check is a custom check: one PromQL query for the canary whose single value
// must lie within [Min, Max] (each bound optional, at least one set).
//
// Query is a Go template limited to field placeholders (see queryTemplate), rendered once per
// run with the keys of QueryData and no others (a misspelt key is an error, not
// "<no value>"). The label values are escaped for a PromQL double-quoted string (backslash,
// double quote and newline), so they are meant to stand inside double quotes:
// destination_workload="{{.CanaryWorkload}}". A value then stays one string literal whatever
// it holds; outside quotes it is not safe.
//
// The query must return one series (aggregate with sum(...) or similar); an
// empty answer, NaN or ±Inf is "no-data", never a pass.
type Check struct {
	Name  string
	Query string
	Min   *float64
	Max   *float64
}

// Names of the built-in checks; a custom check may not take them.
const (
	CheckRequestVolume = "request-volume"
	CheckSuccessRate   = "success-rate"
	CheckLatencyP99    = "latency-p99"
	CheckMTLS          = "mtls" // with MESHROLL_VERIFY_SECURITY=true
)

var (
	checkName   = regexp.MustCompile(`^[a-z0-9-]+$`)
	checkFields = []string{"name", "query", "min", "max"}
	// sampleData renders each query once while loading, so that a missing key is caught
	// before anything runs.
	sampleData = QueryData{Namespace: "default", CanaryWorkload: "app-canary", StableWorkload: "app-stable", Reporter: "destination", Interval: "60s"}
)

// customChecks reads MESHROLL_CHECKS: a YAML or JSON list of {name, query, min, max}. Blank
// text means no custom checks. Every problem is recorded, naming the entry and the field.
func customChecks(v *validator, text string) []Check {
	checks, errs := parseChecks(text)
	for _, err := range errs {
		v.add("MESHROLL_CHECKS: " + oneLine(err.Error()))
	}
	if len(errs) > 0 || len(checks) == 0 {
		return nil
	}
	return checks
}

// parseChecks parses the list and validates every entry.
func parseChecks(text string) ([]Check, []error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	// YAML is a superset of JSON; the strict conversion rejects duplicate keys.
	raw, err := yaml.YAMLToJSONStrict([]byte(text))
	if err != nil {
		return nil, []error{fmt.Errorf("failed to parse the checks as YAML or JSON: %w", err)}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, []error{fmt.Errorf("failed to parse the checks as YAML or JSON: %w", err)}
	}
	if doc == nil {
		return nil, nil
	}
	list, ok := doc.([]any)
	if !ok {
		return nil, []error{errors.New("the checks must be a list of {name, query, min, max}, e.g. [{name: error-rate, query: 'sum(...)', max: 1}]")}
	}

	var errs []error
	checks := make([]Check, 0, len(list))
	names := map[string]int{}
	for i, item := range list {
		c, bad, fieldErrs := decodeCheck(i, item)
		errs = append(errs, fieldErrs...)
		if _, isMap := item.(map[string]any); isMap {
			errs = append(errs, validateCheck(i, c, names, bad)...)
		}
		checks = append(checks, c)
	}
	return checks, errs
}

// decodeCheck turns one list entry into a Check, naming every field of the
// wrong type (also returned in bad, so that validateCheck does not complain
// about them twice) and every unknown one.
func decodeCheck(i int, item any) (Check, map[string]bool, []error) {
	var c Check
	bad := map[string]bool{}
	fields, ok := item.(map[string]any)
	if !ok {
		return c, bad, []error{fmt.Errorf("check %d: must be a mapping with name, query and min and/or max", i+1)}
	}
	if name, ok := fields["name"].(string); ok {
		c.Name = name
	}
	where := entry(i, c.Name)
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		v := fields[k]
		switch k {
		case "name", "query":
			s, ok := v.(string)
			if !ok && v != nil {
				errs = append(errs, fmt.Errorf("%s: %s must be a string, not %s", where, k, describe(v)))
				bad[k] = true
			}
			if k == "query" {
				c.Query = s
			}
		case "min", "max":
			if v == nil {
				continue
			}
			n, ok := v.(json.Number)
			f, err := n.Float64()
			if !ok || err != nil {
				errs = append(errs, fmt.Errorf("%s: %s must be a number, not %s", where, k, describe(v)))
				bad[k] = true
				continue
			}
			if k == "min" {
				c.Min = &f
			} else {
				c.Max = &f
			}
		default:
			errs = append(errs, fmt.Errorf("%s: unknown field %q; the fields are %s", where, k, strings.Join(checkFields, ", ")))
		}
	}
	return c, bad, errs
}

// validateCheck checks one custom check and renders its query with sample values. names
// collects the names seen so far to catch duplicates; fields in bad were already reported as
// malformed.
func validateCheck(i int, c Check, names map[string]int, bad map[string]bool) []error {
	where := entry(i, c.Name)
	var errs []error
	switch {
	case bad["name"]:
	case c.Name == "":
		errs = append(errs, fmt.Errorf("%s: name is required", where))
	case !checkName.MatchString(c.Name):
		errs = append(errs, fmt.Errorf("%s: name %q may hold only lowercase letters, digits and '-'", where, c.Name))
	case c.Name == CheckRequestVolume || c.Name == CheckSuccessRate || c.Name == CheckLatencyP99 || c.Name == CheckMTLS:
		errs = append(errs, fmt.Errorf("%s: name is taken by a built-in check; choose another", where))
	default:
		if first, dup := names[c.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: name is already used by check %d; names must be unique", where, first+1))
		} else {
			names[c.Name] = i
		}
	}
	errs = append(errs, validateBounds(where, c, bad)...)
	if bad["query"] {
		return errs
	}
	if strings.TrimSpace(c.Query) == "" {
		return append(errs, fmt.Errorf("%s: query is required", where))
	}
	tmpl, err := parseQuery(c.Name, c.Query)
	if err != nil {
		return append(errs, fmt.Errorf("%s: query is not a valid template: %w", where, err))
	}
	rendered, err := tmpl.render(sampleData.placeholders())
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("%s: query cannot be rendered (the keys are .Namespace, .CanaryWorkload, .StableWorkload, .Reporter, .Interval): %w", where, err))
	case strings.TrimSpace(rendered) == "":
		errs = append(errs, fmt.Errorf("%s: query renders to nothing", where))
	}
	return errs
}

// validateBounds checks that a check can fail, and pass.
func validateBounds(where string, c Check, bad map[string]bool) []error {
	var errs []error
	for _, b := range []struct {
		field string
		v     *float64
	}{{"min", c.Min}, {"max", c.Max}} {
		if b.v != nil && (math.IsNaN(*b.v) || math.IsInf(*b.v, 0)) {
			errs = append(errs, fmt.Errorf("%s: %s must be a finite number", where, b.field))
		}
	}
	switch {
	case bad["min"] || bad["max"]:
	case c.Min == nil && c.Max == nil:
		errs = append(errs, fmt.Errorf("%s: set min, max or both; a check without a bound can never fail", where))
	case c.Min != nil && c.Max != nil && *c.Min > *c.Max:
		errs = append(errs, fmt.Errorf("%s: min %v is greater than max %v; no value could pass", where, *c.Min, *c.Max))
	}
	return errs
}

func entry(i int, name string) string {
	if name == "" || !checkName.MatchString(name) {
		return fmt.Sprintf("check %d", i+1)
	}
	return fmt.Sprintf("check %d (%s)", i+1, name)
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return fmt.Sprintf("%v", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%v", v)
}

// oneLine joins a message that spans lines (the YAML parser lists duplicate keys one per
// line), so that each problem stays one line of the report.
func oneLine(msg string) string {
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	head, rest := lines[0], slices.DeleteFunc(lines[1:], func(l string) bool { return l == "" })
	if len(rest) == 0 {
		return head
	}
	return head + " " + strings.Join(rest, "; ")
}
