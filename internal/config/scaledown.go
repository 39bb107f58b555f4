package config

import (
	"strconv"
	"strings"
)

// scaleDown checks MESHROLL_SCALE_DOWN and its delay. Scaling down needs both Deployments
// named: the stable one goes to 0 after a promotion, the canary one after a rollback, and a
// run cannot tell in advance which way it ends.
func (in input) scaleDown(v *validator, cfg *Config) {
	raw := strings.TrimSpace(in.ScaleDown)
	if raw != "" {
		b, err := strconv.ParseBool(raw)
		if err != nil {
			v.invalid("MESHROLL_SCALE_DOWN", raw, "not a boolean; use true or false, or leave it empty for false")
		}
		cfg.ScaleDown = b
	}
	delay := strings.TrimSpace(in.ScaleDownDelay)
	if !cfg.ScaleDown {
		if delay != "" && (raw == "" || isBool(raw)) { // a bad MESHROLL_SCALE_DOWN says enough
			v.invalid("MESHROLL_SCALE_DOWN_DELAY", delay, "only used with MESHROLL_SCALE_DOWN=true; unset it, or set MESHROLL_SCALE_DOWN=true")
		}
		return
	}
	cfg.ScaleDownDelay = duration(v, "MESHROLL_SCALE_DOWN_DELAY", delay, defaultScaleDownDelay, true,
		"use 0 to scale down at once, or a duration such as 30s or 2m, or leave it empty for 30s")
	if cfg.StableDeployment == "" {
		v.required("MESHROLL_STABLE_DEPLOYMENT", "MESHROLL_SCALE_DOWN=true scales the stable Deployment to 0 after a promotion; set it to the stable version's Deployment, e.g. reviews-v1, or unset MESHROLL_SCALE_DOWN")
	}
	if cfg.CanaryDeployment == "" {
		v.required("MESHROLL_CANARY_DEPLOYMENT", "MESHROLL_SCALE_DOWN=true scales the canary Deployment to 0 after a rollback; set it to the canary version's Deployment, e.g. reviews-v2, or unset MESHROLL_SCALE_DOWN")
	}
}

// prune checks MESHROLL_PRUNE.
func (in input) prune(v *validator, cfg *Config) {
	if raw := strings.TrimSpace(in.Prune); raw != "" {
		b, err := strconv.ParseBool(raw)
		if err != nil {
			v.invalid("MESHROLL_PRUNE", raw, "not a boolean; use true or false, or leave it empty for false")
		}
		cfg.Prune = b
	}
}

func isBool(s string) bool {
	_, err := strconv.ParseBool(s)
	return err == nil
}
