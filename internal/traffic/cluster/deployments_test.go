package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

func TestWaitDeployments(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	canary := func(checks traffic.Checks) traffic.Checks {
		checks.CanaryDeployment = "reviews-v2"
		if checks.ReadyTimeout == 0 {
			checks.ReadyTimeout = 10 * time.Second
		}
		return checks
	}
	selected := func(version string) map[traffic.Role]Pods {
		return map[traffic.Role]Pods{traffic.RoleCanary: {
			Labels:     map[string]string{"app": "reviews", "version": version},
			SelectedBy: `Service "reviews-canary" subset "` + version + `"`,
			Fix:        "the Service's selector or the subset's labels",
		}}
	}
	tests := []struct {
		name      string
		manifests string
		checks    traffic.Checks
		pods      map[traffic.Role]Pods
		available bool   // set the Deployments Available before the wait
		late      bool   // set reviews-v2 Available while the wait runs
		wantErr   string // the whole message, NS for the namespace; "" for none
	}{
		{name: "available", manifests: testenv.DeploymentManifest("reviews-v2", "v2"), available: true, checks: canary(traffic.Checks{}), pods: selected("v2")},
		{name: "becomes available", manifests: testenv.DeploymentManifest("reviews-v2", "v2"), late: true,
			checks: canary(traffic.Checks{ReadyTimeout: 30 * time.Second, PollInterval: 100 * time.Millisecond})},
		{name: "never available", manifests: testenv.DeploymentManifest("reviews-v2", "v2"),
			checks:  canary(traffic.Checks{ReadyTimeout: time.Second, PollInterval: 100 * time.Millisecond}),
			wantErr: "Deployment NS/reviews-v2 is not Available after 1s (0 of 2 replicas available, observed generation 0 of 1): check its pods, or raise MESHROLL_READY_TIMEOUT"},
		{name: "missing", checks: canary(traffic.Checks{}),
			wantErr: "MESHROLL_CANARY_DEPLOYMENT=reviews-v2: Deployment NS/reviews-v2 not found: check the name and namespace"},
		{name: "stable first", checks: canary(traffic.Checks{StableDeployment: "reviews-v1"}),
			wantErr: "MESHROLL_STABLE_DEPLOYMENT=reviews-v1: Deployment NS/reviews-v1 not found: check the name and namespace"},
		{name: "scaled to 0, not serving", manifests: strings.Replace(testenv.DeploymentManifest("reviews-v2", "v2"), "replicas: 2", "replicas: 0", 1), available: true,
			checks: canary(traffic.Checks{StableServes: true})},
		{name: "scaled to 0, serving", manifests: strings.Replace(testenv.DeploymentManifest("reviews-v2", "v2"), "replicas: 2", "replicas: 0", 1), available: true,
			checks:  canary(traffic.Checks{CanaryServes: true}),
			wantErr: "MESHROLL_CANARY_DEPLOYMENT=reviews-v2: Deployment NS/reviews-v2 has no ready pods (0 replicas wanted) but this run sends the canary version traffic: scale it up first"},
		{name: "pods not selected", manifests: testenv.DeploymentManifest("reviews-v2", "v2"), available: true, checks: canary(traffic.Checks{}), pods: selected("v3"),
			wantErr: `the canary Service "reviews-canary" subset "v3" selects app=reviews,version=v3 but the pods of Deployment NS/reviews-v2 are labelled app=reviews,version=v2: point MESHROLL_CANARY_DEPLOYMENT at the canary's Deployment or fix the Service's selector or the subset's labels`},
		{name: "labels of another role", manifests: testenv.DeploymentManifest("reviews-v2", "v2"), available: true, checks: canary(traffic.Checks{}),
			pods: map[traffic.Role]Pods{traffic.RoleStable: {Labels: map[string]string{"version": "v1"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			if tt.manifests != "" {
				env.Apply(t, ns, tt.manifests)
			}
			if tt.available {
				if err := env.SetDeploymentStatus(t.Context(), ns, "reviews-v2", true); err != nil {
					t.Fatal(err)
				}
			}
			if tt.late {
				go func() {
					time.Sleep(500 * time.Millisecond)
					if err := env.SetDeploymentStatus(context.Background(), ns, "reviews-v2", true); err != nil {
						t.Error(err)
					}
				}()
			}
			err := WaitDeployments(t.Context(), env.Kube, ns, tt.checks, tt.pods)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, traffic.ErrDeploymentNotReady) || !errors.Is(err, traffic.ErrPreflight) {
				t.Fatalf("err = %v, want ErrDeploymentNotReady", err)
			}
			if want := strings.ReplaceAll(tt.wantErr, "NS", ns); err.Error() != want {
				t.Errorf("err = %q\nwant  %q", err, want)
			}
		})
	}
}

// A wait with a context that has already ended stops at once and says what ended it.
func TestWaitDeploymentsCancelledContext(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, testenv.DeploymentManifest("reviews-v2", "v2"))
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("the run was cancelled")
	cancel(cause)
	err := WaitDeployments(ctx, env.Kube, ns, traffic.Checks{CanaryDeployment: "reviews-v2", ReadyTimeout: time.Minute}, nil)
	if !errors.Is(err, cause) || !strings.HasPrefix(err.Error(), "failed to wait for Deployment "+ns+"/reviews-v2: the run was cancelled") {
		t.Fatalf("err = %v, want the wait's end naming its cause", err)
	}
}
