package traffic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1"
)

// Target names the VirtualService route that meshroll steers and the two subsets it moves
// traffic between.
type Target struct {
	Namespace      string
	VirtualService string
	Route          string // name of the HTTP route; "" lets selectRoute choose
	StableSubset   string
	CanarySubset   string
}

// Role says what a destination of the steered route is to meshroll.
type Role string

const (
	RoleStable Role = "stable"
	RoleCanary Role = "canary"
	RoleOther  Role = "other" // neither subset: keeps its weight
)

// Destination is one destination of the steered route with its effective weight.
type Destination struct {
	Host   string `json:"host"`
	Subset string `json:"subset,omitempty"`
	Port   uint32 `json:"port,omitempty"`
	Role   Role   `json:"role"`
	Weight int    `json:"weight"`
}

// State is a VirtualService as it was read, with the route meshroll steers resolved.
type State struct {
	Namespace       string
	Name            string
	ResourceVersion string
	RouteIndex      int
	Route           string // the route's name, or http[i] when it has none
	Destinations    []Destination

	target Target
	spec   *networking.VirtualService // private copy; never shared with the caller
}

// Change is the plan for one weight change: the route before and after, and the JSON patch
// operations that make it (weights and an appended canary destination only).
type Change struct {
	Route   string        `json:"route"`
	Before  []Destination `json:"before"`
	After   []Destination `json:"after"`
	Changed bool          `json:"changed"`
	Patch   []PatchOp     `json:"patch,omitempty"`
	// Next is the state the VirtualService is in once the patch is applied.
	Next State `json:"-"`
}

// PatchOp is one RFC 6902 JSON patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// NewState resolves the steered route of a VirtualService spec. spec is copied.
func NewState(namespace, name, resourceVersion string, spec *networking.VirtualService, target Target) (State, error) {
	spec = spec.DeepCopy()
	i, err := selectRoute(spec, target)
	if err != nil {
		return State{}, err
	}
	s := State{
		Namespace:       namespace,
		Name:            name,
		ResourceVersion: resourceVersion,
		RouteIndex:      i,
		Route:           routeName(spec.Http[i], i),
		target:          target,
		spec:            spec,
	}
	s.Destinations = destinations(spec.Http[i], target)
	if err := s.checkRoute(); err != nil {
		return State{}, err
	}
	return s, nil
}

// CanaryWeight is the weight of the canary destination, 0 when the route has none.
func (s State) CanaryWeight() int {
	for _, d := range s.Destinations {
		if d.Role == RoleCanary {
			return d.Weight
		}
	}
	return 0
}

// Stable returns the stable destination (checkRoute guarantees there is exactly one).
func (s State) Stable() Destination {
	for _, d := range s.Destinations {
		if d.Role == RoleStable {
			return d
		}
	}
	return Destination{}
}

// Hosts lists the distinct hosts of the stable and canary destinations.
func (s State) Hosts() []string {
	var hosts []string
	for _, d := range s.Destinations {
		if d.Role != RoleOther && !contains(hosts, d.Host) {
			hosts = append(hosts, d.Host)
		}
	}
	return hosts
}

