package istio

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/meshroll/meshroll/internal/traffic"
)

// Matches of MESHROLL_MATCH as config hands them over.
var (
	india = []map[string]any{{"headers": map[string]any{"region": map[string]any{"exact": "india"}}}}
	beta  = []map[string]any{
		{"headers": map[string]any{"cookie": map[string]any{"regex": "^(.*?;)?(group=beta)(;.*)?$"}}},
		{"headers": map[string]any{"@request.auth.claims.group": map[string]any{"exact": "beta"}}},
	}
)

// TestShapes runs sequences of stages (A/B route, mirror, weights) from a fixture and keeps,
// per case, every patch and the routes they leave in a golden file. Every patch is checked
// against the JSON patch library the API server uses (checkPatch), and every state in between
// holds the weight invariants.
func TestShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fixture string
		target  Target
		stages  []traffic.Desired
		wantErr error
	}{
		{name: "A/B route before a catch-all, beside a tester route", fixture: "bookinfo-reviews.yaml", target: withMatch(target("v1", "v2", ""), india),
			stages: []traffic.Desired{{KeepWeights: true, AB: true}, {CanaryWeight: 20, AB: true}, {CanaryWeight: 0}}},
		{name: "A/B route ANDs the route's own match", fixture: "matched-only.yaml", target: withMatch(target("v1", "v2", ""), beta),
			stages: []traffic.Desired{{KeepWeights: true, AB: true}}},
		{name: "A/B route copies the route's policies", fixture: "weighted-with-policies.yaml", target: withMatch(target("v1", "v2", ""), india),
			stages: []traffic.Desired{{CanaryWeight: 25, AB: true}, {CanaryWeight: 100}}},
		{name: "A/B route for a host-level split", fixture: "host-split.yaml", target: withMatch(services("reviews-stable", "reviews-canary"), india),
			stages: []traffic.Desired{{KeepWeights: true, AB: true}}},
		{name: "A/B conditions the route cannot meet", fixture: "matched-only.yaml", target: withMatch(target("v1", "v2", ""), []map[string]any{{"uri": map[string]any{"prefix": "/api"}}}),
			stages: []traffic.Desired{{KeepWeights: true, AB: true}}, wantErr: traffic.ErrMatchConflict},
		{name: "mirror then weights", fixture: "weighted-with-policies.yaml", target: target("v1", "v2", ""),
			stages: []traffic.Desired{{KeepWeights: true, MirrorPercent: 50}, {CanaryWeight: 30}}},
		{name: "mirror, A/B, weights, rollback", fixture: "bookinfo-reviews.yaml", target: withMatch(target("v1", "v2", ""), india),
			stages: []traffic.Desired{{KeepWeights: true, MirrorPercent: 100}, {KeepWeights: true, AB: true}, {CanaryWeight: 10, AB: true}, {CanaryWeight: 0}}},
		{name: "a mirror the user set elsewhere", fixture: "mirrored-elsewhere.yaml", target: target("v1", "v2", ""),
			stages: []traffic.Desired{{KeepWeights: true, MirrorPercent: 10}}, wantErr: traffic.ErrForeignMirror},
		{name: "the user's own mirror to the canary survives weights and rollback", fixture: "mirrored-to-canary.yaml", target: target("v1", "v2", ""),
			stages: []traffic.Desired{{CanaryWeight: 30}, {CanaryWeight: 0}}},
		{name: "the user's own mirror to the canary is not meshroll's to set", fixture: "mirrored-to-canary.yaml", target: target("v1", "v2", ""),
			stages: []traffic.Desired{{KeepWeights: true, MirrorPercent: 10}}, wantErr: traffic.ErrForeignMirror},
		{name: "a mirror the user set elsewhere survives weights", fixture: "mirrored-elsewhere.yaml", target: target("v1", "v2", ""),
			stages: []traffic.Desired{{CanaryWeight: 10}, {CanaryWeight: 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vs := loadFixture(t, tt.fixture)
			state, err := stateOf(vs.Namespace, vs.Name, "1", vs.Spec.DeepCopy(), tt.target)
			if err != nil {
				t.Fatal(err)
			}
			var record []any
			for i, d := range tt.stages {
				change, err := state.Plan(d)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) || !errors.Is(err, traffic.ErrPreflight) {
						t.Fatalf("stage %d: err = %v, want %v", i+1, err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("stage %d: %v", i+1, err)
				}
				doc, err := state.document()
				if err != nil {
					t.Fatal(err)
				}
				checkPatchDocument(t, doc, change)
				next := change.Next.(*State)
				if (next.abIndex >= 0) != d.AB {
					t.Errorf("stage %d: A/B route in place %v, want %v", i+1, next.abIndex >= 0, d.AB)
				}
				if next.routing.MirrorPercent != d.MirrorPercent {
					t.Errorf("stage %d: mirror %v%%, want %v%%", i+1, next.routing.MirrorPercent, d.MirrorPercent)
				}
				var http any
				var spec map[string]json.RawMessage
				if err := json.Unmarshal(next.raw, &spec); err != nil {
					t.Fatal(err)
				}
				_ = json.Unmarshal(spec["http"], &http)
				record = append(record, map[string]any{"desired": d, "describe": change.Describe(), "patch": change.Patch, "http": http})
				state = next
			}
			if tt.wantErr != nil {
				t.Fatalf("no stage failed, want %v", tt.wantErr)
			}
			out, err := json.MarshalIndent(record, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("shapes", fileName(tt.name)+".json"), append(out, '\n'))
		})
	}
}

func withMatch(t Target, match []map[string]any) Target {
	t.Match = match
	return t
}
