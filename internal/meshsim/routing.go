package meshsim

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// routeTable is a VirtualService or an HTTPRoute compiled for matching: regular expressions
// are parsed once per change of the object, not once per request.
type routeTable struct {
	service service // the service the callers call
	// app is the app label of every version's pods, Istio's canonical service; "" for
	// service.name.
	app    string
	routes []route
}

// service is the destination service as Istio's metrics name it.
type service struct {
	fqdn, name, namespace string
}

type route struct {
	name    string
	matches []matchRequest // empty: every request
	dests   []destination  // empty: no route (NR)
	total   int            // sum of weights
	mirrors []mirror       // where copies of the route's requests also go
	// gateway is Gateway API's behaviour for a rule with no valid backend to send a request
	// to (all weights 0, no backendRefs, or the one drawn names no version): 500. A
	// VirtualService route sends all-zero weights to its first destination, and answers 503
	// (Envoy's cluster not found) for a subset no version has.
	gateway bool
}

// mirror is one of a route's mirror policies: mirror with mirrorPercentage (or the deprecated
// mirrorPercent), or an entry of mirrors.
type mirror struct {
	subset  string   // empty: any version
	percent float64  // share of the route's requests copied, in (0, 100]
	service *service // as the metrics name it; nil: the table's
}

type destination struct {
	subset string // empty: any endpoint of the service, i.e. any version
	weight int
	// service is the destination service as the metrics name it (an HTTPRoute's backendRef);
	// nil: the table's.
	service *service
	// unknown names a backendRef that is no version (another Service, another kind or
	// namespace): an invalid backend, whose share of the requests gets 500.
	unknown string
}

// key names the destination in Weights: its subset, or "!" and the name of a backendRef that
// is no version.
func (d destination) key() string {
	if d.unknown != "" {
		return "!" + d.unknown
	}
	return d.subset
}

// matchRequest is one HTTPMatchRequest: all its conditions must hold.
type matchRequest struct {
	uri            *stringMatch
	ignoreURICase  bool
	method         *stringMatch
	authority      *stringMatch
	scheme         *stringMatch
	headers        map[string]*stringMatch // a nil matcher: the header must be present
	withoutHeaders map[string]*stringMatch
	queryParams    map[string]*stringMatch
	// unmatchable is set when the entry has conditions on things this data plane has no
	// notion of (source labels, ports, gateways other than the mesh), or a broken regex
	// (which istiod would reject): such an entry matches nothing.
	unmatchable bool
}

type stringMatch struct {
	exact, prefix string
	re            *regexp.Regexp
	// elements makes prefix a Gateway API PathPrefix, matched path element by path element
	// ("/abc" matches /abc, /abc/ and /abc/def, not /abcd), its trailing "/" dropped ("" for
	// "/": every path).
	elements bool
}

func (s *stringMatch) match(v string, ignoreCase bool) bool {
	switch {
	case s.re != nil:
		return s.re.MatchString(v)
	case s.elements:
		return s.prefix == "" || v == s.prefix || strings.HasPrefix(v, s.prefix+"/")
	case ignoreCase && s.prefix != "":
		return len(v) >= len(s.prefix) && strings.EqualFold(v[:len(s.prefix)], s.prefix)
	case s.prefix != "":
		return strings.HasPrefix(v, s.prefix)
	case ignoreCase:
		return strings.EqualFold(v, s.exact)
	default:
		return v == s.exact
	}
}

// compileStringMatch returns nil for an empty StringMatch (Istio reads that as "present").
// Envoy's safe_regex matches the whole value, so the expression is anchored.
func compileStringMatch(m *apinetworking.StringMatch, ignoreCase bool) (*stringMatch, error) {
	switch t := m.GetMatchType().(type) {
	case *apinetworking.StringMatch_Exact:
		return &stringMatch{exact: t.Exact}, nil
	case *apinetworking.StringMatch_Prefix:
		return &stringMatch{prefix: t.Prefix}, nil
	case *apinetworking.StringMatch_Regex:
		expr := "^(?:" + t.Regex + ")$"
		if ignoreCase {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("invalid regex %q: %w", t.Regex, err)
		}
		return &stringMatch{re: re}, nil
	default:
		return nil, nil
	}
}

