package istio

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

// corpusDir holds public VirtualServices and DestinationRules (its PROVENANCE.md says where each
// file comes from and what shape it has), relative to this package's directory.
const corpusDir = "../../../../shared/fixtures/istio-real-world"

// corpusCompanions names, for a file without a DestinationRule of its own, the corpus file whose
// DestinationRules go with it in its source repository. Only their DestinationRules are applied.
var corpusCompanions = map[string]string{
	"istio/virtual-service-reviews-90-10.yaml":                            "istio/destination-rule-all.yaml",
	"istio/virtual-service-reviews-test-v2.yaml":                          "istio/destination-rule-all.yaml",
	"istio/virtual-service-all-v1.yaml":                                   "istio/destination-rule-all.yaml",
	"istio/virtual-service-ratings-test-delay.yaml":                       "istio/destination-rule-all.yaml",
	"istio/bookinfo-gateway.yaml":                                         "istio/destination-rule-all.yaml",
	"istio/tcp-echo-20-v2.yaml":                                           "istio/tcp-echo-all-v1.yaml",
	"istio-tutorial/virtual-service-recommendation-v1_and_v2_75_25.yml":   "istio-tutorial/destination-rule-recommendation-v1-v2.yml",
	"istio-tutorial/virtual-service-promotion-v1-v2-v3.yml":               "istio-tutorial/destination-rule-recommendation-v1-v2-v3.yml",
	"istio-tutorial/virtual-service-recommendation-503.yml":               "istio-tutorial/destination-rule-recommendation_cb_policy_pool_ejection.yml",
	"istio-samples/vs-split-traffic.yaml":                                 "istio-samples/destinationrule.yaml",
	"istio-on-eks/catalogdetail-virtualservice-weight-based.yaml":         "istio-on-eks/catalogdetail-destinationrule.yaml",
	"istio-on-eks/catalogdetail-virtualservice-traffic-mirroring.yaml":    "istio-on-eks/catalogdetail-destinationrule.yaml",
	"istio-on-eks/catalogdetail-virtualservice-path-based.yaml":           "istio-on-eks/catalogdetail-destinationrule.yaml",
	"dynamic-environment/modify-valid-httproutes-00-virtual-service.yaml": "dynamic-environment/modify-valid-httproutes-00-base.yaml",
}

// corpusNamespaces names the namespace a file that pins none is written for, where its hosts
// say so: kiali's fault-injection VirtualService routes to reviews.bookinfo.svc.cluster.local,
// with a DestinationRule for the short host reviews beside it, in kiali's bookinfo namespace.
var corpusNamespaces = map[string]string{"kiali/bookinfo-fault-injection-reviews.yaml": "bookinfo"}

// corpusLax are the files that kubectl's strict field validation rejects (PROVENANCE.md): they
// are applied as `kubectl apply --validate=false` would, and the API server prunes or refuses.
var corpusLax = map[string]bool{"kiali/multiple-vs-gateways.yaml": true}

