package meshsim

import (
	"math"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// httpSubsets are the versions' Services of the tests below.
var httpSubsets = map[string]string{"reviews-v1": "v1", "reviews-v2": "v2", "reviews-v3": "v3"}

// httpTable compiles an HTTPRoute given as YAML, as the informer hands it over: without the
// API server's defaults when the YAML leaves them out.
func httpTable(t *testing.T, manifest string) *routeTable {
	t.Helper()
	var hr gatewayv1.HTTPRoute
	if err := yaml.UnmarshalStrict([]byte(manifest), &hr); err != nil {
		t.Fatal(err)
	}
	return compileHTTPRoute(&hr, "shop", "reviews", httpSubsets)
}

// precedenceRoute lists its rules from the least specific to the most: Gateway API's
// precedence, not their order, decides.
const precedenceRoute = `
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - name: catch-all
    backendRefs: [{name: reviews-v1}]
  - name: regex
    matches: [{path: {type: RegularExpression, value: "/reviews/[0-9]+"}}]
    backendRefs: [{name: reviews-v1}]
  - name: reviews
    matches: [{path: {type: PathPrefix, value: /reviews}}]
    backendRefs: [{name: reviews-v1}]
  - name: query
    matches: [{path: {value: /reviews}, queryParams: [{name: canary, value: "yes"}]}]
    backendRefs: [{name: reviews-v2}]
  - name: one-header
    matches: [{path: {value: /reviews}, headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: reviews-v2}]
  - name: two-headers
    matches:
    - path: {value: /reviews}
      headers:
      - {name: End-User, value: jason}
      - {name: x-beta, type: RegularExpression, value: "[0-9]+"}
      - {name: END-USER, value: ignored} # only the first of equivalent names counts
    backendRefs: [{name: reviews-v3}]
  - name: post
    matches: [{path: {value: /reviews}, method: POST}]
    backendRefs: [{name: reviews-v2}]
  - name: longer-prefix
    matches: [{path: {value: /reviews/v2/}}]
    backendRefs: [{name: reviews-v2}]
  - name: exact
    matches: [{path: {type: Exact, value: /reviews}}]
    backendRefs: [{name: reviews-v3}]
  - name: several
    matches:
    - {path: {value: /ratings}, method: PUT}
    - {path: {type: Exact, value: /ratings/top}}
    backendRefs: [{name: reviews-v3}]
  - name: broken
    matches:
    - {path: {type: RegularExpression, value: "("}}
    - {path: {type: Glob, value: /x}}
    - headers: [{name: x-broken, type: RegularExpression, value: "("}]
    backendRefs: [{name: reviews-v3}]
`

func TestHTTPRouteSelectRule(t *testing.T) {
	t.Parallel()
	table := httpTable(t, precedenceRoute)
	if want := (service{fqdn: "reviews.shop.svc.cluster.local", name: "reviews", namespace: "shop"}); table.service != want || table.app != "reviews" {
		t.Errorf("service %+v, app %q: want %+v, reviews", table.service, table.app, want)
	}
	for _, tc := range []struct {
		name   string
		method string
		target string
		header http.Header
		want   string
	}{
		{name: "no match but the catch-all", target: "/", want: "catch-all"},
		{name: "a prefix is matched element by element", target: "/reviewsx", want: "catch-all"},
		{name: "a prefix's own path", target: "/reviews/", want: "reviews"},
		{name: "exact before every prefix", target: "/reviews", header: http.Header{"End-User": {"jason"}}, method: http.MethodPost, want: "exact"},
		{name: "exact is exact", target: "/reviews/", method: http.MethodPost, want: "post"},
		{name: "the longer prefix before a method", target: "/reviews/v2/1", method: http.MethodPost, want: "longer-prefix"},
		{name: "a prefix's trailing slash is ignored", target: "/reviews/v2", want: "longer-prefix"},
		{name: "a method before headers", target: "/reviews/1", method: http.MethodPost, header: http.Header{"End-User": {"jason"}, "X-Beta": {"7"}}, want: "post"},
		{name: "more headers first", target: "/reviews/1", header: http.Header{"End-User": {"jason"}, "X-Beta": {"7"}}, want: "two-headers"},
		{name: "a header's regex needs a full match", target: "/reviews/1", header: http.Header{"End-User": {"jason"}, "X-Beta": {"7b"}}, want: "one-header"},
		{name: "header values are case-sensitive", target: "/reviews/1", header: http.Header{"End-User": {"Jason"}}, want: "reviews"},
		{name: "headers before query parameters", target: "/reviews/1?canary=yes", header: http.Header{"End-User": {"jason"}}, want: "one-header"},
		{name: "a query parameter", target: "/reviews/1?canary=yes", want: "query"},
		// Every prefix, the catch-all's / too, comes before a regex (as Istio ranks them): the
		// rule regex never takes a request here.
		{name: "every prefix before a regex", target: "/reviews/12", want: "reviews"},
		{name: "the second match of a rule", target: "/ratings/top", want: "several"},
		{name: "the first match of a rule", target: "/ratings/1", method: http.MethodPut, want: "several"},
		{name: "broken matches match nothing", target: "/x", header: http.Header{"X-Broken": {"("}}, want: "catch-all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := selectedRule(t, table, tc.method, tc.target, tc.header); got != tc.want {
				t.Errorf("rule = %s, want %s", got, tc.want)
			}
		})
	}
}

