package config

import (
	"errors"
	"strings"
	"testing"
)

// The sequential judge's inputs: the confidence, and early step completion within a margin.
func TestJudgeInputs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		vars    []string
		problem string // "" = valid
	}{
		{"defaults", nil, ""},
		{"confidence 95", []string{"MESHROLL_CONFIDENCE=95"}, ""},
		{"confidence 100", []string{"MESHROLL_CONFIDENCE=100"}, "MESHROLL_CONFIDENCE=100: must be a percentage from 50 to 99.99"},
		{"confidence a fraction", []string{"MESHROLL_CONFIDENCE=0.99"}, "MESHROLL_CONFIDENCE=0.99: must be a percentage from 50 to 99.99"},
		{"early completion", []string{"MESHROLL_MIN_STEP_DURATION=1m", "MESHROLL_STEP_DURATION=5m"}, ""},
		{"minimum below one window", []string{"MESHROLL_MIN_STEP_DURATION=10s", "MESHROLL_STEP_DURATION=5m"},
			"MESHROLL_MIN_STEP_DURATION=10s: must be at least MESHROLL_ANALYSIS_INTERVAL (30s) and shorter than MESHROLL_STEP_DURATION (5m0s)"},
		{"minimum as long as the step", []string{"MESHROLL_MIN_STEP_DURATION=5m", "MESHROLL_STEP_DURATION=5m"},
			"MESHROLL_MIN_STEP_DURATION=5m0s: must be at least MESHROLL_ANALYSIS_INTERVAL (30s) and shorter than MESHROLL_STEP_DURATION (5m0s)"},
		{"margin below 1", []string{"MESHROLL_MARGIN_FACTOR=0.5"}, "MESHROLL_MARGIN_FACTOR=0.5: must be a factor of 1 or more"},
		{"margin points negative", []string{"MESHROLL_MARGIN_POINTS=-1"}, "MESHROLL_MARGIN_POINTS=-1: must be percentage points from 0 to 100"},
		{"guardrails off by default, on when set", []string{"MESHROLL_MIN_SUCCESS_RATE=99", "MESHROLL_MAX_LATENCY_P99=300"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(analysis(tt.vars...))
			if tt.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.problem) {
				t.Fatalf("Load error = %v, want %q", err, tt.problem)
			}
		})
	}
	cfg, err := Load(analysis())
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Analysis; a.MinSuccessRate != 0 || a.MaxLatencyP99 != 0 || a.Confidence != 99 || a.MarginFactor != 1.5 || a.MarginPoints != 0.2 || a.MinStepDuration != 0 {
		t.Errorf("defaults: %+v", a)
	}
	if _, err := Load(with("MESHROLL_CONFIDENCE=99")); err == nil || !strings.Contains(err.Error(), "MESHROLL_CONFIDENCE is set but MESHROLL_PROMETHEUS_URL is empty") {
		t.Errorf("confidence without Prometheus: %v", err)
	}
}
