package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLeaseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value string
		want        time.Duration
		problem     string
	}{
		{"default", "", time.Minute, ""},
		{"longer", "2m", 2 * time.Minute, ""},
		{"the shortest", "15s", 15 * time.Second, ""},
		{"too short", "10s", 0, "MESHROLL_LEASE_DURATION=10s: shorter than 15s"},
		{"part of a second", "20500ms", 0, "MESHROLL_LEASE_DURATION=20500ms: a Lease counts whole seconds"},
		{"not a duration", "60", 0, "MESHROLL_LEASE_DURATION=60: not a Go duration"},
		{"zero", "0s", 0, "MESHROLL_LEASE_DURATION=0s: must be greater than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(with("MESHROLL_LEASE_DURATION=" + tt.value))
			if tt.problem != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.problem) || strings.Count(err.Error(), "\n") != 0 {
					t.Fatalf("Load error = %v, want the one problem %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.LeaseDuration != tt.want {
				t.Errorf("LeaseDuration = %s, want %s", cfg.LeaseDuration, tt.want)
			}
		})
	}
}

// The CI run's address names the holder of the lock and goes into every Event.
func TestRunLink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ []string
		want    string
	}{
		{"outside CI", nil, ""},
		{"GitHub", []string{"GITHUB_SERVER_URL=https://github.com", "GITHUB_REPOSITORY=shop/reviews", "GITHUB_RUN_ID=42", "GITHUB_RUN_ATTEMPT=1"},
			"https://github.com/shop/reviews/actions/runs/42"},
		{"GitHub, a re-run attempt", []string{"GITHUB_SERVER_URL=https://ghe.example.com/", "GITHUB_REPOSITORY=shop/reviews", "GITHUB_RUN_ID=42", "GITHUB_RUN_ATTEMPT=3"},
			"https://ghe.example.com/shop/reviews/actions/runs/42/attempts/3"},
		{"GitHub without a run ID", []string{"GITHUB_SERVER_URL=https://github.com", "GITHUB_REPOSITORY=shop/reviews"}, ""},
		{"GitLab", []string{"CI_JOB_URL=https://gitlab.example.com/shop/reviews/-/jobs/7"}, "https://gitlab.example.com/shop/reviews/-/jobs/7"},
		{"Jenkins", []string{"BUILD_URL=https://ci.example.com/job/reviews/12/"}, "https://ci.example.com/job/reviews/12/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(with(tt.environ...))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.RunLink); diff != "" {
				t.Errorf("RunLink (-want +got):\n%s", diff)
			}
		})
	}
}

// status may leave the versions out (it takes them from the run it finds); resume takes the
// progression's steps.
func TestModesOfTheLock(t *testing.T) {
	t.Parallel()
	cfg, err := Load([]string{"MESHROLL_MODE=status", "MESHROLL_VIRTUAL_SERVICE=reviews"})
	if err != nil {
		t.Fatalf("status without the versions: %v", err)
	}
	if cfg.StableSubset != "" || cfg.CanarySubset != "" {
		t.Errorf("status got versions it was not given: %q, %q", cfg.StableSubset, cfg.CanarySubset)
	}
	if _, err := Load([]string{"MESHROLL_MODE=status", "MESHROLL_VIRTUAL_SERVICE=reviews", "MESHROLL_STABLE_SUBSET=v1"}); err == nil ||
		!strings.Contains(err.Error(), "MESHROLL_CANARY_SUBSET is required") {
		t.Errorf("status with one version only: error = %v, want the other one required", err)
	}
	cfg, err = Load(with("MESHROLL_MODE=resume"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{10, 25, 50, 100}, cfg.Steps); diff != "" {
		t.Errorf("resume's default steps (-want +got):\n%s", diff)
	}
	cfg, err = Load(with("MESHROLL_MODE=resume", "MESHROLL_STEPS=5,100"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{5, 100}, cfg.Steps); diff != "" {
		t.Errorf("resume's steps (-want +got):\n%s", diff)
	}
}