// On a tie the first rule wins, then the first of its matches; no rule matching is no route.
func TestHTTPRouteTies(t *testing.T) {
	t.Parallel()
	table := httpTable(t, `
spec:
  rules:
  - backendRefs: [{name: reviews-v1}]
    matches: [{path: {type: Exact, value: /a}}, {path: {value: /api}, headers: [{name: x, value: "1"}]}]
  - name: second
    matches: [{path: {value: /api}, headers: [{name: y, value: "1"}]}, {path: {type: RegularExpression, value: "/a.*"}}]
    backendRefs: [{name: reviews-v2}]
  - name: regex
    matches: [{path: {type: RegularExpression, value: "/b.*"}}]
    backendRefs: [{name: reviews-v2}]
`)
	if table.service.name != "reviews" || table.app != "" {
		t.Errorf("without a Service parent the route's name is the service: %+v, app %q", table.service, table.app)
	}
	for _, tc := range []struct {
		target string
		header http.Header
		want   string
	}{
		{target: "/a", want: "rules[0]"},
		{target: "/api/1", header: http.Header{"X": {"1"}, "Y": {"1"}}, want: "rules[0]"}, // a tie: the first rule
		{target: "/api/1", header: http.Header{"Y": {"1"}}, want: "second"},
		{target: "/api/1", want: "second"}, // by its regex, after every prefix
		{target: "/abc", want: "second"},
		{target: "/bcd", want: "regex"},
		{target: "/not-there", want: "(none)"}, // no catch-all: Envoy's 404
	} {
		if got := selectedRule(t, table, "", tc.target, tc.header); got != tc.want {
			t.Errorf("%s %v: rule = %s, want %s", tc.target, tc.header, got, tc.want)
		}
	}
}

func selectedRule(t *testing.T, table *routeTable, method, target string, header http.Header) string {
	t.Helper()
	if method == "" {
		method = http.MethodGet
	}
	r, err := http.NewRequest(method, "http://reviews"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		r.Header[k] = v
	}
	if rt := table.selectRoute(r); rt != nil {
		return rt.name
	}
	return "(none)"
}