// corpusGolden is what meshroll does with each HTTP route of each VirtualService of the corpus
// ("-": a VirtualService without HTTP routes), with the target derived from that route
// (corpusTarget): {with the route meshroll chooses, with the route named in MESHROLL_ROUTE}.
// "steered" is exact ("steered X": meshroll chose route X); "refused: …" and "not stored: …"
// hold a substring of the refusal. Each refusal was read and judged right and clearly worded.
//
// Rows marked "bug:" expect the right behaviour and fail until the product is fixed:
//   - indexAB: with MESHROLL_ROUTE=http[N] (a route without a name), the A/B stage fails with
//     "internal error: the planned change … does not apply": the A/B route is inserted at
//     index N, and the plan re-resolves http[N] to the A/B route itself. The error also wraps
//     a preflight error, so errors.Is(err, traffic.ErrPreflight) holds for an internal error.
//   - userMirror: a route whose user mirrors it to the canary subset (istio-on-eks, kiali)
//     loses that mirror and its mirrorPercentage at the first weight step, without
//     MESHROLL_MIRROR_PERCENT: meshroll takes any mirror to the canary for its own.
var corpusGolden = map[string][2]string{
	"argo-rollouts/istio-host-http-tls-split.yaml istio-host-split-vsvc primary":                      {"steered", "steered"},
	"argo-rollouts/istio-host-only-tls-split.yaml istio-host-split-tls-vsvc -":                        {noHTTPRoute, noRouteNamed},
	"argo-rollouts/istio-subset-split-single-route.yaml istio-subset-split-single-route-vsvc http[0]": {"steered", "steered"}, // bug: indexAB
	"argo-rollouts/istio-subset-split.yaml istio-subset-split-vsvc primary":                           {"steered", "steered"},
	"argo-rollouts/multipleVirtualsvc.yaml rollouts-demo-vsvc1 primary":                               {"steered", "steered"},
	"argo-rollouts/multipleVirtualsvc.yaml rollouts-demo-vsvc2 secondary":                             {"steered", "steered"},
	// The DestinationRules of dynamic-environment define only the subset "shared" for these hosts.
	"dynamic-environment/delegate-virtual-service-00-base.yaml test-app-vs in-cluster-default": {canaryUndefined, canaryUndefined},
	"dynamic-environment/delegate-virtual-service-00-base.yaml test-app-vs-delegated haim":     {canaryUndefined, canaryUndefined},
	"dynamic-environment/modify-valid-httproutes-00-virtual-service.yaml details http[0]":      {canaryUndefined, canaryUndefined},
	"dynamic-environment/modify-valid-httproutes-00-virtual-service.yaml details http[1]":      {canaryUndefined, canaryUndefined},
	"dynamic-environment/weighted-routes-00-base.yaml test-app-vs in-cluster-default":          {severalMatched, "steered"},
	"dynamic-environment/weighted-routes-00-base.yaml test-app-vs nisan":                       {severalMatched, "steered"},
	"dynamic-environment/weighted-routes-00-base.yaml test-app-vs haim":                        {severalMatched, "steered"},
	"dynamic-environment/weighted-routes-00-base.yaml test-app-vs default":                     {severalMatched, "steered"},
	"flagger/faq-frontend-virtualservice.yaml frontend http[0]":                                {ownedByFlagger, ownedByFlagger},
	"istio-on-eks/catalogdetail-virtualservice-path-based.yaml catalogdetail http[0]":          {severalMatched, "steered"}, // bug: indexAB
	"istio-on-eks/catalogdetail-virtualservice-path-based.yaml catalogdetail http[1]":          {severalMatched, "steered"}, // bug: indexAB
	"istio-on-eks/catalogdetail-virtualservice-traffic-mirroring.yaml catalogdetail http[0]":   {"steered", "steered"},      // bug: userMirror, indexAB
	"istio-on-eks/catalogdetail-virtualservice-weight-based.yaml catalogdetail http[0]":        {"steered", "steered"},      // bug: indexAB
	// A multicluster host (a ServiceEntry, not a Kubernetes Service) cannot be named as the canary.
	"istio-samples/vs-20-cluster1.yaml productcatalog-migration http[0]":                       {notAService, notAService},
	"istio-samples/vs-split-traffic.yaml productcatalogservice http[0]":                        {"steered", "steered"},                                  // bug: indexAB
	"istio-tutorial/virtual-service-promotion-v1-v2-v3.yml recommendation http[0]":             {"refused: route http[2] of VirtualService", "steered"}, // bug: indexAB
	"istio-tutorial/virtual-service-promotion-v1-v2-v3.yml recommendation http[1]":             {"refused: route http[2] of VirtualService", "steered"}, // bug: indexAB
	"istio-tutorial/virtual-service-promotion-v1-v2-v3.yml recommendation http[2]":             {"steered", "steered"},                                  // bug: indexAB
	"istio-tutorial/virtual-service-recommendation-503.yml recommendation http[0]":             {severalCatchAll, "steered"},                            // bug: indexAB
	"istio-tutorial/virtual-service-recommendation-503.yml recommendation http[1]":             {severalCatchAll, "steered"},                            // bug: indexAB
	"istio-tutorial/virtual-service-recommendation-v1_and_v2_75_25.yml recommendation http[0]": {"steered", "steered"},                                  // bug: indexAB
	"istio/bookinfo-gateway.yaml bookinfo http[0]":                                             {"steered", "steered"},                                  // bug: indexAB
	"istio/fault-injection-details-v1.yaml details http[0]":                                    {severalCatchAll, canaryUndefined},
	"istio/fault-injection-details-v1.yaml details http[1]":                                    {severalCatchAll, canaryUndefined},
	"istio/tcp-echo-20-v2.yaml tcp-echo -":                                                     {noHTTPRoute, noRouteNamed},
	"istio/tcp-echo-all-v1.yaml tcp-echo -":                                                    {noHTTPRoute, noRouteNamed},
	"istio/testdata-rule-regex-route.yaml regex-route http[0]":                                 {"refused: route http[1] of VirtualService testns/regex-route has no destination with the stable subset \"v2\"", "steered"}, // bug: indexAB
	"istio/testdata-rule-regex-route.yaml regex-route http[1]":                                 {"steered", "steered"},                                                                                                      // bug: indexAB
	"istio/testdata-virtual-service-all.yaml all http[0]":                                      {severalMatched, "steered"},                                                                                                 // bug: indexAB
	"istio/testdata-virtual-service-all.yaml all http[1]":                                      {stableUndefined, stableUndefined},
	"istio/virtual-service-all-v1.yaml productpage http[0]":                                    {canaryUndefined, canaryUndefined},
	"istio/virtual-service-all-v1.yaml reviews http[0]":                                        {"steered", "steered"},         // bug: indexAB
	"istio/virtual-service-all-v1.yaml ratings http[0]":                                        {"steered", "steered"},         // bug: indexAB
	"istio/virtual-service-all-v1.yaml details http[0]":                                        {"steered", "steered"},         // bug: indexAB
	"istio/virtual-service-ratings-test-delay.yaml ratings http[0]":                            {"steered http[1]", "steered"}, // bug: indexAB
	"istio/virtual-service-ratings-test-delay.yaml ratings http[1]":                            {"steered", "steered"},         // bug: indexAB
	"istio/virtual-service-reviews-90-10.yaml reviews http[0]":                                 {"steered", "steered"},         // bug: indexAB
	"istio/virtual-service-reviews-test-v2.yaml reviews http[0]":                               {"steered", "steered"},         // bug: indexAB
	"istio/virtual-service-reviews-test-v2.yaml reviews http[1]":                               {"steered", "steered"},         // bug: indexAB
	"kiali/bookinfo-fault-injection-reviews.yaml virtual-service-reviews http[0]":              {"steered", "steered"},         // bug: indexAB
	"kiali/bookinfo-request-timeouts-reviews.yaml virtual-service-reviews http[0]":             {"steered", "steered"},         // bug: indexAB
	"kiali/bookinfo-reviews-mirroring.yaml reviews-mirroring-vs http[0]":                       {"steered", "steered"},         // bug: userMirror, indexAB
	"kiali/multiple-vs-gateways.yaml reviews1 http[0]":                                         {twoCanaries, twoCanaries},
	"kiali/multiple-vs-gateways.yaml reviews2 http[0]":                                         {twoCanaries, twoCanaries},
	"kiali/multiple-vs-gateways.yaml reviews3 http[0]":                                         {sniHostsRequired, sniHostsRequired},
	"kiali/multiple-vs-gateways.yaml reviews4 http[0]":                                         {sniHostsRequired, sniHostsRequired},
	// Weights split across two catch-all routes; the DestinationRule lives in a third namespace
	// (diff-ns), which Istio does not consult for clients in bookinfo, and neither does meshroll.
	"kiali/subset-presence-matching-subsets-diff-ns-fqdn.yaml reviews-vs http[0]":   {severalCatchAll, stableUndefined},
	"kiali/subset-presence-matching-subsets-diff-ns-fqdn.yaml reviews-vs http[1]":   {severalCatchAll, stableUndefined},
	"kubeflow-manifests/model-registry-virtual-service.yaml model-registry http[0]": {"steered", "steered"}, // bug: indexAB
}