func compileStringMatches(in map[string]*apinetworking.StringMatch, lowerKeys bool) (map[string]*stringMatch, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]*stringMatch, len(in))
	for k, v := range in {
		m, err := compileStringMatch(v, false)
		if err != nil {
			return nil, err
		}
		if lowerKeys {
			k = strings.ToLower(k)
		}
		out[k] = m
	}
	return out, nil
}

func compileMatch(m *apinetworking.HTTPMatchRequest) matchRequest {
	var (
		c    = matchRequest{ignoreURICase: m.GetIgnoreUriCase()}
		errs []error
		err  error
	)
	if c.uri, err = compileStringMatch(m.GetUri(), c.ignoreURICase); err != nil {
		errs = append(errs, err)
	}
	if c.method, err = compileStringMatch(m.GetMethod(), false); err != nil {
		errs = append(errs, err)
	}
	if c.authority, err = compileStringMatch(m.GetAuthority(), false); err != nil {
		errs = append(errs, err)
	}
	if c.scheme, err = compileStringMatch(m.GetScheme(), false); err != nil {
		errs = append(errs, err)
	}
	if c.headers, err = compileStringMatches(m.GetHeaders(), true); err != nil {
		errs = append(errs, err)
	}
	if c.withoutHeaders, err = compileStringMatches(m.GetWithoutHeaders(), true); err != nil {
		errs = append(errs, err)
	}
	if c.queryParams, err = compileStringMatches(m.GetQueryParams(), false); err != nil {
		errs = append(errs, err)
	}
	onlyMesh := true
	for _, g := range m.GetGateways() {
		onlyMesh = onlyMesh && g == "mesh"
	}
	// "@request.auth.claims.<claim>" matches a claim of a JWT that a RequestAuthentication at
	// a gateway validated, not a header: no such request reaches this data plane.
	claims := false
	for name := range m.GetHeaders() {
		claims = claims || strings.HasPrefix(name, "@request.auth.claims")
	}
	for name := range m.GetWithoutHeaders() {
		claims = claims || strings.HasPrefix(name, "@request.auth.claims")
	}
	c.unmatchable = len(errs) > 0 || len(m.GetSourceLabels()) > 0 || m.GetSourceNamespace() != "" ||
		m.GetPort() != 0 || !onlyMesh || claims
	return c
}

func (c *matchRequest) match(r *http.Request) bool {
	if c.unmatchable {
		return false
	}
	if c.uri != nil && !c.uri.match(r.URL.Path, c.ignoreURICase) {
		return false
	}
	if c.method != nil && !c.method.match(r.Method, false) {
		return false
	}
	if c.authority != nil && !c.authority.match(r.Host, false) {
		return false
	}
	if c.scheme != nil && !c.scheme.match("http", false) {
		return false
	}
	for name, m := range c.headers {
		if !headerMatches(r.Header, name, m) {
			return false
		}
	}
	for name, m := range c.withoutHeaders {
		if headerMatches(r.Header, name, m) {
			return false
		}
	}
	if len(c.queryParams) > 0 {
		q := r.URL.Query()
		for name, m := range c.queryParams {
			vs, ok := q[name]
			if !ok || (m != nil && !m.match(vs[0], false)) {
				return false
			}
		}
	}
	return true
}

func headerMatches(h http.Header, name string, m *stringMatch) bool {
	vs := h.Values(name)
	if len(vs) == 0 {
		return false
	}
	// Envoy matches a repeated header on its values joined with commas.
	return m == nil || m.match(strings.Join(vs, ","), false)
}

// compile turns the current VirtualService into a route table; nil (no object) routes every
// request evenly across the versions, as the Kubernetes Service alone would.
func compile(vs *networkingv1.VirtualService, namespace, fallbackHost string) *routeTable {
	if vs == nil {
		return &routeTable{
			service: serviceOf(fallbackHost, namespace),
			routes:  []route{{name: "default", dests: []destination{{weight: 100}}, total: 100}},
		}
	}
	host := fallbackHost
	if hosts := vs.Spec.GetHosts(); len(hosts) > 0 {
		host = hosts[0]
	}
	t := &routeTable{service: serviceOf(host, namespace)}
	for _, h := range vs.Spec.GetHttp() {
		r := route{name: h.GetName()}
		for _, m := range h.GetMatch() {
			r.matches = append(r.matches, compileMatch(m))
		}
		for _, d := range h.GetRoute() {
			// The CRD takes negative weights (no webhook runs here); Envoy has no such thing.
			w := max(int(d.GetWeight()), 0)
			r.dests = append(r.dests, destination{subset: d.GetDestination().GetSubset(), weight: w})
			r.total += w
		}
		r.mirrors = compileMirrors(h)
		t.routes = append(t.routes, r)
	}
	return t
}

