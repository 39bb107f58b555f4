// Package traffic is meshroll's backend-neutral picture of traffic: the destinations of the
// route it steers and their weights, what a stage wants that route to do (Desired), and the
// change that gets it there (Change), planned as a pure function of what was read. Backends
// (internal/traffic/istio for VirtualServices, internal/traffic/gatewayapi for HTTPRoutes)
// read their routing object into a State and write a Change as one guarded JSON patch; what
// every backend does in the cluster around its routing object (the write's retries, Events,
// the Deployment, Service and permission checks) is internal/traffic/cluster's.
package traffic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// FieldManager is recorded in managedFields for every write meshroll makes.
const FieldManager = "meshroll"

// Role says what a destination of the steered route is to meshroll.
type Role string

const (
	RoleStable Role = "stable"
	RoleCanary Role = "canary"
	RoleOther  Role = "other" // neither stable nor canary: keeps its weight
)

// Destination is one destination of the steered route with its effective weight.
type Destination struct {
	Host   string `json:"host"`
	Subset string `json:"subset,omitempty"`
	Port   uint32 `json:"port,omitempty"`
	Role   Role   `json:"role"`
	// Weight is the destination's share of the route's traffic in percent: the weight itself
	// for Istio, whose weights are percentages.
	Weight int `json:"weight"`
	// Raw is the weight as a Gateway API backendRef has it, relative to the rule's other
	// weights (see Shares); 0 for Istio.
	Raw int `json:"raw,omitempty"`
}

// Routing is what the steered route does, as read or as planned: where it sends traffic.
type Routing struct {
	Kind            string `json:"kind"` // of the routing object, e.g. VirtualService
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	ResourceVersion string `json:"-"`
	Route           string `json:"route"` // the route's name, or http[i] when it has none
	// Chosen says why the route was chosen, when that is not obvious ("" otherwise).
	Chosen       string        `json:"-"`
	Destinations []Destination `json:"destinations"`
	// ABRoute is the name of meshroll's A/B route when one is in place, sending the requests
	// that match its conditions to the canary.
	ABRoute string `json:"abRoute,omitempty"`
	// MirrorPercent is the share of the route's requests mirrored to the canary, 0 for none.
	MirrorPercent float64 `json:"mirrorPercent,omitempty"`
	// Elsewhere names, for the stable and the canary role, the routes of the object other
	// than the steered one (and meshroll's A/B route) that send that version traffic: a
	// destination with weight, or a mirror, the user's own mirror on the steered route
	// included. A version has no traffic only when the steered route gives it none and this
	// lists no route for it.
	Elsewhere map[Role][]string `json:"-"`
}

// Object names the routing object for messages: "VirtualService prod/reviews".
func (r Routing) Object() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// RouteWord is what the routing object calls the route meshroll steers: an HTTPRoute has
// rules, a VirtualService routes.
func RouteWord(kind string) string {
	if kind == "HTTPRoute" {
		return "rule"
	}
	return "route"
}

// CanaryWeight is the weight of the canary destination, 0 when the route has none.
func (r Routing) CanaryWeight() int {
	for _, d := range r.Destinations {
		if d.Role == RoleCanary {
			return d.Weight
		}
	}
	return 0
}

// Desired is what a stage wants the steered route to do.
type Desired struct {
	CanaryWeight int  `json:"canaryWeight"`
	KeepWeights  bool `json:"keepWeights,omitempty"` // leave the weights as they are
	// Prune, with a CanaryWeight of 100, removes from the route the destinations left with
	// weight 0 (the old stable version, older versions): MESHROLL_PRUNE after a promotion.
	Prune bool `json:"prune,omitempty"`
	// AB puts meshroll's A/B route in place (the backend knows its conditions); false removes
	// it.
	AB bool `json:"ab,omitempty"`
	// MirrorPercent mirrors that share of the route's requests to the canary (1–100); 0
	// removes meshroll's mirror.
	MirrorPercent float64 `json:"mirrorPercent,omitempty"`
	// Expect, when set, is what the route must still do before anything is written: what
	// this run left it doing. Anything else means another writer moved it, and planning
	// fails with ErrDrift rather than overwrite them.
	Expect *Routing `json:"-"`
	// Why is recorded, with the change, in the Event a write leaves on the routing object.
	Why Why `json:"-"`
}

// Pruned marks, for a promotion with Prune, the first n destinations of want (the planned
// destinations, those the route has first) left with weight 0 that are not the canary: they
// are removed from the route.
func (d Desired) Pruned(want []Destination, n int) map[int]bool {
	out := map[int]bool{}
	if !d.Prune || d.CanaryWeight != 100 {
		return out
	}
	for j := range min(n, len(want)) {
		if want[j].Role != RoleCanary && want[j].Weight == 0 {
			out[j] = true
		}
	}
	return out
}

