// Package istio steers an Istio VirtualService: it reads the object into meshroll's
// backend-neutral model (internal/traffic), plans each change as a pure function of what it
// read, and writes it as one JSON patch guarded by test operations and the resourceVersion.
// What it does in the cluster around the VirtualService, as every backend does (the write's
// retries, Events, the Deployment and Service checks), is internal/traffic/cluster's.
package istio

import (
	"encoding/json"
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/traffic"
	"github.com/meshroll/meshroll/internal/traffic/cluster"
)

// Kind is the routing object this backend steers.
const Kind = "VirtualService"

// Target names the VirtualService route that meshroll steers and the stable and canary
// destinations it moves traffic between: each is named by its DestinationRule subset, its
// Service (the destination's host, short or fully qualified), or both.
type Target struct {
	Namespace      string
	VirtualService string
	Route          string // name of the HTTP route; "" lets selectRoute choose
	StableSubset   string
	CanarySubset   string
	StableService  string // "" when the subset alone names the stable destination
	CanaryService  string
	// Match holds the conditions of the A/B route (MESHROLL_MATCH): Istio HTTPMatchRequests as
	// JSON objects, any of which selects a request. Empty: no A/B stage.
	Match []map[string]any
}

// abRoutePrefix starts the name of every route meshroll inserts.
const abRoutePrefix = "meshroll-ab-"

// abRouteName is the name of meshroll's A/B route for this canary, so that anyone reading the
// object sees who manages it, and a later run (a rollback after a runner died) finds it.
func (t Target) abRouteName() string {
	return abRoutePrefix + strings.NewReplacer("/", "-", ".", "-").Replace(t.side(traffic.RoleCanary).name())
}

// side is how one role's destination is named.
type side struct {
	subset, service   string
	subsetVar, svcVar string // the inputs that name it, for messages
}

func (t Target) side(r traffic.Role) side {
	if r == traffic.RoleCanary {
		return side{t.CanarySubset, t.CanaryService, "MESHROLL_CANARY_SUBSET", "MESHROLL_CANARY_SERVICE"}
	}
	return side{t.StableSubset, t.StableService, "MESHROLL_STABLE_SUBSET", "MESHROLL_STABLE_SERVICE"}
}

// matches says whether d is this side's destination: the same subset and the same Service,
// where given. A host is resolved the way Istio resolves it: relative to the namespace ns.
func (s side) matches(d *networking.Destination, ns string) bool {
	switch {
	case d == nil || s.subset == "" && s.service == "":
		return false
	case s.subset != "" && d.Subset != s.subset:
		return false
	case s.service != "" && cluster.ServiceKey(d.Host, ns) != cluster.ServiceKey(s.service, ns):
		return false
	}
	return true
}

// name is the side's subset, else its Service.
func (s side) name() string {
	if s.subset != "" {
		return s.subset
	}
	return s.service
}

// String names the side in messages: subset "v1", Service "app-stable", or both.
func (s side) String() string {
	var parts []string
	if s.service != "" {
		parts = append(parts, fmt.Sprintf("Service %q", s.service))
	}
	if s.subset != "" {
		parts = append(parts, fmt.Sprintf("subset %q", s.subset))
	}
	return strings.Join(parts, " ")
}

// vars lists the inputs that name the side.
func (s side) vars() []string {
	var vs []string
	if s.service != "" {
		vs = append(vs, s.svcVar)
	}
	if s.subset != "" {
		vs = append(vs, s.subsetVar)
	}
	return vs
}

// check names the inputs to check when no destination matched.
func (t Target) check() string {
	return strings.Join(append(t.side(traffic.RoleStable).vars(), t.side(traffic.RoleCanary).vars()...), " and ")
}

// State is a VirtualService as it was read, with the route meshroll steers resolved. It
// implements traffic.State.
type State struct {
	routing    traffic.Routing
	routeIndex int // of the steered route in spec.http
	abIndex    int // of meshroll's A/B route, -1 when there is none
	target     Target
	spec       *networking.VirtualService // decoded, for planning
	raw        []byte                     // the spec as read: planned patches apply to it
	// annotations of the object as read: mirrorAnnotation marks meshroll's mirror.
	annotations map[string]string
}

var _ traffic.State = (*State)(nil)

// NewState resolves the steered route of a VirtualService from its spec as JSON. Planning
// works on that JSON, so that fields this build of the Istio API does not know survive a
// copied route as well as a patch.
func NewState(namespace, name, resourceVersion string, spec []byte, target Target) (*State, error) {
	return newState(metav1.ObjectMeta{Namespace: namespace, Name: name, ResourceVersion: resourceVersion}, spec, target)
}

