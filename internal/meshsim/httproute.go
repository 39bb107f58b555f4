package meshsim

// Following a mesh HTTPRoute (Gateway API's GAMMA) instead of a VirtualService, as a mesh
// implementation of Gateway API (Istio's) routes the calls of the route's parent Service:
//
//   - The route applies to the calls of its first parentRef of kind Service, the service the
//     callers call. Its hostnames and the parentRefs' ports are not looked at.
//   - A request takes the rule of its matching match of the highest precedence, in Gateway
//     API's order: an Exact path; a PathPrefix, the one with the most characters first; a
//     RegularExpression path (implementation-specific: after every prefix, as Istio ranks
//     it); then a method; then the most header matches; then the most query parameter
//     matches. On a tie the first rule in the list wins, and within it the first match. A rule
//     without matches matches every path (PathPrefix /). No rule matches: 404.
//   - Matches: a path Exact, PathPrefix (element by element, its trailing / ignored) or
//     RegularExpression (RE2, the whole path); headers Exact or RegularExpression, names
//     case-insensitive, only the first of equivalent names counting, a repeated header's
//     values joined with commas (as Envoy does); query parameters Exact or RegularExpression
//     on the first value; the method. A match of a type it does not know, or with a broken
//     regular expression, matches nothing.
//   - The backend is drawn by relative weight (weight over the sum of the rule's weights,
//     unset 1). A backendRef is valid when it names a Service of the HTTPRoute's namespace
//     that is a Version's Service; the share of the requests an invalid one would take is
//     answered 500 by the client's sidecar (flags NR), and so is every request of a rule
//     whose weights are all 0 or that has no backendRefs.
//   - A rule's RequestMirror filters copy percent (or fraction) of its requests, all of them
//     when neither is set, to their backendRef, as a VirtualService's mirrors are copied; a
//     mirror to no version's Service copies nothing.
//   - Metrics: destination_service is the backend's Service (the cluster the client's sidecar
//     sends to) for both reporters; destination_canonical_service is the parent Service's
//     name, the app label every version's pods share.
//
// What it leaves out: every other filter (header modifiers, redirects, rewrites, CORS; a rule
// of a redirect and no backendRefs answers 500 here), the backendRefs' own filters, timeouts,
// retries, session persistence, ReferenceGrants (a backendRef to another namespace is
// invalid), the route's status (it is followed whether a parent accepted it or not) and other
// routes attached to the same parent.

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
)

// watchHTTPRoute follows Options.HTTPRoute as watch follows a VirtualService.
func (m *Mesh) watchHTTPRoute(ctx context.Context) error {
	ns, name := m.opts.Namespace, m.opts.HTTPRoute
	factory := gatewayinformers.NewSharedInformerFactoryWithOptions(m.opts.Gateway, 0,
		gatewayinformers.WithNamespace(ns),
		gatewayinformers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}),
	)
	m.informers = factory
	informer := factory.Gateway().V1().HTTPRoutes().Informer()
	return m.follow(ctx, "httproute "+ns+"/"+name, informer, factory.Start, func(obj any) *routeTable {
		hr, ok := obj.(*gatewayv1.HTTPRoute)
		switch {
		case obj == nil:
			return compileHTTPRoute(nil, ns, name, m.subsets)
		case ok && hr.Name == name:
			return compileHTTPRoute(hr, ns, name, m.subsets)
		}
		return nil
	})
}

// compileHTTPRoute turns the current HTTPRoute into a route table of one route per match,
// in the order of their precedence; subsets maps a version's Service to its subset. nil (no
// object) routes every request evenly across the versions, as the parent Service alone would.
func compileHTTPRoute(hr *gatewayv1.HTTPRoute, namespace, name string, subsets map[string]string) *routeTable {
	if hr == nil {
		return compile(nil, namespace, name)
	}
	t := &routeTable{service: serviceOf(name, namespace)}
	if parent, ok := parentService(hr.Spec.ParentRefs, namespace); ok {
		t.service, t.app = parent, parent.name
	}
	type ranked struct {
		p precedence
		r route
	}
	var all []ranked
	for i, rule := range hr.Spec.Rules {
		base := route{name: fmt.Sprintf("rules[%d]", i), mirrors: httpMirrors(rule.Filters, namespace, subsets), gateway: true}
		if rule.Name != nil && *rule.Name != "" {
			base.name = string(*rule.Name)
		}
		for _, b := range rule.BackendRefs {
			d := httpDestination(b, namespace, subsets)
			base.dests = append(base.dests, d)
			base.total += d.weight
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{}} // the API server's default: PathPrefix /
		}
		for _, hm := range matches {
			m, p := compileHTTPMatch(hm)
			r := base
			r.matches = []matchRequest{m}
			all = append(all, ranked{p, r})
		}
	}
	slices.SortStableFunc(all, func(a, b ranked) int {
		switch {
		case a.p.before(b.p):
			return -1
		case b.p.before(a.p):
			return 1
		}
		return 0
	})
	for _, r := range all {
		t.routes = append(t.routes, r.r)
	}
	return t
}

// parentService is the first parentRef of kind Service, as the metrics name it.
func parentService(refs []gatewayv1.ParentReference, namespace string) (service, bool) {
	for _, p := range refs {
		if p.Group == nil || *p.Group != "" || p.Kind == nil || *p.Kind != "Service" {
			continue // the defaults are a Gateway of gateway.networking.k8s.io
		}
		ns := namespace
		if p.Namespace != nil && *p.Namespace != "" {
			ns = string(*p.Namespace)
		}
		return serviceOf(string(p.Name)+"."+ns, namespace), true
	}
	return service{}, false
}

