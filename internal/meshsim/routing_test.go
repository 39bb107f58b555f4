package meshsim

import (
	"math"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func exact(s string) *apinetworking.StringMatch {
	return &apinetworking.StringMatch{MatchType: &apinetworking.StringMatch_Exact{Exact: s}}
}

func prefix(s string) *apinetworking.StringMatch {
	return &apinetworking.StringMatch{MatchType: &apinetworking.StringMatch_Prefix{Prefix: s}}
}

func regex(s string) *apinetworking.StringMatch {
	return &apinetworking.StringMatch{MatchType: &apinetworking.StringMatch_Regex{Regex: s}}
}

func to(subset string, weight int32) *apinetworking.HTTPRouteDestination {
	return &apinetworking.HTTPRouteDestination{Destination: &apinetworking.Destination{Host: "reviews", Subset: subset}, Weight: weight}
}

func TestSelectRoute(t *testing.T) {
	t.Parallel()
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews"}}
	vs.Spec.Hosts = []string{"reviews"}
	vs.Spec.Http = []*apinetworking.HTTPRoute{
		{Name: "tester", Match: []*apinetworking.HTTPMatchRequest{
			{Name: "exact", Headers: map[string]*apinetworking.StringMatch{"end-user": exact("tester")}},
			{Name: "prefix", Headers: map[string]*apinetworking.StringMatch{"End-User": prefix("qa-")}},
		}, Route: []*apinetworking.HTTPRouteDestination{to("v2", 0)}},
		{Name: "regex-header", Match: []*apinetworking.HTTPMatchRequest{
			{Headers: map[string]*apinetworking.StringMatch{"x-build": regex(`[0-9]+`)}},
		}, Route: []*apinetworking.HTTPRouteDestination{to("v3", 0)}},
		{Name: "present", Match: []*apinetworking.HTTPMatchRequest{
			{Headers: map[string]*apinetworking.StringMatch{"x-debug": {}}},
		}, Route: []*apinetworking.HTTPRouteDestination{to("debug", 0)}},
		{Name: "api", Match: []*apinetworking.HTTPMatchRequest{
			{Uri: exact("/api"), Method: exact("POST")},
			{Uri: prefix("/api/"), WithoutHeaders: map[string]*apinetworking.StringMatch{"x-legacy": exact("1")}},
		}, Route: []*apinetworking.HTTPRouteDestination{to("api", 0)}},
		{Name: "static", Match: []*apinetworking.HTTPMatchRequest{
			{Uri: regex(`/static/[a-z]+\.css`), IgnoreUriCase: true},
			{QueryParams: map[string]*apinetworking.StringMatch{"canary": exact("yes")}},
		}, Route: []*apinetworking.HTTPRouteDestination{to("static", 0)}},
		{Name: "unmatchable", Match: []*apinetworking.HTTPMatchRequest{
			{SourceLabels: map[string]string{"app": "productpage"}},
			{Headers: map[string]*apinetworking.StringMatch{"x-broken": regex(`(`)}},
			{Headers: map[string]*apinetworking.StringMatch{"@request.auth.claims.group": exact("beta")}},
		}, Route: []*apinetworking.HTTPRouteDestination{to("never", 0)}},
		// meshroll's A/B route: the user's conditions ANDed with the steered route's match.
		{Name: "meshroll-ab-v2", Match: []*apinetworking.HTTPMatchRequest{
			{Uri: prefix("/reviews"), Headers: map[string]*apinetworking.StringMatch{"end-user": exact("jason")}},
			{Uri: prefix("/reviews"), Headers: map[string]*apinetworking.StringMatch{"cookie": regex(`.*\bgroup=beta\b.*`)}},
		}, Route: []*apinetworking.HTTPRouteDestination{to("v2", 0)}},
		{Name: "reviews", Match: []*apinetworking.HTTPMatchRequest{{Uri: prefix("/reviews")}},
			Route: []*apinetworking.HTTPRouteDestination{to("v1", 0)}},
		{Name: "default", Route: []*apinetworking.HTTPRouteDestination{to("v1", 90), to("v2", 10)}},
		{Name: "after the catch-all", Route: []*apinetworking.HTTPRouteDestination{to("never", 0)}},
	}
	table := compile(vs, "shop", "reviews")

	for _, tc := range []struct {
		name   string
		method string
		target string
		header http.Header
		want   string
	}{
		{name: "no headers", target: "/", want: "default"},
		{name: "header exact", target: "/", header: http.Header{"End-User": {"tester"}}, want: "tester"},
		{name: "header exact is case-sensitive in the value", target: "/", header: http.Header{"End-User": {"Tester"}}, want: "default"},
		{name: "header prefix with mixed-case name", target: "/", header: http.Header{"End-User": {"qa-7"}}, want: "tester"},
		{name: "header regex is anchored", target: "/", header: http.Header{"X-Build": {"12a"}}, want: "default"},
		{name: "header regex", target: "/", header: http.Header{"X-Build": {"123"}}, want: "regex-header"},
		{name: "empty match means present", target: "/", header: http.Header{"X-Debug": {""}}, want: "present"},
		{name: "uri exact and method", method: http.MethodPost, target: "/api", want: "api"},
		{name: "uri exact, other method", method: http.MethodGet, target: "/api", want: "default"},
		{name: "uri prefix", target: "/api/v1/books", want: "api"},
		{name: "withoutHeaders excludes", target: "/api/v1/books", header: http.Header{"X-Legacy": {"1"}}, want: "default"},
		{name: "uri regex ignoring case", target: "/STATIC/Site.CSS", want: "static"},
		{name: "uri regex needs a full match", target: "/static/site.css.map", want: "default"},
		{name: "query parameter", target: "/x?canary=yes", want: "static"},
		{name: "first route wins", target: "/api/x", header: http.Header{"End-User": {"tester"}}, want: "tester"},
		{name: "a header named like a JWT claim is no claim", target: "/", header: http.Header{"@request.auth.claims.group": {"beta"}}, want: "default"},
		{name: "A/B route: both conditions", target: "/reviews/1", header: http.Header{"End-User": {"jason"}}, want: "meshroll-ab-v2"},
		{name: "A/B route: the other entry", target: "/reviews/1", header: http.Header{"Cookie": {"session=1; group=beta"}}, want: "meshroll-ab-v2"},
		{name: "A/B route: the route's own condition unmet", target: "/ratings", header: http.Header{"End-User": {"jason"}}, want: "default"},
		{name: "A/B route: the user's condition unmet", target: "/reviews/1", header: http.Header{"End-User": {"json"}}, want: "reviews"},
		{name: "A/B route: a regex on a cookie needs a full match", target: "/reviews/1", header: http.Header{"Cookie": {"group=betamax"}}, want: "reviews"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			r, err := http.NewRequest(method, "http://reviews"+tc.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				r.Header[k] = v
			}
			got := "(none)"
			if rt := table.selectRoute(r); rt != nil {
				got = rt.name
			}
			if got != tc.want {
				t.Errorf("route = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestWeightsAndPick(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		dests []*apinetworking.HTTPRouteDestination
		want  map[string]int
	}{
		{name: "split", dests: []*apinetworking.HTTPRouteDestination{to("v1", 75), to("v2", 25)}, want: map[string]int{"v1": 75, "v2": 25}},
		{name: "single without weight", dests: []*apinetworking.HTTPRouteDestination{to("v1", 0)}, want: map[string]int{"v1": 100}},
		{name: "all zero goes to the first", dests: []*apinetworking.HTTPRouteDestination{to("v2", 0), to("v1", 0)}, want: map[string]int{"v2": 100, "v1": 0}},
		{name: "zero weight gets nothing", dests: []*apinetworking.HTTPRouteDestination{to("v1", 100), to("v2", 0)}, want: map[string]int{"v1": 100, "v2": 0}},
		{name: "negative counts as zero", dests: []*apinetworking.HTTPRouteDestination{to("v1", 120), to("v2", -20)}, want: map[string]int{"v1": 120, "v2": 0}},
		{name: "no subset", dests: []*apinetworking.HTTPRouteDestination{to("", 0)}, want: map[string]int{"": 100}},
		{name: "no destinations", dests: nil, want: map[string]int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vs := &networkingv1.VirtualService{}
			vs.Spec.Http = []*apinetworking.HTTPRoute{{Route: tc.dests}}
			rt := &compile(vs, "shop", "reviews").routes[0]
			if diff := cmp.Diff(tc.want, rt.weights()); diff != "" {
				t.Errorf("weights (-want +got):\n%s", diff)
			}
			// Every pick lands on a subset with a positive weight (or the only one).
			for range 1000 {
				d, ok := rt.pick()
				if !ok {
					if len(tc.dests) != 0 {
						t.Fatal("pick found no destination")
					}
					break
				}
				if tc.want[d.subset] == 0 {
					t.Fatalf("picked %q with weight 0", d.subset)
				}
			}
		})
	}
}

func TestServiceOf(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]service{
		"reviews":                          {fqdn: "reviews.shop.svc.cluster.local", name: "reviews", namespace: "shop"},
		"reviews.other":                    {fqdn: "reviews.other.svc.cluster.local", name: "reviews", namespace: "other"},
		"reviews.other.svc":                {fqdn: "reviews.other.svc.cluster.local", name: "reviews", namespace: "other"},
		"reviews.other.svc.cluster.local":  {fqdn: "reviews.other.svc.cluster.local", name: "reviews", namespace: "other"},
		"reviews.example.com":              {fqdn: "reviews.example.com", name: "reviews.example.com", namespace: "shop"},
		"reviews.other.svc.mesh.internal":  {fqdn: "reviews.other.svc.mesh.internal", name: "reviews", namespace: "other"},
		"api.payments.example.org.example": {fqdn: "api.payments.example.org.example", name: "api.payments.example.org.example", namespace: "shop"},
	} {
		if got := serviceOf(host, "shop"); got != want {
			t.Errorf("serviceOf(%q) = %+v, want %+v", host, got, want)
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	vs := &networkingv1.VirtualService{}
	vs.Spec.Hosts = []string{"reviews"}
	vs.Spec.Http = []*apinetworking.HTTPRoute{
		{Match: []*apinetworking.HTTPMatchRequest{{Headers: map[string]*apinetworking.StringMatch{"end-user": regex("test.*")}}}, Route: []*apinetworking.HTTPRouteDestination{to("v2", 0)}},
		{Route: []*apinetworking.HTTPRouteDestination{to("v1", 90), to("v2", 10)}},
	}
	table := compile(vs, "shop", "reviews")
	r, err := http.NewRequest(http.MethodGet, "http://reviews/", nil)
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("end-user", "someone")
	for b.Loop() {
		if _, ok := table.selectRoute(r).pick(); !ok {
			b.Fatal("no destination")
		}
	}
}

func TestCompileMirrors(t *testing.T) {
	t.Parallel()
	dest := func(subset string) *apinetworking.Destination {
		return &apinetworking.Destination{Host: "reviews", Subset: subset}
	}
	percent := func(v float64) *apinetworking.Percent { return &apinetworking.Percent{Value: v} }
	for _, tc := range []struct {
		name  string
		route *apinetworking.HTTPRoute
		want  []mirror
	}{
		{name: "none", route: &apinetworking.HTTPRoute{}},
		{name: "mirror without a percentage takes every request", route: &apinetworking.HTTPRoute{Mirror: dest("v2")}, want: []mirror{{subset: "v2", percent: 100}}},
		{name: "mirrorPercentage", route: &apinetworking.HTTPRoute{Mirror: dest("v2"), MirrorPercentage: percent(0.5)}, want: []mirror{{subset: "v2", percent: 0.5}}},
		{name: "an explicit 0 mirrors nothing", route: &apinetworking.HTTPRoute{Mirror: dest("v2"), MirrorPercentage: percent(0)}},
		{name: "the deprecated mirrorPercent", route: &apinetworking.HTTPRoute{Mirror: dest("v2"), MirrorPercent: &wrapperspb.UInt32Value{Value: 30}}, want: []mirror{{subset: "v2", percent: 30}}},
		{name: "mirrorPercent 0", route: &apinetworking.HTTPRoute{Mirror: dest("v2"), MirrorPercent: &wrapperspb.UInt32Value{}}},
		{name: "mirrorPercentage wins over mirrorPercent", route: &apinetworking.HTTPRoute{Mirror: dest("v2"), MirrorPercentage: percent(5), MirrorPercent: &wrapperspb.UInt32Value{Value: 30}}, want: []mirror{{subset: "v2", percent: 5}}},
		{name: "above 100 counts as 100", route: &apinetworking.HTTPRoute{Mirror: dest("v2"), MirrorPercentage: percent(150)}, want: []mirror{{subset: "v2", percent: 100}}},
		{name: "a percentage without mirror", route: &apinetworking.HTTPRoute{MirrorPercentage: percent(50)}},
		{name: "mirror without subset", route: &apinetworking.HTTPRoute{Mirror: dest("")}, want: []mirror{{subset: "", percent: 100}}},
		{name: "mirrors", route: &apinetworking.HTTPRoute{Mirrors: []*apinetworking.HTTPMirrorPolicy{
			{Destination: dest("v2")},
			{Destination: dest("v3"), Percentage: percent(20)},
			{Destination: dest("v4"), Percentage: percent(0)},
			{Percentage: percent(20)},
		}}, want: []mirror{{subset: "v2", percent: 100}, {subset: "v3", percent: 20}}},
		{name: "mirror and mirrors", route: &apinetworking.HTTPRoute{Mirror: dest("v2"), MirrorPercentage: percent(10), Mirrors: []*apinetworking.HTTPMirrorPolicy{{Destination: dest("v3")}}},
			want: []mirror{{subset: "v2", percent: 10}, {subset: "v3", percent: 100}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, compileMirrors(tc.route), cmp.AllowUnexported(mirror{})); diff != "" {
				t.Errorf("mirrors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMirrorCopied checks the draw of a mirror: within 5 standard deviations (binomial) of
// its percentage, and every request at 100.
func TestMirrorCopied(t *testing.T) {
	t.Parallel()
	for _, percent := range []float64{0.5, 25, 100} {
		const n = 20000
		copied := 0
		for range n {
			if (mirror{subset: "v2", percent: percent}).copied() {
				copied++
			}
		}
		p := percent / 100
		if tolerance := 5 * math.Sqrt(n*p*(1-p)); math.Abs(float64(copied)-n*p) > tolerance {
			t.Errorf("mirror at %g%% copied %d of %d requests, want %.0f ± %.0f", percent, copied, n, n*p, tolerance)
		}
	}
}
