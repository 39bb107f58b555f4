// Package gatewayapi steers a Kubernetes Gateway API HTTPRoute (gateway.networking.k8s.io/v1):
// it reads the object into meshroll's backend-neutral model (internal/traffic), plans each
// change as a pure function of what it read, and writes it as one JSON patch guarded by test
// operations and the resourceVersion, as the Istio backend does for a VirtualService.
//
// The stable and canary versions are Services, named by backendRefs of one rule. Weights are
// relative (traffic.SplitShares): other backends keep their share of the rule.
package gatewayapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshroll/meshroll/internal/traffic"
)

// Kind is the routing object this backend steers.
const Kind = "HTTPRoute"

// ErrUnsupported marks a stage this backend cannot take yet.
var ErrUnsupported = errors.New("not supported for HTTPRoutes")

// Target names the HTTPRoute rule that meshroll steers and the Services it moves traffic
// between, each "name" (in the HTTPRoute's namespace) or "namespace/name".
type Target struct {
	Namespace     string
	HTTPRoute     string
	Rule          string // rules[].name, or rules[N]; "" lets selectRule choose
	StableService string
	CanaryService string
	// Match holds the conditions of the A/B rule (MESHROLL_MATCH) as Istio HTTPMatchRequests
	// (JSON objects), translated to Gateway API HTTPRouteMatches; empty: no A/B stage.
	Match []map[string]any
}

// abRulePrefix starts the name of every rule meshroll inserts.
const abRulePrefix = "meshroll-ab-"

// abRuleName is the name of meshroll's A/B rule for this canary, so that anyone reading the
// object sees who manages it, and a later run (a rollback after a runner died) finds it.
func (t Target) abRuleName() string {
	return abRulePrefix + t.service(traffic.RoleCanary).name
}

// service is a Service a backendRef may name.
type service struct{ namespace, name string }

func (t Target) service(r traffic.Role) service {
	ref := t.StableService
	if r == traffic.RoleCanary {
		ref = t.CanaryService
	}
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		return service{ns, name}
	}
	return service{t.Namespace, ref}
}

// label names a Service in the model and in messages: its name, with its namespace when that
// is not the HTTPRoute's.
func (t Target) label(s service) string {
	if s.namespace == t.Namespace {
		return s.name
	}
	return s.namespace + "/" + s.name
}

// State is an HTTPRoute as it was read, with the rule meshroll steers resolved. It implements
// traffic.State.
type State struct {
	routing   traffic.Routing
	ruleIndex int
	abIndex   int // of meshroll's A/B rule, -1 when there is none
	target    Target
	spec      *gatewayv1.HTTPRouteSpec // decoded, for planning
	raw       []byte                   // the spec as read: planned patches apply to it
	// annotations of the object as read: mirrorAnnotation marks meshroll's mirror.
	annotations map[string]string
}

var _ traffic.State = (*State)(nil)

// NewState resolves the steered rule of an HTTPRoute from its spec as JSON. Planning works on
// that JSON, so that fields this build of the Gateway API does not know survive a patch.
func NewState(namespace, name, resourceVersion string, spec []byte, target Target) (*State, error) {
	return newState(metav1.ObjectMeta{Namespace: namespace, Name: name, ResourceVersion: resourceVersion}, spec, target)
}

// newState is NewState with the object's metadata: its annotations say which mirror is
// meshroll's.
func newState(meta metav1.ObjectMeta, spec []byte, target Target) (*State, error) {
	namespace, name, resourceVersion := meta.Namespace, meta.Name, meta.ResourceVersion
	var hr gatewayv1.HTTPRouteSpec
	if err := json.Unmarshal(spec, &hr); err != nil {
		return nil, fmt.Errorf("failed to decode the spec of %s %s/%s: %w", Kind, namespace, name, err)
	}
	i, why, err := selectRule(&hr, target)
	if err != nil {
		return nil, err
	}
	s := &State{
		routing: traffic.Routing{
			Kind: Kind, Namespace: namespace, Name: name, ResourceVersion: resourceVersion,
			Route: ruleName(&hr, i), Chosen: why,
			Destinations: traffic.Shares(destinations(hr.Rules[i], target)),
		},
		ruleIndex:   i,
		abIndex:     -1,
		target:      target,
		spec:        &hr,
		raw:         spec,
		annotations: meta.Annotations,
	}
	for j, r := range hr.Rules {
		if r.Name != nil && string(*r.Name) == target.abRuleName() {
			s.abIndex, s.routing.ABRoute = j, string(*r.Name)
		}
	}
	if f := s.ownMirror(); f >= 0 {
		s.routing.MirrorPercent = mirrorPercent(hr.Rules[i].Filters[f].RequestMirror)
	}
	s.routing.Elsewhere = s.elsewhere()
	if err := s.checkRule(); err != nil {
		return nil, err
	}
	return s, nil
}

// Routing is what the steered rule does now.
func (s *State) Routing() traffic.Routing {
	r := s.routing
	r.Destinations = append([]traffic.Destination(nil), r.Destinations...)
	return r
}