// The refusals, each checked to be right and to say what to fix.
const (
	noHTTPRoute      = "refused: has no HTTP route (it routes only TCP or TLS traffic, which meshroll does not steer)"
	noRouteNamed     = `refused: MESHROLL_ROUTE="http[0]": VirtualService`
	canaryUndefined  = `refused: defines subset "canary" (defined:`
	stableUndefined  = "refused: (defined: none): add it to the DestinationRule or fix MESHROLL_STABLE_SUBSET"
	severalMatched   = "refused: only through several routes with match conditions"
	severalCatchAll  = "refused: has several HTTP routes without match conditions that reach"
	ownedByFlagger   = "refused: VirtualService test/frontend is managed by Canary podinfo (flagger.app/v1beta1)"
	notAService      = "refused: MESHROLL_CANARY_SERVICE=productcatalogservice-gke.default.global is not a Kubernetes Service name"
	twoCanaries      = `refused: has 2 destinations with the canary Service "reviews2" subset "v2": meshroll steers routes with one`
	sniHostsRequired = "not stored: spec.tls[0].match[0].sniHosts: Required value"
)

// abMatch is a MESHROLL_MATCH as config hands it over.
var abMatch = []map[string]any{{"headers": map[string]any{"x-canary": map[string]any{"exact": "1"}}}}