// Weights are relative (unset is 1); a backendRef that is no version's Service takes its share
// and answers 500 for it, as do all-zero weights and a rule without backendRefs.
func TestHTTPRouteBackends(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		backends string
		want     map[string]int
		share    map[string]float64 // of the requests, by Weights' key; "500" for no backend
	}{
		{name: "relative", backends: `[{name: reviews-v1, weight: 3}, {name: reviews-v2, weight: 1}]`,
			want: map[string]int{"v1": 3, "v2": 1}, share: map[string]float64{"v1": 0.75, "v2": 0.25}},
		{name: "unset is 1", backends: `[{name: reviews-v1}, {name: reviews-v2, weight: 2}]`,
			want: map[string]int{"v1": 1, "v2": 2}, share: map[string]float64{"v1": 1. / 3, "v2": 2. / 3}},
		{name: "percentages", backends: `[{name: reviews-v1, weight: 80, port: 9080}, {name: reviews-v2, weight: 20, port: 9080}]`,
			want: map[string]int{"v1": 80, "v2": 20}, share: map[string]float64{"v1": 0.8, "v2": 0.2}},
		{name: "zero gets nothing", backends: `[{name: reviews-v1, weight: 0}, {name: reviews-v2, weight: 5}]`,
			want: map[string]int{"v1": 0, "v2": 5}, share: map[string]float64{"v2": 1}},
		{name: "all zero answers 500", backends: `[{name: reviews-v1, weight: 0}, {name: reviews-v2, weight: 0}]`,
			want: map[string]int{"v1": 0, "v2": 0}, share: map[string]float64{"500": 1}},
		{name: "no backendRefs answers 500", backends: `[]`, want: map[string]int{}, share: map[string]float64{"500": 1}},
		{name: "an unknown Service's share answers 500", backends: `[{name: reviews-v1}, {name: reviews-v9}]`,
			want: map[string]int{"v1": 1, "!reviews-v9": 1}, share: map[string]float64{"v1": 0.5, "500": 0.5}},
		{name: "another namespace is no version", backends: `[{name: reviews-v1, namespace: other}]`,
			want: map[string]int{"!reviews-v1": 1}, share: map[string]float64{"500": 1}},
		{name: "another kind is no version", backends: `[{group: example.com, kind: Bucket, name: reviews-v1}]`,
			want: map[string]int{"!reviews-v1": 1}, share: map[string]float64{"500": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			table := httpTable(t, "spec: {rules: [{backendRefs: "+tc.backends+"}]}")
			rt := &table.routes[0]
			if !rt.gateway {
				t.Fatal("an HTTPRoute's rule without Gateway API's behaviour")
			}
			if diff := cmp.Diff(tc.want, rt.weights()); diff != "" {
				t.Errorf("weights (-want +got):\n%s", diff)
			}
			const n = 20000
			got := map[string]float64{}
			for range n {
				d, ok := rt.pick()
				switch {
				case !ok || d.unknown != "":
					got["500"]++
				default:
					got[d.subset]++
					if want := "reviews-" + d.subset + ".shop.svc.cluster.local"; d.service == nil || d.service.fqdn != want {
						t.Fatalf("destination %+v: want service %s", d, want)
					}
				}
			}
			for k, p := range tc.share {
				if tolerance := 5 * math.Sqrt(n*p*(1-p)); math.Abs(got[k]-n*p) > tolerance {
					t.Errorf("%s got %v of %d requests, want %.0f ± %.0f", k, got[k], n, n*p, tolerance)
				}
			}
			for k := range got {
				if tc.share[k] == 0 {
					t.Errorf("%s got %v requests, want none", k, got[k])
				}
			}
		})
	}
}

func TestHTTPRouteMirrors(t *testing.T) {
	t.Parallel()
	table := httpTable(t, `
spec:
  rules:
  - filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, port: 9080}, percent: 25}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v3}, fraction: {numerator: 1, denominator: 200}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v3}, fraction: {numerator: 3}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v1}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2}, percent: 0}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v9}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, namespace: other}}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: "1"}]}}
    backendRefs: [{name: reviews-v1}]
`)
	svc := func(name string) *service {
		return &service{fqdn: name + ".shop.svc.cluster.local", name: name, namespace: "shop"}
	}
	want := []mirror{
		{subset: "v2", percent: 25, service: svc("reviews-v2")},
		{subset: "v3", percent: 0.5, service: svc("reviews-v3")},
		{subset: "v3", percent: 3, service: svc("reviews-v3")},
		{subset: "v1", percent: 100, service: svc("reviews-v1")},
	}
	if diff := cmp.Diff(want, table.routes[0].mirrors, cmp.AllowUnexported(mirror{}, service{})); diff != "" {
		t.Errorf("mirrors (-want +got):\n%s", diff)
	}
}

// No HTTPRoute (yet) spreads the requests over every version, as the parent Service would.
func TestHTTPRouteMissing(t *testing.T) {
	t.Parallel()
	table := compileHTTPRoute(nil, "shop", "reviews", httpSubsets)
	r, err := http.NewRequest(http.MethodGet, "http://reviews/any", nil)
	if err != nil {
		t.Fatal(err)
	}
	rt := table.selectRoute(r)
	if rt == nil || rt.gateway {
		t.Fatalf("route %+v, want the VirtualService's default spread", rt)
	}
	if d, ok := rt.pick(); !ok || d.subset != "" {
		t.Errorf("pick = %+v, %v; want any version", d, ok)
	}
}