// Pruned says whether a route is one a pruned promotion left: no stable destination, and the
// canary with all the traffic. Such a route can still be rolled back: the stable destination
// is appended again.
func Pruned(ds []Destination) bool {
	canary, stable := 0, 0
	for _, d := range ds {
		switch {
		case d.Role == RoleStable:
			stable++
		case d.Role == RoleCanary && d.Weight == 100:
			canary++
		}
	}
	return stable == 0 && canary == 1
}

// Why says, in an Event on the routing object, why a run changed it (or stopped).
type Why struct {
	// Reason is the Event's reason, one CamelCase word: Step, Promoted, RolledBack,
	// Interrupted... Empty means WeightsChanged.
	Reason string
	// Message follows the description of the change: the run's mode, stage and step, the
	// reason in words and the CI run's link.
	Message string
}

// ErrDrift marks a route that someone other than this run changed since the run last wrote
// it: the run stops without writing (it never fights another writer).
var ErrDrift = errors.New("the route was changed by someone else")

// Summary is what the run compares to tell that another writer moved the route: the
// weights, meshroll's A/B route and its mirror.
func (r Routing) Summary() string {
	s := DescribeWeights(r.Destinations)
	if r.ABRoute != "" {
		s += "; A/B route " + r.ABRoute
	}
	if r.MirrorPercent > 0 {
		s += fmt.Sprintf("; mirroring %g%% to the canary", r.MirrorPercent)
	}
	return s
}

// CheckDrift fails with ErrDrift when now is not what d expects, showing both.
func (d Desired) CheckDrift(now Routing) error {
	if d.Expect == nil || d.Expect.Summary() == now.Summary() {
		return nil
	}
	return fmt.Errorf("%w: %s now has %s, but this run left %s; stopping without writing so as not to undo that change (run again, or roll back, once it is settled)",
		ErrDrift, now.Object(), now.Summary(), d.Expect.Summary())
}

// State is a routing object as a backend read it, with the steered route resolved. Plan is
// pure: it computes the Change that makes the route do d, without touching the State.
type State interface {
	Routing() Routing
	Plan(d Desired) (Change, error)
}

// Change is the plan for one write: the route before and after, and the JSON patch
// operations that make it. Test operations pin what the change relies on.
type Change struct {
	Before  Routing   `json:"before"`
	After   Routing   `json:"after"`
	Changed bool      `json:"changed"`
	Patch   []PatchOp `json:"patch,omitempty"`
	// Next is the state the object is in once the patch is applied.
	Next State `json:"-"`
}

// Applied is the outcome of a guarded write.
type Applied struct {
	Change
	// ResourceVersion of the object after the write (or as read, when unchanged).
	ResourceVersion string
	// Conflicts counts writes that lost a race with another writer and were re-planned.
	Conflicts int
	// Warnings are problems that did not stop the change (e.g. the Event could not be recorded).
	Warnings []string
}

// Checks says what a backend's preflight verifies besides the routing object and its route.
type Checks struct {
	// Canary requires the canary destination to be defined too (a DestinationRule subset);
	// a rollback only needs the stable one, so that it works while the canary is broken.
	Canary bool
	// CanaryDeployment, when set, must become Available within ReadyTimeout, and its pods'
	// labels must match the canary subset.
	CanaryDeployment string
	// StableDeployment, when set, must be Available too (within ReadyTimeout), with pods the
	// stable subset selects, so that a rollback has somewhere to send the traffic.
	StableDeployment string
	ReadyTimeout     time.Duration
	// PollInterval of the Deployment wait (default 1s).
	PollInterval time.Duration
	// Write says the run will patch the routing object and record Events: the credentials
	// must allow that too.
	Write bool
	// StableServes and CanaryServes say that the run sends that version traffic: its
	// Deployment, when given, must then have ready pods (a Deployment scaled to 0 still
	// reports Available).
	StableServes, CanaryServes bool
}

// PatchOp is one RFC 6902 JSON patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"` // omitted only for remove (nil); a weight of 0 is kept
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

// Describe renders the change for a log line: "v1 90 → 75, v2 10 → 25", then what happened
// to meshroll's A/B route and mirror.
func (c Change) Describe() string {
	weights := DescribeChange(c.Before.Destinations, c.After.Destinations)
	if DescribeWeights(c.Before.Destinations) == DescribeWeights(c.After.Destinations) {
		weights = DescribeWeights(c.After.Destinations)
	}
	parts := []string{weights}
	switch b, a := c.Before.ABRoute, c.After.ABRoute; {
	case b == "" && a != "":
		parts = append(parts, "A/B route "+a+" inserted")
	case b != "" && a == "":
		parts = append(parts, "A/B route "+b+" removed")
	}
	switch b, a := c.Before.MirrorPercent, c.After.MirrorPercent; {
	case b == a:
	case a == 0:
		parts = append(parts, "mirror removed")
	default:
		parts = append(parts, fmt.Sprintf("mirroring %g%% to the canary", a))
	}
	return strings.Join(parts, "; ")
}