type corpusFile struct {
	name       string // relative to corpusDir
	docs       []*unstructured.Unstructured
	companions []*unstructured.Unstructured // DestinationRules of corpusCompanions[name]
}

// pinned lists the namespaces the file's documents name: shared by every case of the file (and
// of other files naming them), so those cases take turns.
func (f *corpusFile) pinned() []string {
	var out []string
	for _, d := range append(slices.Clone(f.docs), f.companions...) {
		ns := d.GetNamespace()
		if d.GetKind() == "Namespace" {
			ns = d.GetName()
		}
		if ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

// corpusCase is one HTTP route of one VirtualService of the corpus.
type corpusCase struct {
	file   *corpusFile
	vs     *unstructured.Unstructured
	route  string // its name, http[N], or "-" for a VirtualService without HTTP routes
	target Target // without Namespace: the VirtualService's, known when it is applied
}

func (c corpusCase) key() string { return c.file.name + " " + c.vs.GetName() + " " + c.route }

func TestRealWorldCorpus(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(corpusDir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the real-world corpus is missing: %v", err)
		}
		t.Skipf("the real-world corpus is missing: %v", err)
	}
	cases := loadCorpus(t)
	env := testenv.Get(t)
	var mu sync.Mutex
	got := map[string][2]string{}
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			for mode, name := range []string{"chosen", "named"} {
				t.Run(c.key()+" "+name, func(t *testing.T) {
					t.Parallel()
					outcome := runCorpusCase(t, env, c, mode == 1)
					mu.Lock()
					row := got[c.key()]
					row[mode] = outcome
					got[c.key()] = row
					mu.Unlock()
					want, ok := corpusGolden[c.key()]
					if ok && !outcomeMatches(outcome, want[mode]) {
						t.Errorf("outcome with the route %s:\n got: %s\nwant: %s", name, outcome, want[mode])
					}
				})
			}
		}
	})
	var table strings.Builder
	for _, c := range cases {
		row := got[c.key()]
		fmt.Fprintf(&table, "\n%s | %s | %s | stable %s, canary %s\n    chosen: %s\n    named:  %s",
			c.file.name, c.vs.GetName(), c.route, c.target.side(traffic.RoleStable), c.target.side(traffic.RoleCanary), row[0], row[1])
		if _, ok := corpusGolden[c.key()]; !ok {
			t.Errorf("no expectation for %s: add\n\t%q: {%q, %q},", c.key(), c.key(), row[0], row[1])
		}
	}
	t.Logf("outcomes (file | VirtualService | route | target):%s", table.String())
	for k := range corpusGolden {
		if _, ok := got[k]; !ok {
			t.Errorf("expectation for %s, which the corpus no longer has", k)
		}
	}
}

func outcomeMatches(got, want string) bool {
	if strings.HasPrefix(want, "steered") {
		return got == want
	}
	kind, text, _ := strings.Cut(want, ": ")
	return strings.HasPrefix(got, kind+": ") && strings.Contains(got, text)
}