// backendOf resolves a backendRef or a mirror's: its Service as the metrics name it, and the
// subset of the version whose Service it is (ok false when it is none).
func backendOf(ref gatewayv1.BackendObjectReference, namespace string, subsets map[string]string) (svc service, subset string, ok bool) {
	ns := namespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	svc = serviceOf(string(ref.Name)+"."+ns, namespace)
	if ref.Group != nil && *ref.Group != "" || ref.Kind != nil && *ref.Kind != "Service" || ns != namespace {
		return svc, "", false
	}
	subset, ok = subsets[string(ref.Name)]
	return svc, subset, ok
}

func httpDestination(b gatewayv1.HTTPBackendRef, namespace string, subsets map[string]string) destination {
	d := destination{weight: 1}
	if b.Weight != nil {
		d.weight = max(int(*b.Weight), 0) // the CRD allows 0 to 1,000,000
	}
	svc, subset, ok := backendOf(b.BackendObjectReference, namespace, subsets)
	if !ok {
		d.unknown = string(b.Name)
		return d
	}
	d.subset, d.service = subset, &svc
	return d
}

// httpMirrors reads a rule's RequestMirror filters: percent, else fraction, else 100%. An
// explicit 0 mirrors nothing; above 100 (which the CRD rejects) counts as 100.
func httpMirrors(filters []gatewayv1.HTTPRouteFilter, namespace string, subsets map[string]string) []mirror {
	var out []mirror
	for _, f := range filters {
		rm := f.RequestMirror
		if f.Type != gatewayv1.HTTPRouteFilterRequestMirror || rm == nil {
			continue
		}
		percent := 100.0
		switch {
		case rm.Percent != nil:
			percent = float64(*rm.Percent)
		case rm.Fraction != nil:
			denominator := int32(100)
			if rm.Fraction.Denominator != nil {
				denominator = *rm.Fraction.Denominator
			}
			if denominator <= 0 {
				continue
			}
			percent = 100 * float64(rm.Fraction.Numerator) / float64(denominator)
		}
		svc, subset, ok := backendOf(rm.BackendRef, namespace, subsets)
		if ok && percent > 0 {
			out = append(out, mirror{subset: subset, percent: min(percent, 100), service: &svc})
		}
	}
	return out
}

// precedence is what Gateway API orders matches by.
type precedence struct {
	path    int // 3 Exact, 2 PathPrefix, 1 RegularExpression, 0 a type unknown here
	pathLen int // characters of the path's value
	method  bool
	headers int
	query   int
}

// before says whether a match of precedence p is tried before one of q.
func (p precedence) before(q precedence) bool {
	switch {
	case p.path != q.path:
		return p.path > q.path
	case p.pathLen != q.pathLen:
		return p.pathLen > q.pathLen
	case p.method != q.method:
		return p.method
	case p.headers != q.headers:
		return p.headers > q.headers
	}
	return p.query > q.query
}

// compileHTTPMatch compiles one HTTPRouteMatch, with the API server's defaults for what is
// unset (a path PathPrefix /, Exact values).
func compileHTTPMatch(hm gatewayv1.HTTPRouteMatch) (matchRequest, precedence) {
	var (
		c        matchRequest
		p        precedence
		pathType = gatewayv1.PathMatchPathPrefix
		value    = "/"
		err      error
	)
	if hm.Path != nil {
		if hm.Path.Type != nil {
			pathType = *hm.Path.Type
		}
		if hm.Path.Value != nil {
			value = *hm.Path.Value
		}
	}
	p.pathLen = len(value)
	switch pathType {
	case gatewayv1.PathMatchExact:
		c.uri, p.path = &stringMatch{exact: value}, 3
	case gatewayv1.PathMatchPathPrefix:
		c.uri, p.path = &stringMatch{prefix: strings.TrimSuffix(value, "/"), elements: true}, 2
	case gatewayv1.PathMatchRegularExpression:
		p.path = 1
		c.uri, err = regexMatch(value)
		c.unmatchable = err != nil
	default:
		c.unmatchable = true
	}
	if hm.Method != nil {
		c.method, p.method = &stringMatch{exact: string(*hm.Method)}, true
	}
	for _, h := range hm.Headers {
		name := strings.ToLower(string(h.Name))
		if _, seen := c.headers[name]; seen {
			continue // only the first of equivalent names counts
		}
		m, ok := valueMatch((*string)(h.Type), h.Value)
		c.unmatchable = c.unmatchable || !ok
		if c.headers == nil {
			c.headers = map[string]*stringMatch{}
		}
		c.headers[name] = m
	}
	for _, q := range hm.QueryParams {
		name := string(q.Name)
		if _, seen := c.queryParams[name]; seen {
			continue
		}
		m, ok := valueMatch((*string)(q.Type), q.Value)
		c.unmatchable = c.unmatchable || !ok
		if c.queryParams == nil {
			c.queryParams = map[string]*stringMatch{}
		}
		c.queryParams[name] = m
	}
	p.headers, p.query = len(c.headers), len(c.queryParams)
	return c, p
}

// valueMatch is a header's or a query parameter's match of its value by type (Exact when
// unset, or RegularExpression: the names are the same for both); ok false for another type
// or a broken expression. It is never nil: a nil matcher means "present" to matchRequest.
func valueMatch(matchType *string, value string) (*stringMatch, bool) {
	switch {
	case matchType == nil || *matchType == string(gatewayv1.HeaderMatchExact):
		return &stringMatch{exact: value}, true
	case *matchType == string(gatewayv1.HeaderMatchRegularExpression):
		if m, err := regexMatch(value); err == nil {
			return m, true
		}
	}
	return &stringMatch{exact: value}, false
}

// regexMatch matches a whole value, as Envoy's safe_regex does.
func regexMatch(expr string) (*stringMatch, error) {
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %w", expr, err)
	}
	return &stringMatch{re: re}, nil
}
