package istio

import (
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshroll/meshroll/internal/traffic"
)

// elsewhere finds the routes, besides the steered one and meshroll's A/B route, that send the
// stable or the canary version traffic: a destination with weight above 0, or a mirror. The
// user's own mirror on the steered route counts too; meshroll's is Routing.MirrorPercent.
// Scale-down asks it: a version one of these routes still reaches keeps its pods.
func (s *State) elsewhere() map[traffic.Role][]string {
	var out map[traffic.Role][]string
	add := func(role traffic.Role, route string) {
		if role == traffic.RoleOther {
			return
		}
		if out == nil {
			out = map[traffic.Role][]string{}
		}
		if list := out[role]; len(list) == 0 || list[len(list)-1] != route {
			out[role] = append(list, route)
		}
	}
	for j, r := range s.spec.Http {
		if managed(r) {
			continue
		}
		name := routeName(s.spec, j)
		if j != s.routeIndex {
			for _, d := range destinations(r, s.target) {
				if d.Weight > 0 {
					add(d.Role, name)
				}
			}
		}
		if r.Mirror != nil && mirrorPercent(r) > 0 && !(j == s.routeIndex && s.ownsMirror()) {
			add(s.mirrorRole(r.Mirror), name)
		}
		for _, m := range r.Mirrors {
			if m.Destination != nil && (m.Percentage == nil || m.Percentage.Value > 0) {
				add(s.mirrorRole(m.Destination), name)
			}
		}
	}
	return out
}

// mirrorRole says which version a mirror's destination is.
func (s *State) mirrorRole(d *networking.Destination) traffic.Role {
	return roleOf(&networking.HTTPRouteDestination{Destination: d}, s.target)
}