// runCorpusCase steers the case's route (named in MESHROLL_ROUTE, or chosen by meshroll) to 30
// and back to 0, then puts an A/B route in and takes it out, checking after each write that
// nothing but the route's weights (and the A/B route while it is in) changed; or checks that
// meshroll refused before writing anything. It returns the outcome.
func runCorpusCase(t *testing.T, env *testenv.Env, c corpusCase, named bool) (outcome string) {
	target := c.target
	if named {
		target.Route = c.route
		if c.route == "-" {
			target.Route = "http[0]"
		}
	}
	if err := setUp(t, env, c, &target); err != nil {
		return "not stored: " + err.Error()
	}
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("panic: %v\n%s", r, debug.Stack())
			outcome = fmt.Sprintf("panic: %v", r)
		}
	}()
	ctx := t.Context()
	original := getVS(t, env, target)
	refused := func(step string, err error, before *unstructured.Unstructured) string {
		t.Helper()
		switch {
		case !errors.Is(err, traffic.ErrPreflight):
			t.Errorf("%s: not a preflight refusal: %v", step, err)
		case strings.Contains(err.Error(), "internal error"):
			t.Errorf("%s: an internal error, not a refusal the user can act on: %v", step, err)
		}
		if rv := getVS(t, env, target).GetResourceVersion(); rv != before.GetResourceVersion() {
			t.Errorf("%s was refused but wrote: resourceVersion %s → %s", step, before.GetResourceVersion(), rv)
		}
		return "refused: " + err.Error()
	}

	client := NewClient(env.Istio, env.Kube, target)
	state, err := client.Preflight(ctx, traffic.Checks{Canary: true, Write: true})
	if err != nil {
		return refused("preflight", err, original)
	}
	initial := state.Routing()
	i := state.(*State).routeIndex
	if _, err := client.Apply(ctx, traffic.Desired{CanaryWeight: 30}); err != nil {
		return refused("canary weight 30", err, original)
	}
	checkOnlyWeights(t, "at canary weight 30", original, getVS(t, env, target), i)
	if _, err := client.Apply(ctx, traffic.Desired{CanaryWeight: 0}); err != nil {
		t.Errorf("canary weight 0 after 30: %v", err)
		return "failed: " + err.Error()
	}
	steered := getVS(t, env, target)
	checkOnlyWeights(t, "back at canary weight 0", original, steered, i)
	final, err := client.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkWeightsBack(t, initial, final.Routing())

	target.Match = abMatch
	ab := NewClient(env.Istio, env.Kube, target)
	if _, err := ab.Apply(ctx, traffic.Desired{KeepWeights: true, AB: true}); err != nil {
		return "steered, A/B " + refused("A/B route", err, steered)
	}
	checkABRoute(t, target, steered, getVS(t, env, target), i)
	if _, err := ab.Apply(ctx, traffic.Desired{CanaryWeight: 0}); err != nil {
		t.Errorf("removing the A/B route: %v", err)
		return "failed: " + err.Error()
	}
	if diff := cmp.Diff(withoutServerFields(steered), withoutServerFields(getVS(t, env, target))); diff != "" {
		t.Errorf("after the A/B route was removed, the object is not as before it (-before +after):\n%s", diff)
	}
	if initial.Route != c.route {
		return "steered " + initial.Route
	}
	return "steered"
}

// checkOnlyWeights fails unless got is want but for the weights of http[i]'s destinations and a
// destination appended to it: every other field of that route, every other route, the tcp and
// tls routes and the metadata are as they were.
func checkOnlyWeights(t *testing.T, when string, want, got *unstructured.Unstructured, i int) {
	t.Helper()
	if diff := cmp.Diff(withoutRouteList(t, want, i), withoutRouteList(t, got, i)); diff != "" {
		t.Errorf("%s, more than the weights of http[%d] changed (-original +got):\n%s", when, i, diff)
	}
	before, after := routeList(t, want, i), routeList(t, got, i)
	if len(after) != len(before) && len(after) != len(before)+1 {
		t.Errorf("%s, http[%d] has %d destinations, had %d", when, i, len(after), len(before))
		return
	}
	for j := range before {
		b, a := asMap(before[j]), asMap(after[j])
		delete(b, "weight")
		delete(a, "weight")
		if diff := cmp.Diff(b, a); diff != "" {
			t.Errorf("%s, destination %d of http[%d] changed beyond its weight (-original +got):\n%s", when, j, i, diff)
		}
	}
}