// DescribeChange renders weights before and after: "v1 90 → 75, v2 10 → 25"; a destination
// that was appended reads "v2 – → 10", one that was removed "v1 0 → removed". Relative
// weights that are not percentages read as the object has them, each new one with its share:
// "reviews-v1 1 → 80 (80%), reviews-v2 – → 20 (20%)".
func DescribeChange(before, after []Destination) string {
	rel := relative(before) || relative(after)
	weight := func(d Destination) int {
		if rel {
			return d.Raw
		}
		return d.Weight
	}
	parts := make([]string, 0, len(after))
	seen := map[Destination]bool{}
	for _, d := range after {
		was := "–"
		for _, b := range before {
			if b.same(d) && !seen[b] {
				was, seen[b] = fmt.Sprint(weight(b)), true
				break
			}
		}
		part := fmt.Sprintf("%s %s → %d", d.Label(), was, weight(d))
		if rel {
			part += fmt.Sprintf(" (%d%%)", d.Weight)
		}
		parts = append(parts, part)
	}
	for _, b := range before {
		if !seen[b] {
			parts = append(parts, fmt.Sprintf("%s %d → removed", b.Label(), weight(b)))
		}
	}
	return strings.Join(parts, ", ")
}

// relative says whether destinations have relative weights that are not percentages.
func relative(ds []Destination) bool {
	for _, d := range ds {
		if d.Raw != d.Weight && d.Raw > 0 {
			return true
		}
	}
	return false
}

// same says whether two destinations are one, whatever their weights.
func (d Destination) same(o Destination) bool {
	return d.Host == o.Host && d.Subset == o.Subset && d.Port == o.Port && d.Role == o.Role
}

// DescribeWeights renders destinations for a log line: "v1 75, v2 25"; relative weights that
// are not percentages with their shares: "reviews-v1 3 (75%), reviews-v2 1 (25%)".
func DescribeWeights(ds []Destination) string {
	rel := relative(ds)
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		if rel {
			parts = append(parts, fmt.Sprintf("%s %d (%d%%)", d.Label(), d.Raw, d.Weight))
		} else {
			parts = append(parts, fmt.Sprintf("%s %d", d.Label(), d.Weight))
		}
	}
	return strings.Join(parts, ", ")
}

// Label names a destination in messages: its subset, else its host.
func (d Destination) Label() string {
	if d.Subset != "" {
		return d.Subset
	}
	return d.Host
}

// SplitWeights gives the canary canaryWeight: every other destination keeps its weight and the
// stable destination takes the rest. where names the route in messages. It holds the
// invariant of every route meshroll writes: integer weights 0–100 that sum to 100.
func SplitWeights(ds []Destination, canaryWeight int, where string) ([]Destination, error) {
	if canaryWeight < 0 || canaryWeight > 100 {
		return nil, Preflightf(ErrWeightTooLarge, "canary weight %d is outside 0–100", canaryWeight)
	}
	others, otherNames := 0, []string{}
	for _, d := range ds {
		if d.Role == RoleOther {
			others += d.Weight
			otherNames = append(otherNames, fmt.Sprintf("%s %d", d.Label(), d.Weight))
		}
	}
	if left := 100 - others; canaryWeight > left {
		return nil, Preflightf(ErrWeightTooLarge,
			"canary weight %d is more than the %d left on %s after its other destinations (%s): lower the canary weight or move those destinations' weight away",
			canaryWeight, left, where, strings.Join(otherNames, ", "))
	}
	out := make([]Destination, len(ds))
	for i, d := range ds {
		switch d.Role {
		case RoleStable:
			d.Weight = 100 - others - canaryWeight
		case RoleCanary:
			d.Weight = canaryWeight
		}
		out[i] = d
	}
	if err := CheckWeights(out); err != nil {
		// Unreachable by construction; kept as the last guard before anything is written.
		return nil, fmt.Errorf("internal error: planned weights of %s are invalid: %v", where, err)
	}
	return out, nil
}

// CheckWeights holds the invariant of every route meshroll writes.
func CheckWeights(ds []Destination) error {
	sum := 0
	for _, d := range ds {
		if d.Weight < 0 || d.Weight > 100 {
			return fmt.Errorf("destination %s has weight %d", d.Label(), d.Weight)
		}
		sum += d.Weight
	}
	if sum != 100 {
		return fmt.Errorf("weights sum to %d, not 100", sum)
	}
	return nil
}
