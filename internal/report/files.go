package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/traffic"
)

// schemaVersion of result.json; raised only when a field changes meaning or goes away.
const schemaVersion = 1

// resultFile is result.json: the rollout.Result with its json tags, between a header and
// the figures the outputs carry.
type resultFile struct {
	SchemaVersion int    `json:"schemaVersion"`
	Version       string `json:"version"`
	rollout.Result
	// Planned is where a dry run's plan ends (its Final is what the route still holds).
	Planned         []traffic.Destination `json:"planned,omitempty"`
	DurationSeconds int64                 `json:"durationSeconds"`
	CanaryWeight    *int                  `json:"canaryWeight"` // null when the weights were never read
	StableWeight    *int                  `json:"stableWeight"`
	StepsCompleted  int                   `json:"stepsCompleted"`
}

// resultJSON encodes result.json, indented, and redacts it (escaped secrets included).
func resultJSON(res rollout.Result, version string, red redactor) ([]byte, error) {
	f := resultFile{
		SchemaVersion:   schemaVersion,
		Version:         version,
		Result:          res,
		DurationSeconds: durationSeconds(res),
		StepsCompleted:  stepsCompleted(res),
	}
	if f.Steps == nil {
		f.Steps = []rollout.Step{} // "steps": [] rather than null, for readers that iterate
	}
	f.Final, f.Planned = FinalWeights(res)
	f.Reason = reason(res)
	if w, ok := weightOf(f.Final, traffic.RoleCanary); ok {
		f.CanaryWeight = &w
	}
	if w, ok := weightOf(f.Final, traffic.RoleStable); ok {
		f.StableWeight = &w
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "<" stays readable; the redactor knows JSON's only escapes
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("failed to encode the result: %w", err)
	}
	return red.JSON(b.Bytes()), nil
}

// outputsEnv writes the outputs as GitLab's dotenv report (artifacts:reports:dotenv):
// one KEY=VALUE per line, MESHROLL_ and the output name in capitals, no quotes and no
// line breaks in values: a value of several lines (the reason, when it lists several
// problems) has them joined with "; ".
func outputsEnv(outs []Output) []byte {
	var b strings.Builder
	for _, o := range outs {
		value := joinLines(strings.ReplaceAll(o.Value, "\r", " "))
		fmt.Fprintf(&b, "%s=%s\n", envName(o.Name), value)
	}
	return []byte(b.String())
}

// envName is the outputs.env key of an output: result → MESHROLL_RESULT.
func envName(output string) string { return "MESHROLL_" + strings.ToUpper(output) }
