package config

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	networking "istio.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// shapes checks the traffic shapes besides weights: the A/B route's conditions
// (MESHROLL_MATCH) and the mirror (MESHROLL_MIRROR_PERCENT). Both shape what phase and
// progress do; promote and rollback remove them whether or not they are given.
func (in input) shapes(v *validator, cfg *Config) {
	if text := strings.TrimSpace(in.Match); text != "" {
		match, problems := parseMatch(text)
		for _, p := range problems {
			v.add("MESHROLL_MATCH: " + p)
		}
		cfg.Match = match
	}
	if text := strings.TrimSpace(in.MirrorPercent); text != "" {
		p, err := strconv.ParseFloat(text, 64)
		if err != nil || !(p > 0 && p <= 100) {
			v.invalid("MESHROLL_MIRROR_PERCENT", text, "must be a number above 0 and at most 100, the share of requests mirrored to the canary, e.g. 20; or leave it empty for no mirror stage")
		}
		cfg.MirrorPercent = p
	}
}

// parseMatch reads MESHROLL_MATCH: Istio HTTPMatchRequests, a YAML or JSON list (or one
// object), any of which selects a request for the canary. Each is decoded strictly as Istio's
// HTTPMatchRequest, so that a misspelt field is named rather than dropped, and returned as
// JSON objects in the field names the VirtualService stores.
func parseMatch(text string) ([]map[string]any, []string) {
	data, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return nil, []string{"not YAML or JSON: " + oneLine(err.Error()) + `; write a list of Istio match conditions, e.g. [{headers: {region: {exact: india}}}]`}
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(data, &entries); err != nil {
		var one json.RawMessage
		if json.Unmarshal(data, &one) != nil || !strings.HasPrefix(strings.TrimSpace(string(one)), "{") {
			return nil, []string{`must be a list of Istio match conditions (or one), e.g. [{headers: {region: {exact: india}}}]`}
		}
		entries = []json.RawMessage{one}
	}
	if len(entries) == 0 {
		return nil, []string{`the list is empty; give at least one match condition, or leave MESHROLL_MATCH empty for no A/B stage`}
	}
	var out []map[string]any
	var problems []string
	for i, raw := range entries {
		m, err := matchEntry(raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("entry %d: %s", i+1, err))
			continue
		}
		out = append(out, m)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return out, nil
}

var protoPrefix = regexp.MustCompile(`^proto:[\s\x{a0}]*(\(line \d+:\d+\):[\s\x{a0}]*)?`)

// matchEntry decodes one HTTPMatchRequest strictly and checks what Istio would reject later.
func matchEntry(raw json.RawMessage) (map[string]any, error) {
	var m networking.HTTPMatchRequest
	if err := (protojson.UnmarshalOptions{}).Unmarshal(raw, &m); err != nil {
		// protobuf's errors start "proto:" and a position in the JSON made from the user's
		// YAML, which would only mislead.
		msg := protoPrefix.ReplaceAllString(oneLine(err.Error()), "")
		return nil, fmt.Errorf("not an Istio HTTPMatchRequest: %s; see the fields of HTTPMatchRequest in Istio's VirtualService reference", msg)
	}
	var errs []string
	check := func(field string, s *networking.StringMatch) {
		if s == nil {
			return
		}
		if s.MatchType == nil {
			errs = append(errs, field+" needs one of exact, prefix or regex")
		}
		if r, ok := s.MatchType.(*networking.StringMatch_Regex); ok {
			if _, err := regexp.Compile(r.Regex); err != nil {
				errs = append(errs, fmt.Sprintf("%s regex %q is not RE2: %v", field, r.Regex, err))
			}
		}
	}
	check("uri", m.Uri)
	check("scheme", m.Scheme)
	check("method", m.Method)
	check("authority", m.Authority)
	for k, s := range m.Headers {
		check("headers."+k, s)
	}
	for k, s := range m.QueryParams {
		check("queryParams."+k, s)
	}
	for k, s := range m.WithoutHeaders {
		check("withoutHeaders."+k, s)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	data, err := protojson.Marshal(&m)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	delete(out, "name")
	if len(out) == 0 {
		return nil, fmt.Errorf("no condition: it would send every request of the route to the canary; give headers, uri, queryParams..., or use MESHROLL_STEPS for a weighted split")
	}
	return out, nil
}
