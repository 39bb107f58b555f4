package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Scaler scales the Deployment a run left without traffic to 0 (MESHROLL_SCALE_DOWN).
type Scaler interface {
	// Check verifies, writing nothing, that the credentials may scale the Deployments; a
	// missing permission matches traffic.ErrPreflight.
	Check(ctx context.Context) error
	// ScaleToZero scales Deployment name to 0 replicas and returns how many it had.
	ScaleToZero(ctx context.Context, name string) (int32, error)
}

// ScaleDown is what the scale-down did after the run, for the log and the summary.
type ScaleDown struct {
	Deployment string `json:"deployment"` // namespace/name
	From       int32  `json:"from"`       // replicas before; meaningful when Scaled
	Scaled     bool   `json:"scaled"`
	// Why says why nothing was scaled, or how the scale-down failed; empty when it scaled.
	Why string `json:"why,omitempty"`
}

// String says it in one line: "Deployment shop/reviews-v1 scaled from 3 to 0".
func (s ScaleDown) String() string {
	if s.Scaled {
		return fmt.Sprintf("Deployment %s scaled from %d to 0", s.Deployment, s.From)
	}
	return fmt.Sprintf("Deployment %s not scaled down: %s", s.Deployment, s.Why)
}

// scaleDown scales the version the run left without traffic to 0, MESHROLL_SCALE_DOWN_DELAY
// after the run moved it away (connections drain): the old stable version after a promotion,
// the canary after a rollback. It re-reads the route first and scales nothing that still has
// traffic. Whatever happens is recorded in res and the log; it never changes the outcome.
func (r *Runner) scaleDown(ctx context.Context, cfg config.Config, res *Result) {
	role, name := r.toScale(cfg, res)
	if r.Scaler == nil || name == "" {
		return
	}
	sd := &ScaleDown{Deployment: cfg.Namespace + "/" + name}
	res.ScaleDown = sd
	defer func() { r.logf("scale-down: %s", sd) }()
	if ctx.Err() != nil {
		sd.Why = "the run was " + stopped(ctx) + " before the scale-down"
		return
	}
	if cfg.ScaleDownDelay > 0 {
		r.logf("scale-down: waiting %s for connections to %s to drain before scaling Deployment %s to 0", cfg.ScaleDownDelay, versionOf(cfg, role), sd.Deployment)
		_ = r.book.set(ctx, func(rec *Record) {
			rec.Doing = "waiting " + cfg.ScaleDownDelay.String() + " to scale down Deployment " + name
		})
		if err := r.Hold(ctx, cfg.ScaleDownDelay); err != nil {
			sd.Why = "the run was " + stopped(ctx) + " during the delay (MESHROLL_SCALE_DOWN_DELAY=" + cfg.ScaleDownDelay.String() + "); scale it down yourself once it has no traffic"
			return
		}
	}
	state, err := r.readWithin(ctx)
	if err != nil {
		sd.Why = "failed to read the route again: " + err.Error()
		return
	}
	if busy := stillServed(state.Routing(), role); busy != "" {
		sd.Why = busy
		return
	}
	scaleCtx, cancel := r.budget(ctx, r.WriteTimeout)
	defer cancel()
	from, err := r.Scaler.ScaleToZero(scaleCtx, name)
	if err != nil {
		sd.Why = err.Error()
		return
	}
	sd.From, sd.Scaled = from, true
}

// toScale is the version a run that ended as res left without traffic, and its Deployment:
// stable after a promotion, canary after a rollback (asked for, or after a failure); ""
// for any other ending.
func (r *Runner) toScale(cfg config.Config, res *Result) (traffic.Role, string) {
	switch {
	case res.Outcome == Promoted:
		return traffic.RoleStable, cfg.StableDeployment
	case res.Outcome == RolledBack:
		return traffic.RoleCanary, cfg.CanaryDeployment
	case len(res.Steps) > 0 && res.Steps[len(res.Steps)-1].Action == ActionRollback:
		return traffic.RoleCanary, cfg.CanaryDeployment // the automatic return to stable landed
	}
	return "", ""
}

// stillServed says why the version of role still has traffic in now, "" when it has none:
// a weight on the steered route, meshroll's A/B route or mirror (canary), or another route.
func stillServed(now traffic.Routing, role traffic.Role) string {
	var reasons []string
	for _, d := range now.Destinations {
		if d.Role == role && d.Weight > 0 {
			reasons = append(reasons, fmt.Sprintf("%s %s gives it weight %d", traffic.RouteWord(now.Kind), now.Route, d.Weight))
		}
	}
	if role == traffic.RoleCanary && now.ABRoute != "" {
		reasons = append(reasons, "the A/B route "+now.ABRoute+" sends it requests")
	}
	if role == traffic.RoleCanary && now.MirrorPercent > 0 {
		reasons = append(reasons, fmt.Sprintf("%s %s mirrors %g%% to it", traffic.RouteWord(now.Kind), now.Route, now.MirrorPercent))
	}
	if others := now.Elsewhere[role]; len(others) > 0 {
		reasons = append(reasons, "route "+strings.Join(others, ", ")+" of "+now.Object()+" still sends it traffic")
	}
	if len(reasons) == 0 {
		return ""
	}
	return "it still has traffic (" + strings.Join(reasons, "; ") + ")"
}

// stopped says what ended ctx, in words: cancelled, or the deadline that passed.
func stopped(ctx context.Context) string {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, ErrLockLost):
		return "interrupted (" + cause.Error() + ")"
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "stopped (" + cause.Error() + ")"
	}
	return "cancelled"
}

func versionOf(cfg config.Config, role traffic.Role) string {
	if role == traffic.RoleStable {
		return cfg.StableName()
	}
	return cfg.CanaryName()
}
