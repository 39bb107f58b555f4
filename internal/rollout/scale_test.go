package rollout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// fakeScaler records what it was asked; replicas is what each Deployment has.
type fakeScaler struct {
	replicas map[string]int32
	checkErr error
	scaleErr error
	scaled   []string
	events   *[]string // shared with the clock: the order of waits and scale-downs
}

func (s *fakeScaler) Check(context.Context) error { return s.checkErr }

func (s *fakeScaler) ScaleToZero(ctx context.Context, name string) (int32, error) {
	*s.events = append(*s.events, "scale "+name)
	if s.scaleErr != nil {
		return 0, s.scaleErr
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	from := s.replicas[name]
	s.replicas[name] = 0
	s.scaled = append(s.scaled, name)
	return from, nil
}

func scaleCfg(mode config.Mode, vars func(*config.Config)) config.Config {
	return cfg(mode, func(c *config.Config) {
		c.ScaleDown, c.ScaleDownDelay = true, 30*time.Second
		c.StableDeployment, c.CanaryDeployment = "reviews-v1", "reviews-v2"
		if vars != nil {
			vars(c)
		}
	})
}

func TestScaleDown(t *testing.T) {
	t.Parallel()
	apiDown := errors.New("connection refused")
	tests := []struct {
		name      string
		cfg       config.Config
		elsewhere map[traffic.Role][]string // other routes that send a version traffic
		failAt    map[int]error
		cancelAt  time.Duration // the wait of this length is cancelled
		scaleErr  error
		checkErr  error
		want      Outcome
		wantScale *ScaleDown
		wantWaits []string // the waits and scale-downs, in order
	}{
		{
			name: "promotion: stable scaled after the delay",
			cfg:  scaleCfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{50, 100}; c.StepDuration = time.Minute }),
			want: Promoted, wantScale: &ScaleDown{Deployment: "prod/reviews-v1", From: 3, Scaled: true},
			wantWaits: []string{"wait 1m0s", "wait 30s", "scale reviews-v1"},
		},
		{
			name: "no delay", cfg: scaleCfg(config.ModePromote, func(c *config.Config) { c.ScaleDownDelay = 0 }),
			want: Promoted, wantScale: &ScaleDown{Deployment: "prod/reviews-v1", From: 3, Scaled: true},
			wantWaits: []string{"scale reviews-v1"},
		},
		{
			name: "rollback: canary scaled", cfg: scaleCfg(config.ModeRollback, nil),
			want: RolledBack, wantScale: &ScaleDown{Deployment: "prod/reviews-v2", From: 2, Scaled: true},
			wantWaits: []string{"wait 30s", "scale reviews-v2"},
		},
		{
			name: "automatic rollback after a failure: canary scaled, outcome kept",
			cfg:  scaleCfg(config.ModeProgress, func(c *config.Config) { c.Steps = []int{25, 50, 100} }), failAt: map[int]error{2: apiDown},
			want: Failed, wantScale: &ScaleDown{Deployment: "prod/reviews-v2", From: 2, Scaled: true},
			wantWaits: []string{"wait 30s", "scale reviews-v2"},
		},
		{
			name: "another route still sends stable traffic: not scaled", cfg: scaleCfg(config.ModePromote, nil),
			elsewhere: map[traffic.Role][]string{traffic.RoleStable: {"api"}},
			want:      Promoted, wantScale: &ScaleDown{Deployment: "prod/reviews-v1", Why: "it still has traffic (route api of VirtualService prod/reviews still sends it traffic)"},
			wantWaits: []string{"wait 30s"},
		},
		{
			name: "a tester route still sends the canary traffic: not scaled", cfg: scaleCfg(config.ModeRollback, nil),
			elsewhere: map[traffic.Role][]string{traffic.RoleCanary: {"tester"}},
			want:      RolledBack, wantScale: &ScaleDown{Deployment: "prod/reviews-v2", Why: "it still has traffic (route tester of VirtualService prod/reviews still sends it traffic)"},
			wantWaits: []string{"wait 30s"},
		},
		{
			name: "cancelled during the delay: not scaled", cfg: scaleCfg(config.ModePromote, nil), cancelAt: 30 * time.Second,
			want: Promoted, wantScale: &ScaleDown{Deployment: "prod/reviews-v1", Why: "the run was cancelled during the delay (MESHROLL_SCALE_DOWN_DELAY=30s); scale it down yourself once it has no traffic"},
			wantWaits: []string{"wait 30s"},
		},
		{
			name: "the scale-down fails: reported, outcome kept", cfg: scaleCfg(config.ModePromote, nil), scaleErr: errors.New("failed to scale Deployment prod/reviews-v1 to 0: forbidden"),
			want: Promoted, wantScale: &ScaleDown{Deployment: "prod/reviews-v1", Why: "failed to scale Deployment prod/reviews-v1 to 0: forbidden"},
			wantWaits: []string{"wait 30s", "scale reviews-v1"},
		},
		{
			name: "weight set: nothing to scale", cfg: scaleCfg(config.ModePhase, func(c *config.Config) { c.Weight = 50 }),
			want: WeightSet,
		},
		{
			name: "a missing permission stops the run before any write", cfg: scaleCfg(config.ModePromote, nil),
			checkErr: traffic.Preflightf(traffic.ErrForbidden, "forbidden: the credentials in use cannot update deployments.apps/scale in namespace prod"),
			want:     Invalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			route := f.state.Routing()
			route.Elsewhere = tt.elsewhere
			f.state = fakeRoute{route}
			for k, v := range tt.failAt {
				f.failAt[k] = v
			}
			var events []string
			scaler := &fakeScaler{replicas: map[string]int32{"reviews-v1": 3, "reviews-v2": 2}, checkErr: tt.checkErr, scaleErr: tt.scaleErr, events: &events}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var log bytes.Buffer
			r := runner(f, &log)
			r.Scaler, r.DriftInterval = scaler, 0
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			r.Now = func() time.Time { return now }
			r.Hold = func(ctx context.Context, d time.Duration) error { // a fake clock: no test waits
				events = append(events, fmt.Sprintf("wait %s", d))
				if d == tt.cancelAt {
					cancel()
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				now = now.Add(d)
				return nil
			}
			res := r.Run(ctx, tt.cfg)
			if res.Outcome != tt.want {
				t.Fatalf("outcome %s, want %s (err %v)\n%s", res.Outcome, tt.want, res.Err, log.String())
			}
			if diff := cmp.Diff(tt.wantScale, res.ScaleDown); diff != "" {
				t.Errorf("ScaleDown (-want +got):\n%s\n%s", diff, log.String())
			}
			if diff := cmp.Diff(tt.wantWaits, events); diff != "" {
				t.Errorf("waits and scale-downs (-want +got):\n%s", diff)
			}
			if tt.wantScale != nil && !strings.Contains(log.String(), "scale-down: "+tt.wantScale.String()) {
				t.Errorf("the log does not say %q:\n%s", tt.wantScale, log.String())
			}
			if tt.checkErr != nil && len(f.writes) > 0 {
				t.Errorf("written after a failed check: %v", f.writes)
			}
		})
	}
}

func TestScaleDownString(t *testing.T) {
	t.Parallel()
	if got, want := (ScaleDown{Deployment: "shop/reviews-v1", From: 3, Scaled: true}).String(), "Deployment shop/reviews-v1 scaled from 3 to 0"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}
