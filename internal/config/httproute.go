package config

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
)

// httpRoute checks the target of a Gateway API run (MESHROLL_HTTP_ROUTE): the HTTPRoute's
// name, the rule, and the stable and canary Services its backendRefs name. Versions are
// Services there: DestinationRule subsets are Istio's.
func httpRoute(v *validator, cfg Config) {
	if errs := validation.IsDNS1123Subdomain(cfg.HTTPRoute); len(errs) > 0 {
		v.invalid("MESHROLL_HTTP_ROUTE", cfg.HTTPRoute, "not a valid HTTPRoute name (%s); use its metadata.name, e.g. reviews", strings.Join(errs, ", "))
	}
	if cfg.Route != "" && (!utf8.ValidString(cfg.Route) || strings.ContainsFunc(cfg.Route, unicode.IsControl)) {
		v.invalid("MESHROLL_ROUTE", cfg.Route, "contains a control character or invalid UTF-8; use the rule's name exactly as in the HTTPRoute, rules[N] for the N-th rule, or leave it empty to choose the rule automatically")
	}
	for _, s := range []struct{ name, value string }{{"MESHROLL_STABLE_SUBSET", cfg.StableSubset}, {"MESHROLL_CANARY_SUBSET", cfg.CanarySubset}} {
		if s.value != "" {
			v.invalid(s.name, s.value, "subsets are an Istio DestinationRule's; an HTTPRoute names each version by its Service: unset it and set MESHROLL_STABLE_SERVICE and MESHROLL_CANARY_SERVICE")
		}
	}
	if cfg.Mode == ModeStatus && cfg.StableService == "" && cfg.CanaryService == "" {
		return // status takes them from the run it finds
	}
	stableOK := backendService(v, "MESHROLL_STABLE_SERVICE", "stable", cfg.StableService, "reviews-v1")
	canaryOK := backendService(v, "MESHROLL_CANARY_SERVICE", "canary", cfg.CanaryService, "reviews-v2")
	if stableOK && canaryOK && qualified(cfg.StableService, cfg.Namespace) == qualified(cfg.CanaryService, cfg.Namespace) {
		v.invalid("MESHROLL_CANARY_SERVICE", cfg.CanaryService, "same Service as MESHROLL_STABLE_SERVICE; the canary must be a Service of its own")
	}
}

// backendService checks a Service an HTTPRoute's backendRef names: "name", in the HTTPRoute's
// namespace, or "namespace/name".
func backendService(v *validator, name, which, value, example string) bool {
	if value == "" {
		v.required(name, fmt.Sprintf("an HTTPRoute names each version by its Service; set it to the %s version's Service, e.g. %s (or namespace/%s in another namespace)", which, example, example))
		return false
	}
	ns, svc, cross := strings.Cut(value, "/")
	if !cross {
		svc = value
	}
	var errs []string
	if cross {
		errs = append(errs, validation.IsDNS1123Label(ns)...)
	}
	errs = append(errs, validation.IsDNS1035Label(svc)...)
	if len(errs) > 0 {
		v.invalid(name, value, "not a Service name (%s); use the %s version's Service as the HTTPRoute's backendRef names it, e.g. %s, or namespace/name for a Service in another namespace", strings.Join(errs, ", "), which, example)
		return false
	}
	return true
}

// qualified is a backendRef's Service as namespace/name; "" stands for the HTTPRoute's
// namespace as the kube context resolves it, which is the same for both versions.
func qualified(service, namespace string) string {
	if strings.Contains(service, "/") {
		return service
	}
	return namespace + "/" + service
}
