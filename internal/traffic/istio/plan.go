package istio

import (
	"fmt"

	networking "istio.io/api/networking/v1"

	"github.com/meshroll/meshroll/internal/traffic"
)

// Plan computes the change that makes the steered route do d. It is pure: the State is not
// touched, and the returned Change's Next is the state after the patch. The patch pins what
// it relies on with test operations (the route's name, the host and subset of every
// destination whose weight it sets), so that it can never set a weight on a destination that
// moved in between, even without the resourceVersion guard.
func (s *State) Plan(d traffic.Desired) (traffic.Change, error) {
	current := s.routing.Destinations
	appendCanary := s.index(traffic.RoleCanary) < 0 && d.CanaryWeight > 0
	if appendCanary {
		// The canary's host is its Service when given, else the stable destination's host; its
		// port is the stable destination's.
		stable := current[s.index(traffic.RoleStable)]
		host := stable.Host
		if s.target.CanaryService != "" {
			host = s.target.CanaryService
		}
		canary := traffic.Destination{Host: host, Subset: s.target.CanarySubset, Port: stable.Port, Role: traffic.RoleCanary}
		current = append(append([]traffic.Destination(nil), current...), canary)
	}
	want, err := traffic.SplitWeights(current, d.CanaryWeight, s.where())
	if err != nil {
		return traffic.Change{}, err
	}

	next := s.spec.DeepCopy()
	route := next.Http[s.routeIndex]
	base := fmt.Sprintf("/spec/http/%d", s.routeIndex)
	var ops []traffic.PatchOp
	for j, rd := range route.Route {
		// Compare with the weight that takes effect: a lone destination without a weight gets
		// all traffic, until the appended canary makes it one of two.
		have := current[j].Weight
		if appendCanary {
			have = int(rd.Weight)
		}
		if have == want[j].Weight {
			continue
		}
		ops = append(ops, pinDestination(base, j, rd.Destination)...)
		// "add" sets a member whether or not it exists: an absent weight is added.
		ops = append(ops, traffic.PatchOp{Op: "add", Path: fmt.Sprintf("%s/route/%d/weight", base, j), Value: want[j].Weight})
		rd.Weight = int32(want[j].Weight)
	}
	if appendCanary {
		c := want[len(want)-1]
		dest := &networking.Destination{Host: c.Host, Subset: c.Subset}
		value := map[string]any{"host": c.Host}
		if c.Subset != "" {
			value["subset"] = c.Subset
		}
		if c.Port != 0 {
			dest.Port = &networking.PortSelector{Number: c.Port}
			value["port"] = map[string]any{"number": c.Port}
		}
		route.Route = append(route.Route, &networking.HTTPRouteDestination{Destination: dest, Weight: int32(c.Weight)})
		ops = append(ops, traffic.PatchOp{Op: "add", Path: base + "/route/-", Value: map[string]any{"destination": value, "weight": c.Weight}})
	}
	if len(ops) > 0 && route.Name != "" {
		ops = append([]traffic.PatchOp{{Op: "test", Path: base + "/name", Value: route.Name}}, ops...)
	}

	nextState, err := newState(s.routing.Namespace, s.routing.Name, s.routing.ResourceVersion, next, s.target)
	if err != nil {
		// Unreachable by construction; kept as the last guard before anything is written.
		return traffic.Change{}, fmt.Errorf("internal error: planned %s cannot be read back: %w", s.where(), err)
	}
	if err := traffic.CheckWeights(nextState.routing.Destinations); err != nil {
		return traffic.Change{}, fmt.Errorf("internal error: planned %s is invalid: %w", s.where(), err)
	}
	return traffic.Change{
		Before:  s.Routing(),
		After:   nextState.Routing(),
		Changed: len(ops) > 0,
		Patch:   ops,
		Next:    nextState,
	}, nil
}

// pinDestination tests the host and subset of destination j of the route at base, so that a
// weight is only ever written to the destination it was planned for.
func pinDestination(base string, j int, d *networking.Destination) []traffic.PatchOp {
	if d == nil {
		return nil
	}
	path := fmt.Sprintf("%s/route/%d/destination", base, j)
	ops := []traffic.PatchOp{{Op: "test", Path: path + "/host", Value: d.Host}}
	if d.Subset != "" {
		ops = append(ops, traffic.PatchOp{Op: "test", Path: path + "/subset", Value: d.Subset})
	}
	return ops
}