// where names the steered rule in messages.
func (s *State) where() string {
	return fmt.Sprintf("rule %s of %s", s.routing.Route, s.routing.Object())
}

// Services are the Services of the stable and canary backends the rule names or will name.
func (s *State) Services() []string {
	return []string{s.target.label(s.target.service(traffic.RoleStable)), s.target.label(s.target.service(traffic.RoleCanary))}
}

// selectRule is the route choice of DESIGN.md for HTTPRoute rules: the named rule (by name,
// or rules[N]); else, among the rules with a backendRef to the stable or canary Service, the
// only catch-all one (no match conditions but the default path prefix /); else the only such
// rule at all. Gateway API picks a request's rule by match specificity, not order, so a rule
// with conditions beside a catch-all is steered only when named.
func selectRule(spec *gatewayv1.HTTPRouteSpec, t Target) (i int, why string, err error) {
	obj := fmt.Sprintf("%s %s/%s", Kind, t.Namespace, t.HTTPRoute)
	if t.Rule != "" {
		return namedRule(spec, t, obj)
	}
	var candidates, catchAll []int
	for i, r := range spec.Rules {
		if managed(r) {
			continue // meshroll's own A/B rules are never the steered rule
		}
		for _, b := range r.BackendRefs {
			if role := roleOf(b, t); role != traffic.RoleOther {
				candidates = append(candidates, i)
				if catchAllRule(r) {
					catchAll = append(catchAll, i)
				}
				break
			}
		}
	}
	names := make([]string, 0, len(candidates))
	for _, i := range candidates {
		names = append(names, ruleName(spec, i))
	}
	switch {
	case len(candidates) == 0:
		return 0, "", traffic.Preflightf(traffic.ErrRouteNotFound, "%s has no rule with a backendRef to Service %s or %s: check MESHROLL_STABLE_SERVICE and MESHROLL_CANARY_SERVICE",
			obj, t.label(t.service(traffic.RoleStable)), t.label(t.service(traffic.RoleCanary)))
	case len(catchAll) == 1:
		return catchAll[0], "", nil
	case len(candidates) == 1:
		return candidates[0], fmt.Sprintf("rule %s has match conditions but is the only rule reaching the stable or canary Service, so it is the one steered (only the traffic it matches moves)", names[0]), nil
	case len(catchAll) == 0:
		return 0, "", traffic.Preflightf(traffic.ErrAmbiguousRoute, "%s reaches the stable or canary Service only through several rules with match conditions (%s): name the one to steer in MESHROLL_ROUTE (its name, or rules[N] for the N-th rule, counting from 0)", obj, strings.Join(names, ", "))
	}
	return 0, "", traffic.Preflightf(traffic.ErrAmbiguousRoute, "%s has several catch-all rules that reach the stable or canary Service (%s): name the one to steer in MESHROLL_ROUTE", obj, strings.Join(names, ", "))
}

// namedRule finds MESHROLL_ROUTE: a rule of that name, else, for rules[N], the N-th rule.
// meshroll's own rules are never named and not counted, so rules[N] means the same rule
// while an A/B rule is in place as before.
func namedRule(spec *gatewayv1.HTTPRouteSpec, t Target, obj string) (int, string, error) {
	names := make([]string, 0, len(spec.Rules))
	var user []int // indices of the rules that are not meshroll's
	for i, r := range spec.Rules {
		if managed(r) {
			continue
		}
		if r.Name != nil && string(*r.Name) == t.Rule {
			return i, "", nil // the API server keeps rule names unique
		}
		user = append(user, i)
		names = append(names, ruleName(spec, i))
	}
	var n int
	if _, err := fmt.Sscanf(t.Rule, "rules[%d]", &n); err == nil && fmt.Sprintf("rules[%d]", n) == t.Rule && n >= 0 && n < len(user) {
		return user[n], "", nil
	}
	return 0, "", traffic.Preflightf(traffic.ErrRouteNotFound, "MESHROLL_ROUTE=%q: %s has no rule of that name (it has: %s); set MESHROLL_ROUTE to one of them (rules[N] for the N-th, counting from 0) or leave it empty",
		t.Rule, obj, strings.Join(names, ", "))
}

// catchAllRule says whether a rule matches every request: no matches, or the API server's
// default of one match on the path prefix / and nothing else.
func catchAllRule(r gatewayv1.HTTPRouteRule) bool {
	switch len(r.Matches) {
	case 0:
		return true
	case 1:
		m := r.Matches[0]
		prefix := m.Path == nil || (m.Path.Type == nil || *m.Path.Type == gatewayv1.PathMatchPathPrefix) && (m.Path.Value == nil || *m.Path.Value == "/")
		return prefix && len(m.Headers) == 0 && len(m.QueryParams) == 0 && m.Method == nil
	}
	return false
}

// managed says whether a rule is one meshroll inserted.
func managed(r gatewayv1.HTTPRouteRule) bool {
	return r.Name != nil && strings.HasPrefix(string(*r.Name), abRulePrefix)
}

