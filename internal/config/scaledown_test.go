package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestScaleDown(t *testing.T) {
	t.Parallel()
	both := []string{"MESHROLL_STABLE_DEPLOYMENT=reviews-v1", "MESHROLL_CANARY_DEPLOYMENT=reviews-v2"}
	type want struct {
		on    bool
		delay time.Duration
	}
	tests := []struct {
		name     string
		environ  []string
		want     want
		problems []string
	}{
		{"off by default", nil, want{}, nil},
		{"off, Deployments not needed", []string{"MESHROLL_SCALE_DOWN=false"}, want{}, nil},
		{"on, default delay", append([]string{"MESHROLL_SCALE_DOWN=true"}, both...), want{true, 30 * time.Second}, nil},
		{"on, no delay", append([]string{"MESHROLL_SCALE_DOWN=true", "MESHROLL_SCALE_DOWN_DELAY=0s"}, both...), want{true, 0}, nil},
		{"on, a delay", append([]string{"MESHROLL_SCALE_DOWN=true", "MESHROLL_SCALE_DOWN_DELAY=2m"}, both...), want{true, 2 * time.Minute}, nil},
		{"on, empty delay", append([]string{"MESHROLL_SCALE_DOWN=true", "MESHROLL_SCALE_DOWN_DELAY="}, both...), want{true, 30 * time.Second}, nil},
		{"not a boolean", append([]string{"MESHROLL_SCALE_DOWN=yes", "MESHROLL_SCALE_DOWN_DELAY=1m"}, both...), want{}, []string{
			"MESHROLL_SCALE_DOWN=yes: not a boolean; use true or false",
		}},
		{"a delay without scale-down", []string{"MESHROLL_SCALE_DOWN_DELAY=1m"}, want{}, []string{
			"MESHROLL_SCALE_DOWN_DELAY=1m: only used with MESHROLL_SCALE_DOWN=true; unset it, or set MESHROLL_SCALE_DOWN=true",
		}},
		{"a delay with scale-down off", []string{"MESHROLL_SCALE_DOWN=false", "MESHROLL_SCALE_DOWN_DELAY=1m"}, want{}, []string{
			"MESHROLL_SCALE_DOWN_DELAY=1m: only used with MESHROLL_SCALE_DOWN=true",
		}},
		{"negative delay", append([]string{"MESHROLL_SCALE_DOWN=true", "MESHROLL_SCALE_DOWN_DELAY=-1s"}, both...), want{}, []string{
			"MESHROLL_SCALE_DOWN_DELAY=-1s: must not be negative",
		}},
		{"not a duration", append([]string{"MESHROLL_SCALE_DOWN=true", "MESHROLL_SCALE_DOWN_DELAY=30"}, both...), want{}, []string{
			"MESHROLL_SCALE_DOWN_DELAY=30: not a Go duration",
		}},
		{"no Deployments", []string{"MESHROLL_SCALE_DOWN=true"}, want{}, []string{
			"MESHROLL_STABLE_DEPLOYMENT is required: MESHROLL_SCALE_DOWN=true scales the stable Deployment to 0 after a promotion; set it to the stable version's Deployment, e.g. reviews-v1, or unset MESHROLL_SCALE_DOWN",
			"MESHROLL_CANARY_DEPLOYMENT is required: MESHROLL_SCALE_DOWN=true scales the canary Deployment to 0 after a rollback; set it to the canary version's Deployment, e.g. reviews-v2, or unset MESHROLL_SCALE_DOWN",
		}},
		{"no canary Deployment", []string{"MESHROLL_SCALE_DOWN=true", "MESHROLL_STABLE_DEPLOYMENT=reviews-v1"}, want{}, []string{
			"MESHROLL_CANARY_DEPLOYMENT is required: MESHROLL_SCALE_DOWN=true scales the canary Deployment to 0 after a rollback",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(with(tt.environ...))
			if len(tt.problems) > 0 {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Load error = %v, want ErrInvalid", err)
				}
				lines := strings.Split(err.Error(), "\n")
				if len(lines) != len(tt.problems) {
					t.Fatalf("problems:\n%v\nwant %d: %q", err, len(tt.problems), tt.problems)
				}
				for i, p := range tt.problems {
					if !strings.HasPrefix(lines[i], p) {
						t.Errorf("problem %d = %q, want it to start with %q", i, lines[i], p)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, want{cfg.ScaleDown, cfg.ScaleDownDelay}, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