// Plan computes the change that gives the canary destination canaryWeight: every other
// destination keeps its weight and the stable destination takes the rest. It is pure.
func (s State) Plan(canaryWeight int) (Change, error) {
	if canaryWeight < 0 || canaryWeight > 100 {
		return Change{}, preflightf(ErrWeightTooLarge, "canary weight %d is outside 0–100", canaryWeight)
	}
	others, otherNames := 0, []string{}
	for _, d := range s.Destinations {
		if d.Role == RoleOther {
			others += d.Weight
			otherNames = append(otherNames, fmt.Sprintf("%s %d", d.label(), d.Weight))
		}
	}
	if left := 100 - others; canaryWeight > left {
		return Change{}, preflightf(ErrWeightTooLarge,
			"canary weight %d is more than the %d left on route %s of VirtualService %s/%s after its other destinations (%s): lower the canary weight or move those destinations' weight away",
			canaryWeight, left, s.Route, s.Namespace, s.Name, strings.Join(otherNames, ", "))
	}

	next := s.spec.DeepCopy()
	route := next.Http[s.RouteIndex]
	base := fmt.Sprintf("/spec/http/%d/route", s.RouteIndex)
	var ops []PatchOp
	appendCanary := s.index(RoleCanary) < 0 && canaryWeight > 0
	for j, rd := range route.Route {
		want := s.Destinations[j].Weight
		switch s.Destinations[j].Role {
		case RoleStable:
			want = 100 - others - canaryWeight
		case RoleCanary:
			want = canaryWeight
		}
		// Compare with the weight that takes effect: a lone destination without a weight gets
		// all traffic, until the appended canary makes it one of two.
		current := s.Destinations[j].Weight
		if appendCanary {
			current = int(rd.Weight)
		}
		if current != want {
			// "add" sets a member whether or not it exists: an absent weight is added.
			ops = append(ops, PatchOp{Op: "add", Path: fmt.Sprintf("%s/%d/weight", base, j), Value: want})
			rd.Weight = int32(want)
		}
	}
	if appendCanary {
		stable := route.Route[s.index(RoleStable)]
		appended := &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: stable.Destination.Host, Subset: s.target.CanarySubset},
			Weight:      int32(canaryWeight),
		}
		value := map[string]any{
			"destination": map[string]any{"host": stable.Destination.Host, "subset": s.target.CanarySubset},
			"weight":      canaryWeight,
		}
		if p := stable.Destination.Port; p != nil {
			appended.Destination.Port = &networking.PortSelector{Number: p.Number}
			value["destination"].(map[string]any)["port"] = map[string]any{"number": p.Number}
		}
		route.Route = append(route.Route, appended)
		ops = append(ops, PatchOp{Op: "add", Path: base + "/-", Value: value})
	}

	nextState := s
	nextState.spec = next
	nextState.Destinations = destinations(route, s.target)
	if err := nextState.checkWeights(); err != nil {
		// Unreachable by construction; kept as the last guard before anything is written.
		return Change{}, fmt.Errorf("internal error: planned route %s is invalid: %w", s.Route, err)
	}
	return Change{
		Route:   s.Route,
		Before:  s.Destinations,
		After:   nextState.Destinations,
		Changed: len(ops) > 0,
		Patch:   ops,
		Next:    nextState,
	}, nil
}

// PatchJSON is the patch sent to the API server: the change's operations behind a
// precondition on the resourceVersion that was read, so that the write fails with a
// conflict if anyone changed the object in between.
func (c Change) PatchJSON(resourceVersion string) ([]byte, error) {
	ops := append([]PatchOp{{Op: "replace", Path: "/metadata/resourceVersion", Value: resourceVersion}}, c.Patch...)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the patch is printed in dry runs: keep it readable
	if err := enc.Encode(ops); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Describe renders the change for a log line: "v1 90 → 75, v2 10 → 25".
func (c Change) Describe() string {
	parts := make([]string, 0, len(c.After))
	for i, d := range c.After {
		before := "–"
		if i < len(c.Before) {
			before = fmt.Sprint(c.Before[i].Weight)
		}
		parts = append(parts, fmt.Sprintf("%s %s → %d", d.label(), before, d.Weight))
	}
	return strings.Join(parts, ", ")
}

// DescribeWeights renders destinations for a log line: "v1 75, v2 25".
func DescribeWeights(ds []Destination) string {
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%s %d", d.label(), d.Weight))
	}
	return strings.Join(parts, ", ")
}

func (d Destination) label() string {
	if d.Subset != "" {
		return d.Subset
	}
	return d.Host
}

// selectRoute implements the route choice of DESIGN.md: the named route; else, among the
// routes sending traffic to the stable or canary subset, the only one without match conditions.
func selectRoute(spec *networking.VirtualService, t Target) (int, error) {
	if t.Route != "" {
		found, names := -1, []string{}
		for i, r := range spec.Http {
			if r.Name == t.Route {
				if found >= 0 {
					return 0, preflightf(ErrAmbiguousRoute, "VirtualService %s/%s has more than one HTTP route named %q: give them distinct names", t.Namespace, t.VirtualService, t.Route)
				}
				found = i
			}
			names = append(names, routeName(r, i))
		}
		if found < 0 {
			return 0, preflightf(ErrRouteNotFound, "MESHROLL_ROUTE=%q: VirtualService %s/%s has no HTTP route of that name (it has: %s); set MESHROLL_ROUTE to one of them or leave it empty", t.Route, t.Namespace, t.VirtualService, listOrNone(names))
		}
		return found, nil
	}
	var candidates, catchAll []int
	for i, r := range spec.Http {
		for _, d := range r.Route {
			if role := roleOf(d, t); role == RoleStable || role == RoleCanary {
				candidates = append(candidates, i)
				if len(r.Match) == 0 {
					catchAll = append(catchAll, i)
				}
				break
			}
		}
	}
	switch {
	case len(candidates) == 0:
		return 0, preflightf(ErrRouteNotFound, "VirtualService %s/%s has no HTTP route with a destination of subset %q or %q: check MESHROLL_STABLE_SUBSET and MESHROLL_CANARY_SUBSET", t.Namespace, t.VirtualService, t.StableSubset, t.CanarySubset)
	case len(catchAll) == 1:
		return catchAll[0], nil
	}
	names := make([]string, 0, len(candidates))
	for _, i := range candidates {
		names = append(names, routeName(spec.Http[i], i))
	}
	if len(catchAll) == 0 {
		// A route with match conditions may pin testers or a region to one version: it is
		// steered only when the user names it.
		return 0, preflightf(ErrAmbiguousRoute, "VirtualService %s/%s reaches subset %q or %q only through routes with match conditions (%s), which meshroll changes only when named: set MESHROLL_ROUTE (give the route a name in the VirtualService if it has none)", t.Namespace, t.VirtualService, t.StableSubset, t.CanarySubset, strings.Join(names, ", "))
	}
	return 0, preflightf(ErrAmbiguousRoute, "VirtualService %s/%s has several HTTP routes without match conditions that reach subset %q or %q (%s): name the one to steer in MESHROLL_ROUTE", t.Namespace, t.VirtualService, t.StableSubset, t.CanarySubset, strings.Join(names, ", "))
}