// checkWeightsBack fails unless the route, back at canary weight 0, gives the stable
// destination all that its other destinations leave, as before the rollout.
func checkWeightsBack(t *testing.T, before, after traffic.Routing) {
	t.Helper()
	if err := traffic.CheckWeights(after.Destinations); err != nil || after.CanaryWeight() != 0 {
		t.Errorf("weights at canary 0: %s (%v)", traffic.DescribeWeights(after.Destinations), err)
	}
	others := 0
	for j, d := range before.Destinations {
		if d.Role == traffic.RoleOther {
			others += d.Weight
			if after.Destinations[j].Weight != d.Weight {
				t.Errorf("other destination %s moved from %d to %d", d.Label(), d.Weight, after.Destinations[j].Weight)
			}
		}
	}
	for _, d := range after.Destinations {
		if d.Role == traffic.RoleStable && d.Weight != 100-others {
			t.Errorf("stable %s has %d at canary 0, want %d", d.Label(), d.Weight, 100-others)
		}
	}
}

// checkABRoute fails unless got is want with meshroll's A/B route inserted right before http[i]:
// a copy of http[i]'s policies, matching its conditions and the user's, sending to the canary.
func checkABRoute(t *testing.T, target Target, want, got *unstructured.Unstructured, i int) {
	t.Helper()
	routes, _, _ := unstructured.NestedSlice(got.Object, "spec", "http")
	if len(routes) <= i+1 {
		t.Errorf("no A/B route: %d HTTP routes", len(routes))
		return
	}
	ab, steered := asMap(routes[i]), asMap(routes[i+1])
	if ab["name"] != target.abRouteName() {
		t.Errorf("http[%d] is %v, want the A/B route %s", i, ab["name"], target.abRouteName())
	}
	without := got.DeepCopy()
	if err := unstructured.SetNestedSlice(without.Object, slices.Delete(routes, i, i+1), "spec", "http"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(withoutServerFields(want), withoutServerFields(without)); diff != "" {
		t.Errorf("besides the A/B route, the object changed (-before +after):\n%s", diff)
	}
	for k, v := range steered {
		switch k {
		case "name", "route", "mirror", "mirrorPercentage", "mirrorPercent", "mirrors", "match":
		default:
			if !reflect.DeepEqual(ab[k], v) {
				t.Errorf("the A/B route's %s is %v, the steered route's %v", k, ab[k], v)
			}
		}
	}
	matches, _ := ab["match"].([]any)
	for _, m := range matches {
		if h, _, _ := unstructured.NestedMap(asMap(m), "headers", "x-canary"); !reflect.DeepEqual(h, map[string]any{"exact": "1"}) {
			t.Errorf("A/B match %v lacks MESHROLL_MATCH", m)
		}
	}
	dests := hostsAndSubsets(ab["route"])
	if len(matches) == 0 || len(dests) != 1 || !target.side(traffic.RoleCanary).matches(&networking.Destination{Host: dests[0].host, Subset: dests[0].subset}, target.Namespace) {
		t.Errorf("A/B route matches %v and routes to %v, want MESHROLL_MATCH to the canary", ab["match"], ab["route"])
	}
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func routeList(t *testing.T, obj *unstructured.Unstructured, i int) []any {
	t.Helper()
	routes, _, _ := unstructured.NestedSlice(obj.Object, "spec", "http")
	if i >= len(routes) {
		t.Fatalf("http[%d] is gone: %d routes", i, len(routes))
	}
	list, _ := asMap(routes[i])["route"].([]any)
	return list
}

func withoutRouteList(t *testing.T, obj *unstructured.Unstructured, i int) map[string]any {
	t.Helper()
	m := withoutServerFields(obj)
	routes, _, _ := unstructured.NestedSlice(m, "spec", "http")
	if i >= len(routes) {
		t.Fatalf("http[%d] is gone: %d routes", i, len(routes))
	}
	delete(asMap(routes[i]), "route")
	if err := unstructured.SetNestedSlice(m, routes, "spec", "http"); err != nil {
		t.Fatal(err)
	}
	return m
}