// newState is NewState with the object's metadata: its annotations say which mirror is
// meshroll's.
func newState(meta metav1.ObjectMeta, spec []byte, target Target) (*State, error) {
	namespace, name, resourceVersion := meta.Namespace, meta.Name, meta.ResourceVersion
	var vs networking.VirtualService
	if err := json.Unmarshal(spec, &vs); err != nil {
		return nil, fmt.Errorf("failed to decode the spec of %s %s/%s: %w", Kind, namespace, name, err)
	}
	i, why, err := selectRoute(&vs, target)
	if err != nil {
		return nil, err
	}
	s := &State{
		routing: traffic.Routing{
			Kind: Kind, Namespace: namespace, Name: name, ResourceVersion: resourceVersion,
			Route:        routeName(&vs, i),
			Chosen:       why,
			Destinations: destinations(vs.Http[i], target),
		},
		routeIndex:  i,
		abIndex:     -1,
		target:      target,
		spec:        &vs,
		raw:         spec,
		annotations: meta.Annotations,
	}
	for j, r := range vs.Http {
		if r.Name == target.abRouteName() {
			s.abIndex = j
			s.routing.ABRoute = r.Name
		}
	}
	if s.ownsMirror() {
		s.routing.MirrorPercent = mirrorPercent(vs.Http[i])
	}
	s.routing.Elsewhere = s.elsewhere()
	if err := s.checkRoute(); err != nil {
		return nil, err
	}
	return s, nil
}

// Routing is what the steered route does now.
func (s *State) Routing() traffic.Routing {
	r := s.routing
	r.Destinations = append([]traffic.Destination(nil), r.Destinations...)
	return r
}

// Hosts lists the distinct hosts of the stable and canary destinations.
func (s *State) Hosts() []string {
	var hosts []string
	for _, d := range s.routing.Destinations {
		if d.Role != traffic.RoleOther && !contains(hosts, d.Host) {
			hosts = append(hosts, d.Host)
		}
	}
	return hosts
}

// where names the steered route in messages.
func (s *State) where() string {
	return fmt.Sprintf("route %s of %s", s.routing.Route, s.routing.Object())
}

// selectRoute implements the route choice of DESIGN.md: the named route (by name, or http[N]
// for an unnamed one); else, among the routes sending traffic to the stable or canary
// destination, the only one without match conditions; else the only such route at all, even
// with match conditions. why says how the route was chosen when that is worth a log line.
func selectRoute(spec *networking.VirtualService, t Target) (i int, why string, err error) {
	if t.Route != "" {
		return namedRoute(spec, t)
	}
	var candidates, catchAll []int
	for i, r := range spec.Http {
		if managed(r) {
			continue // meshroll's own A/B routes are never the steered route
		}
		for _, d := range r.Route {
			if role := roleOf(d, t); role == traffic.RoleStable || role == traffic.RoleCanary {
				candidates = append(candidates, i)
				if len(r.Match) == 0 {
					catchAll = append(catchAll, i)
				}
				break
			}
		}
	}
	switch {
	case len(spec.Http) == 0:
		return 0, "", traffic.Preflightf(traffic.ErrRouteNotFound, "VirtualService %s/%s has no HTTP route (it routes only TCP or TLS traffic, which meshroll does not steer): point MESHROLL_VIRTUAL_SERVICE at the VirtualService of the HTTP service", t.Namespace, t.VirtualService)
	case len(candidates) == 0:
		return 0, "", traffic.Preflightf(traffic.ErrRouteNotFound, "VirtualService %s/%s has no HTTP route with a destination of %s or %s: check %s", t.Namespace, t.VirtualService, t.side(traffic.RoleStable), t.side(traffic.RoleCanary), t.check())
	case len(catchAll) == 1:
		return catchAll[0], "", nil
	case len(candidates) == 1:
		i := candidates[0]
		return i, fmt.Sprintf("route %s has match conditions but is the only route reaching %s or %s, so it is the one steered (only the traffic it matches moves)", routeName(spec, i), t.side(traffic.RoleStable), t.side(traffic.RoleCanary)), nil
	}
	names := make([]string, 0, len(candidates))
	for _, i := range candidates {
		names = append(names, routeName(spec, i))
	}
	if len(catchAll) == 0 {
		// A route with match conditions may pin testers or a region to one version: among
		// several, one is steered only when the user names it.
		return 0, "", traffic.Preflightf(traffic.ErrAmbiguousRoute, "VirtualService %s/%s reaches %s or %s only through several routes with match conditions (%s): name the one to steer in MESHROLL_ROUTE (its name, or http[N] for the N-th route, counting from 0)", t.Namespace, t.VirtualService, t.side(traffic.RoleStable), t.side(traffic.RoleCanary), strings.Join(names, ", "))
	}
	return 0, "", traffic.Preflightf(traffic.ErrAmbiguousRoute, "VirtualService %s/%s has several HTTP routes without match conditions that reach %s or %s (%s): name the one to steer in MESHROLL_ROUTE", t.Namespace, t.VirtualService, t.side(traffic.RoleStable), t.side(traffic.RoleCanary), strings.Join(names, ", "))
}