// ruleName names rule i: its name, else rules[N] with N its index among the rules that are
// not meshroll's (the index in the user's own manifest).
func ruleName(spec *gatewayv1.HTTPRouteSpec, i int) string {
	if n := spec.Rules[i].Name; n != nil && *n != "" {
		return string(*n)
	}
	n := 0
	for _, r := range spec.Rules[:i] {
		if !managed(r) {
			n++
		}
	}
	return fmt.Sprintf("rules[%d]", n)
}

// serviceOf is the Service a backendRef names, ok false when it names another kind.
func serviceOf(b gatewayv1.HTTPBackendRef, ns string) (service, bool) {
	ref := b.BackendObjectReference
	if ref.Group != nil && *ref.Group != "" || ref.Kind != nil && *ref.Kind != "Service" {
		return service{}, false
	}
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	return service{ns, string(ref.Name)}, true
}

func roleOf(b gatewayv1.HTTPBackendRef, t Target) traffic.Role {
	svc, ok := serviceOf(b, t.Namespace)
	switch {
	case !ok:
		return traffic.RoleOther
	case svc == t.service(traffic.RoleStable):
		return traffic.RoleStable
	case svc == t.service(traffic.RoleCanary):
		return traffic.RoleCanary
	}
	return traffic.RoleOther
}

// weightOf is a backendRef's weight as it takes effect: 1 when unset.
func weightOf(b gatewayv1.HTTPBackendRef) int {
	if b.Weight == nil {
		return 1
	}
	return int(*b.Weight)
}

// destinations lists a rule's backends with their weights.
func destinations(r gatewayv1.HTTPRouteRule, t Target) []traffic.Destination {
	out := make([]traffic.Destination, 0, len(r.BackendRefs))
	for _, b := range r.BackendRefs {
		d := traffic.Destination{Role: roleOf(b, t), Raw: weightOf(b), Host: string(b.Name)}
		if svc, ok := serviceOf(b, t.Namespace); ok {
			d.Host = t.label(svc)
		} else if b.Kind != nil {
			d.Host = string(*b.Kind) + " " + string(b.Name)
		}
		if b.Port != nil {
			d.Port = uint32(*b.Port)
		}
		out = append(out, d)
	}
	return out
}

// index returns the position of the rule's backend with role r, or -1.
func (s *State) index(r traffic.Role) int {
	for i, d := range s.routing.Destinations {
		if d.Role == r {
			return i
		}
	}
	return -1
}

// pruned says whether the rule is one a promotion with MESHROLL_PRUNE left: marked so, and the
// canary alone at 100.
func (s *State) pruned() bool {
	return s.annotations[traffic.PrunedAnnotation] == s.routing.Route && traffic.Pruned(s.routing.Destinations)
}

// checkRule rejects a rule meshroll cannot steer safely.
func (s *State) checkRule() error {
	count := map[traffic.Role]int{}
	for _, d := range s.routing.Destinations {
		count[d.Role]++
	}
	t := s.target
	switch {
	case count[traffic.RoleStable] == 0 && !s.pruned():
		return traffic.Preflightf(traffic.ErrSubsetNotInRoute, "%s has no backendRef to the stable Service %s: check MESHROLL_STABLE_SERVICE or add that backendRef", s.where(), t.label(t.service(traffic.RoleStable)))
	case count[traffic.RoleStable] > 1:
		return traffic.Preflightf(traffic.ErrAmbiguousRoute, "%s has %d backendRefs to the stable Service %s: meshroll steers rules with one", s.where(), count[traffic.RoleStable], t.label(t.service(traffic.RoleStable)))
	case count[traffic.RoleCanary] > 1:
		return traffic.Preflightf(traffic.ErrAmbiguousRoute, "%s has %d backendRefs to the canary Service %s: meshroll steers rules with one", s.where(), count[traffic.RoleCanary], t.label(t.service(traffic.RoleCanary)))
	}
	return nil
}

// elsewhere lists, for the stable and the canary role, the other rules that send that
// Service traffic (a backendRef with weight, or a RequestMirror filter).
func (s *State) elsewhere() map[traffic.Role][]string {
	out := map[traffic.Role][]string{}
	add := func(r traffic.Role, what string) {
		for _, w := range out[r] {
			if w == what {
				return
			}
		}
		out[r] = append(out[r], what)
	}
	own := s.ownMirror()
	for i, rule := range s.spec.Rules {
		if i == s.abIndex {
			continue // reported as Routing.ABRoute
		}
		name := "rule " + ruleName(s.spec, i)
		for _, b := range rule.BackendRefs {
			if r := roleOf(b, s.target); r != traffic.RoleOther && i != s.ruleIndex && weightOf(b) > 0 {
				add(r, name)
			}
		}
		for j, f := range rule.Filters {
			if f.RequestMirror == nil || i == s.ruleIndex && j == own {
				continue
			}
			b := gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: f.RequestMirror.BackendRef}}
			if r := roleOf(b, s.target); r != traffic.RoleOther {
				add(r, name+" (a mirror)")
			}
		}
	}
	return out
}
