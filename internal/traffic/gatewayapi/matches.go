package gatewayapi

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshroll/meshroll/internal/traffic"
)

// match is an HTTPRouteMatch as meshroll builds it.
type match struct {
	Path        *gatewayv1.HTTPPathMatch        `json:"path,omitempty"`
	Headers     []gatewayv1.HTTPHeaderMatch     `json:"headers,omitempty"`
	QueryParams []gatewayv1.HTTPQueryParamMatch `json:"queryParams,omitempty"`
	Method      *gatewayv1.HTTPMethod           `json:"method,omitempty"`
}

// translateMatches turns MESHROLL_MATCH's Istio HTTPMatchRequests into HTTPRouteMatches:
// uri → path, headers and queryParams (exact, regex) → Exact and RegularExpression matches,
// method. What the Gateway API cannot express (a header prefix, sourceLabels, port...) is
// refused, naming it.
func translateMatches(istio []map[string]any) ([]match, error) {
	out := make([]match, 0, len(istio))
	for i, m := range istio {
		var g match
		for _, field := range sortedKeys(m) {
			value := m[field]
			var err error
			switch field {
			case "name":
			case "uri":
				g.Path, err = pathMatch(value)
			case "headers":
				g.Headers, err = valueMatches[gatewayv1.HTTPHeaderMatch](value, "headers", func(name, typ, v string) gatewayv1.HTTPHeaderMatch {
					t := gatewayv1.HeaderMatchType(typ)
					return gatewayv1.HTTPHeaderMatch{Name: gatewayv1.HTTPHeaderName(name), Type: &t, Value: v}
				})
			case "queryParams":
				g.QueryParams, err = valueMatches[gatewayv1.HTTPQueryParamMatch](value, "queryParams", func(name, typ, v string) gatewayv1.HTTPQueryParamMatch {
					t := gatewayv1.QueryParamMatchType(typ)
					return gatewayv1.HTTPQueryParamMatch{Name: gatewayv1.HTTPHeaderName(name), Type: &t, Value: v}
				})
			case "method":
				var kind, v string
				if kind, v, err = stringMatch(value); err == nil && kind != "exact" {
					err = fmt.Errorf("method matches only exactly in the Gateway API, not by %s", kind)
				}
				method := gatewayv1.HTTPMethod(strings.ToUpper(v))
				g.Method = &method
			default:
				err = fmt.Errorf("%s has no Gateway API equivalent (an HTTPRoute matches path, headers, queryParams and method)", field)
			}
			if err != nil {
				return nil, traffic.Preflightf(ErrUnsupported, "MESHROLL_MATCH condition %d: %v; change MESHROLL_MATCH, or steer a VirtualService", i+1, err)
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// stringMatch reads an Istio StringMatch ({exact|prefix|regex: value}).
func stringMatch(v any) (kind, value string, err error) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return "", "", fmt.Errorf("not a string match (exact, prefix or regex)")
	}
	for k, x := range m {
		s, ok := x.(string)
		if !ok {
			return "", "", fmt.Errorf("%s is not a string", k)
		}
		return k, s, nil
	}
	return "", "", nil
}

func pathMatch(v any) (*gatewayv1.HTTPPathMatch, error) {
	kind, value, err := stringMatch(v)
	if err != nil {
		return nil, fmt.Errorf("uri: %v", err)
	}
	t := map[string]gatewayv1.PathMatchType{"exact": gatewayv1.PathMatchExact, "prefix": gatewayv1.PathMatchPathPrefix, "regex": gatewayv1.PathMatchRegularExpression}[kind]
	if t == "" {
		return nil, fmt.Errorf("uri: %s is not exact, prefix or regex", kind)
	}
	return &gatewayv1.HTTPPathMatch{Type: &t, Value: &value}, nil
}

// valueMatches translates a map of name → StringMatch (Istio's headers, queryParams) into
// the Gateway API's list of Exact and RegularExpression matches, sorted by name.
func valueMatches[T any](v any, field string, make func(name, typ, value string) T) ([]T, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not a map of conditions", field)
	}
	var out []T
	for _, name := range sortedKeys(m) {
		kind, value, err := stringMatch(m[name])
		if err != nil {
			return nil, fmt.Errorf("%s %q: %v", field, name, err)
		}
		switch kind {
		case "exact":
			out = append(out, make(name, "Exact", value))
		case "regex":
			out = append(out, make(name, "RegularExpression", value))
		default:
			return nil, fmt.Errorf("%s %q matches by %s, which the Gateway API cannot (it matches exactly or by regular expression: write regex: ^%s)", field, name, kind, regexpQuote(value))
		}
	}
	return out, nil
}

func regexpQuote(s string) string {
	return strings.NewReplacer(`\`, `\\`, ".", `\.`, "+", `\+`, "*", `\*`, "?", `\?`, "(", `\(`, ")", `\)`, "[", `\[`, "]", `\]`, "{", `\{`, "}", `\}`, "|", `\|`, "^", `\^`, "$", `\$`).Replace(s) + ".*"
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// combineMatches is the matches of the A/B rule: a request matches when it matches one of the
// user's conditions and one of the rule's (every pair ANDed; a rule without matches matches
// every path).
func combineMatches(user []match, rule []gatewayv1.HTTPRouteMatch, where string) ([]match, error) {
	theirs := make([]match, 0, len(rule))
	for _, r := range rule {
		theirs = append(theirs, match{Path: r.Path, Headers: r.Headers, QueryParams: r.QueryParams, Method: r.Method})
	}
	if len(theirs) == 0 {
		theirs = []match{{}}
	}
	var out []match
	for _, r := range theirs {
		for _, u := range user {
			m, err := andMatch(r, u, where)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// andMatch is one HTTPRouteMatch that holds when both r (the rule's) and u (the user's) do.
// Two different conditions on one path, header, query parameter or method cannot both be
// written: that is refused, naming them. A path prefix holds with a longer prefix or an exact
// path under it, which then is the condition.
func andMatch(r, u match, where string) (match, error) {
	out := r
	conflict := func(what, user, theirs string) error {
		return traffic.Preflightf(traffic.ErrMatchConflict, "MESHROLL_MATCH sets %s %s, but %s matches %s; a request cannot meet both, so the A/B rule could never match: change MESHROLL_MATCH, or steer another rule (MESHROLL_ROUTE)",
			what, user, where, theirs)
	}
	switch p, err := andPath(r.Path, u.Path); {
	case err:
		return match{}, conflict("path", describePath(u.Path), describePath(r.Path))
	default:
		out.Path = p
	}
	if u.Method != nil {
		if r.Method != nil && *r.Method != *u.Method {
			return match{}, conflict("method", string(*u.Method), string(*r.Method))
		}
		out.Method = u.Method
	}
	headers := append([]gatewayv1.HTTPHeaderMatch(nil), r.Headers...)
	for _, h := range u.Headers {
		found := false
		for _, o := range r.Headers {
			if strings.EqualFold(string(o.Name), string(h.Name)) {
				found = true
				if !sameType(o.Type, h.Type, "Exact") || o.Value != h.Value {
					return match{}, conflict("header "+string(h.Name), h.Value, "it as "+o.Value)
				}
			}
		}
		if !found {
			headers = append(headers, h)
		}
	}
	out.Headers = headers
	params := append([]gatewayv1.HTTPQueryParamMatch(nil), r.QueryParams...)
	for _, q := range u.QueryParams {
		found := false
		for _, o := range r.QueryParams {
			if o.Name == q.Name {
				found = true
				if !sameType(o.Type, q.Type, "Exact") || o.Value != q.Value {
					return match{}, conflict("query parameter "+string(q.Name), q.Value, "it as "+o.Value)
				}
			}
		}
		if !found {
			params = append(params, q)
		}
	}
	out.QueryParams = params
	return out, nil
}

func sameType[T ~string](a, b *T, def T) bool {
	x, y := def, def
	if a != nil {
		x = *a
	}
	if b != nil {
		y = *b
	}
	return x == y
}

// andPath is the path condition of both: nil holds for every path, as does the prefix /.
func andPath(r, u *gatewayv1.HTTPPathMatch) (*gatewayv1.HTTPPathMatch, bool) {
	switch {
	case everyPath(u):
		return r, false
	case everyPath(r):
		return u, false
	}
	rt, ut := pathType(r), pathType(u)
	rv, uv := *r.Value, *u.Value
	switch {
	case rt == ut && rv == uv:
		return r, false
	case rt == gatewayv1.PathMatchPathPrefix && ut != gatewayv1.PathMatchRegularExpression && underPrefix(uv, rv):
		return u, false
	case ut == gatewayv1.PathMatchPathPrefix && rt != gatewayv1.PathMatchRegularExpression && underPrefix(rv, uv):
		return r, false
	}
	return nil, true
}

func everyPath(p *gatewayv1.HTTPPathMatch) bool {
	return p == nil || pathType(p) == gatewayv1.PathMatchPathPrefix && (p.Value == nil || *p.Value == "/")
}

func pathType(p *gatewayv1.HTTPPathMatch) gatewayv1.PathMatchType {
	if p.Type == nil {
		return gatewayv1.PathMatchPathPrefix
	}
	return *p.Type
}

// underPrefix says whether path is under prefix, element by element as the Gateway API's
// PathPrefix matches ("/foo" holds "/foo" and "/foo/bar", not "/foobar").
func underPrefix(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func describePath(p *gatewayv1.HTTPPathMatch) string {
	if p == nil || p.Value == nil {
		return "any"
	}
	return strconv.Quote(*p.Value) + " (" + string(pathType(p)) + ")"
}