// namedRoute finds MESHROLL_ROUTE: a route of that name, else, for http[N], the N-th route.
// meshroll's own routes are never named and not counted, so http[N] means the same route
// while an A/B route is in place as before.
func namedRoute(spec *networking.VirtualService, t Target) (int, string, error) {
	found, names := -1, []string{}
	var user []int // indices of the routes that are not meshroll's
	for i, r := range spec.Http {
		if managed(r) {
			continue
		}
		user = append(user, i)
		if r.Name == t.Route {
			if found >= 0 {
				return 0, "", traffic.Preflightf(traffic.ErrAmbiguousRoute, "VirtualService %s/%s has more than one HTTP route named %q: give them distinct names", t.Namespace, t.VirtualService, t.Route)
			}
			found = i
		}
		names = append(names, routeName(spec, i))
	}
	if found >= 0 {
		return found, "", nil
	}
	var n int
	if _, err := fmt.Sscanf(t.Route, "http[%d]", &n); err == nil && fmt.Sprintf("http[%d]", n) == t.Route && n >= 0 && n < len(user) {
		return user[n], "", nil
	}
	return 0, "", traffic.Preflightf(traffic.ErrRouteNotFound, "MESHROLL_ROUTE=%q: VirtualService %s/%s has no HTTP route of that name (it has: %s); set MESHROLL_ROUTE to one of them (http[N] for the N-th, counting from 0) or leave it empty", t.Route, t.Namespace, t.VirtualService, listOrNone(names))
}

// managed says whether a route is one meshroll inserted.
func managed(r *networking.HTTPRoute) bool { return strings.HasPrefix(r.Name, abRoutePrefix) }

// routeName names route i: its name, else http[N] with N its index among the routes that are
// not meshroll's (the index in the user's own manifest).
func routeName(spec *networking.VirtualService, i int) string {
	if r := spec.Http[i]; r.Name != "" {
		return r.Name
	}
	n := 0
	for _, r := range spec.Http[:i] {
		if !managed(r) {
			n++
		}
	}
	return fmt.Sprintf("http[%d]", n)
}

func roleOf(d *networking.HTTPRouteDestination, t Target) traffic.Role {
	switch {
	case t.side(traffic.RoleStable).matches(d.Destination, t.Namespace):
		return traffic.RoleStable
	case t.side(traffic.RoleCanary).matches(d.Destination, t.Namespace):
		return traffic.RoleCanary
	}
	return traffic.RoleOther
}

// destinations lists a route's destinations with effective weights: a lone destination
// receives all traffic (Istio routes to it directly and ignores its weight).
func destinations(r *networking.HTTPRoute, t Target) []traffic.Destination {
	out := make([]traffic.Destination, 0, len(r.Route))
	for _, rd := range r.Route {
		d := traffic.Destination{Role: roleOf(rd, t), Weight: int(rd.Weight)}
		if rd.Destination != nil {
			d.Host, d.Subset = rd.Destination.Host, rd.Destination.Subset
			if rd.Destination.Port != nil {
				d.Port = rd.Destination.Port.Number
			}
		}
		if len(r.Route) == 1 {
			d.Weight = 100 // a lone destination takes all traffic, whatever its weight says
		}
		out = append(out, d)
	}
	return out
}

// index returns the position of the route's destination with role r, or -1.
func (s *State) index(r traffic.Role) int {
	for i, d := range s.routing.Destinations {
		if d.Role == r {
			return i
		}
	}
	return -1
}

// pruned says whether the route is one a promotion with MESHROLL_PRUNE left: marked so, and
// the canary alone at 100.
func (s *State) pruned() bool {
	return s.annotations[traffic.PrunedAnnotation] == s.routing.Route && traffic.Pruned(s.routing.Destinations)
}

// checkRoute rejects a route meshroll cannot steer safely.
func (s *State) checkRoute() error {
	count := map[traffic.Role]int{}
	for _, d := range s.routing.Destinations {
		count[d.Role]++
	}
	where := s.where()
	switch {
	case count[traffic.RoleStable] == 0 && !s.pruned():
		st := s.target.side(traffic.RoleStable)
		return traffic.Preflightf(traffic.ErrSubsetNotInRoute, "%s has no destination with the stable %s: check %s or add that destination", where, st, strings.Join(st.vars(), " and "))
	case count[traffic.RoleStable] > 1:
		return traffic.Preflightf(traffic.ErrAmbiguousRoute, "%s has %d destinations with the stable %s: meshroll steers routes with one", where, count[traffic.RoleStable], s.target.side(traffic.RoleStable))
	case count[traffic.RoleCanary] > 1:
		return traffic.Preflightf(traffic.ErrAmbiguousRoute, "%s has %d destinations with the canary %s: meshroll steers routes with one", where, count[traffic.RoleCanary], s.target.side(traffic.RoleCanary))
	}
	others := 0
	for _, d := range s.routing.Destinations {
		if d.Weight < 0 || d.Weight > 100 {
			return traffic.Preflightf(traffic.ErrInvalidWeights, "%s gives destination %s the weight %d: fix it to 0–100 before a rollout", where, d.Label(), d.Weight)
		}
		if d.Role == traffic.RoleOther {
			others += d.Weight
		}
	}
	if others > 100 {
		return traffic.Preflightf(traffic.ErrInvalidWeights, "%s gives its other destinations %d in all, more than 100: fix its weights before a rollout", where, others)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