// compileMirrors reads a route's mirror policies as istiod translates them for Envoy: mirror
// at mirrorPercentage, else at the deprecated mirrorPercent, else at 100%; then every entry
// of mirrors at its percentage, else 100%. An explicit 0 mirrors nothing; above 100 (which
// istiod's validation rejects) counts as 100.
func compileMirrors(h *apinetworking.HTTPRoute) []mirror {
	var out []mirror
	add := func(d *apinetworking.Destination, percent float64) {
		if d != nil && percent > 0 {
			out = append(out, mirror{subset: d.GetSubset(), percent: min(percent, 100)})
		}
	}
	if d := h.GetMirror(); d != nil {
		switch {
		case h.GetMirrorPercentage() != nil:
			add(d, h.GetMirrorPercentage().GetValue())
		case h.GetMirrorPercent() != nil: // deprecated, still honoured by istiod
			add(d, float64(h.GetMirrorPercent().GetValue()))
		default:
			add(d, 100)
		}
	}
	for _, p := range h.GetMirrors() {
		percent := 100.0
		if p.GetPercentage() != nil {
			percent = p.GetPercentage().GetValue()
		}
		add(p.GetDestination(), percent)
	}
	return out
}

// copied draws whether one request is copied to the mirror: percent of them are.
func (mr mirror) copied() bool {
	return mr.percent >= 100 || rand.Float64()*100 < mr.percent
}

// serviceOf resolves a VirtualService host the way Istio does for Kubernetes services: a
// short name is relative to the VirtualService's namespace.
func serviceOf(host, namespace string) service {
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1:
		return service{fqdn: host + "." + namespace + ".svc.cluster.local", name: host, namespace: namespace}
	case len(parts) == 2:
		return service{fqdn: host + ".svc.cluster.local", name: parts[0], namespace: parts[1]}
	case len(parts) == 3 && parts[2] == "svc":
		return service{fqdn: host + ".cluster.local", name: parts[0], namespace: parts[1]}
	case len(parts) >= 4 && parts[2] == "svc":
		return service{fqdn: host, name: parts[0], namespace: parts[1]}
	default: // not a Kubernetes service; Istio names it by its host
		return service{fqdn: host, name: host, namespace: namespace}
	}
}

// selectRoute returns the first route with no match conditions or one matching entry.
func (t *routeTable) selectRoute(r *http.Request) *route {
	for i := range t.routes {
		rt := &t.routes[i]
		if len(rt.matches) == 0 {
			return rt
		}
		for j := range rt.matches {
			if rt.matches[j].match(r) {
				return rt
			}
		}
	}
	return nil
}

// pick draws a destination in proportion to the weights. A single destination without a
// weight, and all-zero weights, send everything to the first destination; with Gateway API's
// behaviour all-zero weights send nothing anywhere.
func (rt *route) pick() (destination, bool) {
	if len(rt.dests) == 0 || rt.total <= 0 && rt.gateway {
		return destination{}, false
	}
	if rt.total <= 0 {
		return rt.dests[0], true
	}
	n := rand.IntN(rt.total)
	for _, d := range rt.dests {
		if n < d.weight {
			return d, true
		}
		n -= d.weight
	}
	return rt.dests[len(rt.dests)-1], true // unreachable with non-negative weights
}

// weights are the shares the route applies per subset, as pick draws them.
func (rt *route) weights() map[string]int {
	w := map[string]int{}
	if len(rt.dests) == 0 {
		return w
	}
	for _, d := range rt.dests {
		w[d.key()] += d.weight
	}
	if rt.total <= 0 && !rt.gateway {
		w[rt.dests[0].key()] = 100
	}
	return w
}
