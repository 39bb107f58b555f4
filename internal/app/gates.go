package app

import (
	"context"
	"errors"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/gates"
	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/traffic"
)

// wireGates gives the runner the gates cfg asks for: webhooks, the load generator, the
// security preflight (always, when both Deployments are named) and the scale-down.
func wireGates(ctx context.Context, runner *rollout.Runner, cfg config.Config, clients kube.Clients) {
	if len(cfg.Webhooks) > 0 {
		id := gates.NewRollout(cfg, cfg.Namespace, canaryRevision(ctx, clients, cfg))
		runner.Hooks = hooks{gates.NewHooks(cfg.Webhooks, id, nil)}
	}
	if cfg.Load.URL != "" {
		runner.Load = load{cfg.Load}
	}
	if cfg.StableDeployment != "" && cfg.CanaryDeployment != "" {
		runner.Security = security{gates.Security{
			Kube: clients.Kube, Istio: clients.Istio, Namespace: cfg.Namespace, Root: cfg.IstioNamespace,
			Stable: cfg.StableDeployment, Canary: cfg.CanaryDeployment, Strict: cfg.VerifySecurity,
		}}
	}
	if cfg.ScaleDown {
		runner.Scaler = scaler{gates.NewScaler(clients.Kube, cfg.Namespace)}
	}
}

// canaryRevision is what the canary runs, for the webhooks' checksum: its Deployment's
// images, "" when there is none to read (the checksum then names the release by its inputs).
func canaryRevision(ctx context.Context, clients kube.Clients, cfg config.Config) string {
	if cfg.CanaryDeployment == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dep, err := clients.Kube.AppsV1().Deployments(cfg.Namespace).Get(ctx, cfg.CanaryDeployment, metav1.GetOptions{})
	if err != nil {
		return "" // the preflight reports a Deployment it cannot read
	}
	var images []string
	for _, c := range dep.Spec.Template.Spec.Containers {
		images = append(images, c.Image)
	}
	return strings.Join(images, ",")
}

// hooks is gates' webhooks as the rollout calls them.
type hooks struct{ *gates.Hooks }

func (h hooks) Call(ctx context.Context, typ config.WebhookType, succeeded bool) []rollout.HookCall {
	at := time.Now()
	calls := h.Run(ctx, typ, gates.PhaseOf(typ, succeeded))
	out := make([]rollout.HookCall, len(calls))
	for i, c := range calls {
		out[i] = rollout.HookCall{Name: c.Name, Type: c.Type, URL: c.URL, At: at, Status: c.Status, Latency: c.Latency, OK: c.OK, Excerpt: c.Excerpt}
		if c.Err != nil {
			// The rollout names the webhook and its URL itself: keep why the call failed.
			cause := c.Err
			if inner := errors.Unwrap(c.Err); inner != nil {
				cause = inner
			}
			out[i].Error = cause.Error()
		}
		at = at.Add(c.Latency)
	}
	return out
}

// load is gates' load generator as the rollout starts it for each held step.
type load struct{ settings config.LoadGenerator }

func (l load) Start(ctx context.Context) func() rollout.LoadStats {
	running := gates.StartLoad(ctx, l.settings)
	return func() rollout.LoadStats {
		s := running.Stop()
		return rollout.LoadStats{Requests: s.Requests, Non2xx: s.Non2xx, Rate: s.Rate, P50: s.P50, P99: s.P99, Summary: s.String()}
	}
}

// security is gates' security preflight as the rollout needs it: a gap that
// MESHROLL_VERIFY_SECURITY=true makes fatal, or a permission it lacks, is a failed preflight
// (exit 2, nothing written).
type security struct{ gates.Security }

func (s security) Check(ctx context.Context) ([]string, error) {
	warnings, err := s.Security.Check(ctx)
	switch {
	case errors.Is(err, gates.ErrSecurityForbidden):
		return warnings, traffic.Preflightf(traffic.ErrForbidden, "%s", strings.TrimPrefix(err.Error(), gates.ErrSecurityForbidden.Error()+": "))
	case errors.Is(err, gates.ErrInsecure):
		return warnings, traffic.Preflightf(gates.ErrInsecure, "%s", err)
	}
	return warnings, err
}

// scaler is the scale-down of gates as the rollout needs it: a missing permission is a
// failed preflight (exit 2, nothing written), as every other one is.
type scaler struct{ *gates.Scaler }

func (s scaler) Check(ctx context.Context) error {
	err := s.Scaler.Check(ctx)
	if errors.Is(err, gates.ErrScaleForbidden) {
		return traffic.Preflightf(traffic.ErrForbidden, "%s", strings.TrimPrefix(err.Error(), gates.ErrScaleForbidden.Error()+": "))
	}
	return err
}