func routeName(r *networking.HTTPRoute, i int) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("http[%d]", i)
}

func roleOf(d *networking.HTTPRouteDestination, t Target) Role {
	if d.Destination == nil {
		return RoleOther
	}
	switch d.Destination.Subset {
	case t.StableSubset:
		return RoleStable
	case t.CanarySubset:
		return RoleCanary
	}
	return RoleOther
}

// destinations lists a route's destinations with effective weights: a lone destination
// without a weight receives all traffic.
func destinations(r *networking.HTTPRoute, t Target) []Destination {
	out := make([]Destination, 0, len(r.Route))
	for _, rd := range r.Route {
		d := Destination{Role: roleOf(rd, t), Weight: int(rd.Weight)}
		if rd.Destination != nil {
			d.Host, d.Subset = rd.Destination.Host, rd.Destination.Subset
			if rd.Destination.Port != nil {
				d.Port = rd.Destination.Port.Number
			}
		}
		if len(r.Route) == 1 && rd.Weight == 0 {
			d.Weight = 100
		}
		out = append(out, d)
	}
	return out
}

// index returns the position of the route's destination with role r, or -1.
func (s State) index(r Role) int {
	for i, d := range s.Destinations {
		if d.Role == r {
			return i
		}
	}
	return -1
}

// checkRoute rejects a route meshroll cannot steer safely.
func (s State) checkRoute() error {
	count := map[Role]int{}
	for _, d := range s.Destinations {
		count[d.Role]++
	}
	where := fmt.Sprintf("route %s of VirtualService %s/%s", s.Route, s.Namespace, s.Name)
	switch {
	case count[RoleStable] == 0:
		return preflightf(ErrSubsetNotInRoute, "%s has no destination with the stable subset %q: check MESHROLL_STABLE_SUBSET or add that destination", where, s.target.StableSubset)
	case count[RoleStable] > 1:
		return preflightf(ErrAmbiguousRoute, "%s has %d destinations with the stable subset %q: meshroll steers routes with one", where, count[RoleStable], s.target.StableSubset)
	case count[RoleCanary] > 1:
		return preflightf(ErrAmbiguousRoute, "%s has %d destinations with the canary subset %q: meshroll steers routes with one", where, count[RoleCanary], s.target.CanarySubset)
	}
	for _, d := range s.Destinations {
		if d.Weight < 0 || d.Weight > 100 {
			return preflightf(ErrInvalidWeights, "%s gives destination %s the weight %d: fix it to 0–100 before a rollout", where, d.label(), d.Weight)
		}
	}
	others := 0
	for _, d := range s.Destinations {
		if d.Role == RoleOther {
			others += d.Weight
		}
	}
	if others > 100 {
		return preflightf(ErrInvalidWeights, "%s gives its other destinations %d in all, more than 100: fix its weights before a rollout", where, others)
	}
	return nil
}

// checkWeights holds the invariant of every route meshroll writes.
func (s State) checkWeights() error {
	sum := 0
	for _, d := range s.Destinations {
		if d.Weight < 0 || d.Weight > 100 {
			return fmt.Errorf("destination %s has weight %d", d.label(), d.Weight)
		}
		sum += d.Weight
	}
	if sum != 100 {
		return fmt.Errorf("weights sum to %d, not 100", sum)
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
