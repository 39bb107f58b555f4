package istio

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	networking "istio.io/api/networking/v1"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshroll/meshroll/internal/traffic"
)

var update = flag.Bool("update", false, "rewrite golden files")

func loadFixture(t testing.TB, name string) *clientnetworking.VirtualService {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "virtualservices", name))
	if err != nil {
		t.Fatal(err)
	}
	var vs clientnetworking.VirtualService
	if err := yaml.Unmarshal(data, &vs); err != nil {
		t.Fatalf("failed to decode %s: %v", name, err)
	}
	return &vs
}

// services is a target whose stable and canary destinations are named by their Services.
func services(stable, canary string) Target {
	return Target{Namespace: "bookinfo", VirtualService: "reviews", StableService: stable, CanaryService: canary}
}

func target(stable, canary, route string) Target {
	return Target{Namespace: "bookinfo", VirtualService: "reviews", Route: route, StableSubset: stable, CanarySubset: canary}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fixture   string
		target    Target
		weight    int
		wantRoute string
		wantAfter string // traffic.DescribeWeights of the result
		wantErr   error
	}{
		{name: "header route pinned to canary is left alone", fixture: "bookinfo-reviews.yaml", target: target("v1", "v2", ""), weight: 20, wantRoute: "default", wantAfter: "v1 80, v2 20"},
		{name: "lone destination without weight, rollback is unchanged", fixture: "bookinfo-reviews.yaml", target: target("v1", "v2", ""), weight: 0, wantRoute: "default", wantAfter: "v1 100"},
		{name: "lone destination promoted in one go", fixture: "bookinfo-reviews.yaml", target: target("v1", "v2", ""), weight: 100, wantRoute: "default", wantAfter: "v1 0, v2 100"},
		{name: "named route wins over the catch-all rule", fixture: "bookinfo-reviews.yaml", target: target("v1", "v2", "jason"), wantErr: traffic.ErrSubsetNotInRoute},
		{name: "route policies around a weighted split", fixture: "weighted-with-policies.yaml", target: target("v1", "v2", ""), weight: 25, wantRoute: "default", wantAfter: "v1 75, v2 25"},
		{name: "same weight again plans nothing", fixture: "weighted-with-policies.yaml", target: target("v1", "v2", ""), weight: 10, wantRoute: "default", wantAfter: "v1 90, v2 10"},
		{name: "third subset keeps its weight", fixture: "three-subsets.yaml", target: target("v1", "v2", ""), weight: 50, wantRoute: "http[0]", wantAfter: "v1 20, v3 30, v2 50"},
		{name: "third subset: all that is left", fixture: "three-subsets.yaml", target: target("v1", "v2", ""), weight: 70, wantRoute: "http[0]", wantAfter: "v1 0, v3 30, v2 70"},
		{name: "third subset: more than is left", fixture: "three-subsets.yaml", target: target("v1", "v2", ""), weight: 71, wantErr: traffic.ErrWeightTooLarge},
		{name: "fqdn host and port copied to the canary", fixture: "fqdn-port.yaml", target: Target{Namespace: "prod", VirtualService: "reviews", StableSubset: "stable", CanarySubset: "canary"}, weight: 10, wantRoute: "primary", wantAfter: "stable 90, canary 10"},
		{name: "ambiguous without a catch-all", fixture: "ambiguous.yaml", target: target("v1", "v2", ""), weight: 10, wantErr: traffic.ErrAmbiguousRoute},
		{name: "ambiguous resolved by name", fixture: "ambiguous.yaml", target: target("v1", "v2", "api"), weight: 10, wantRoute: "api", wantAfter: "v1 90, v2 10"},
		{name: "route name not found", fixture: "ambiguous.yaml", target: target("v1", "v2", "web"), weight: 10, wantErr: traffic.ErrRouteNotFound},
		{name: "subsets in no route", fixture: "ambiguous.yaml", target: target("blue", "green", ""), weight: 10, wantErr: traffic.ErrRouteNotFound},
		{name: "stable subset missing from the route", fixture: "no-stable.yaml", target: target("v1", "v2", ""), weight: 10, wantErr: traffic.ErrSubsetNotInRoute},
		{name: "the only route, with match conditions", fixture: "matched-only.yaml", target: target("v1", "v2", ""), weight: 10, wantRoute: "everything", wantAfter: "v1 90, v2 10"},
		{name: "several routes with match conditions", fixture: "ambiguous.yaml", target: target("v1", "v3", ""), weight: 10, wantErr: traffic.ErrAmbiguousRoute},
		{name: "unnamed route by index", fixture: "three-subsets.yaml", target: target("v1", "v2", "http[0]"), weight: 20, wantRoute: "http[0]", wantAfter: "v1 50, v3 30, v2 20"},
		{name: "index out of range", fixture: "three-subsets.yaml", target: target("v1", "v2", "http[1]"), weight: 20, wantErr: traffic.ErrRouteNotFound},
		{name: "index of a named route", fixture: "ambiguous.yaml", target: target("v1", "v2", "http[1]"), weight: 10, wantRoute: "api", wantAfter: "v1 90, v2 10"},
		{name: "matched route named", fixture: "matched-only.yaml", target: target("v1", "v2", "everything"), weight: 10, wantRoute: "everything", wantAfter: "v1 90, v2 10"},
		{name: "rollback from promoted", fixture: "promoted.yaml", target: target("v1", "v2", ""), weight: 0, wantRoute: "http[0]", wantAfter: "v1 100, v2 0"},
		{name: "weight out of range", fixture: "promoted.yaml", target: target("v1", "v2", ""), weight: 101, wantErr: traffic.ErrWeightTooLarge},
		{name: "services: fqdn stable, short canary", fixture: "host-split.yaml", target: services("reviews-stable", "reviews-canary"), weight: 10, wantRoute: "primary", wantAfter: "reviews-stable.bookinfo.svc.cluster.local 90, reviews-canary 10"},
		{name: "services named fully qualified", fixture: "host-split.yaml", target: services("reviews-stable.bookinfo.svc.cluster.local", "reviews-canary.bookinfo"), weight: 100, wantRoute: "primary", wantAfter: "reviews-stable.bookinfo.svc.cluster.local 0, reviews-canary 100"},
		{name: "services: canary service appended with the stable port", fixture: "host-lone.yaml", target: services("reviews-stable", "reviews-canary"), weight: 20, wantRoute: "http[0]", wantAfter: "reviews-stable 80, reviews-canary 20"},
		{name: "services in another namespace are other hosts", fixture: "host-split.yaml", target: services("reviews-stable.prod", "reviews-canary.prod"), weight: 10, wantErr: traffic.ErrRouteNotFound},
		{name: "service and subset both pin the destination", fixture: "bookinfo-reviews.yaml", target: Target{Namespace: "bookinfo", VirtualService: "reviews", StableService: "reviews", StableSubset: "v1", CanaryService: "reviews", CanarySubset: "v2"}, weight: 30, wantRoute: "default", wantAfter: "v1 70, v2 30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vs := loadFixture(t, tt.fixture)
			state, err := stateOf(vs.Namespace, vs.Name, "1", vs.Spec.DeepCopy(), tt.target)
			var change traffic.Change
			if err == nil {
				change, err = state.Plan(traffic.Desired{CanaryWeight: tt.weight})
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, traffic.ErrPreflight) {
					t.Fatalf("err = %v, want %v (and traffic.ErrPreflight)", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if change.After.Route != tt.wantRoute {
				t.Errorf("route = %q, want %q", change.After.Route, tt.wantRoute)
			}
			if got := traffic.DescribeWeights(change.After.Destinations); got != tt.wantAfter {
				t.Errorf("after = %q, want %q", got, tt.wantAfter)
			}
			if change.Changed != (traffic.DescribeWeights(change.Before.Destinations) != tt.wantAfter) {
				t.Errorf("changed = %v for %s → %s", change.Changed, traffic.DescribeWeights(change.Before.Destinations), tt.wantAfter)
			}
			original := specJSON(t, &vs.Spec)
			checkPatch(t, original, change)
			// The original spec is never modified by planning.
			if diff := cmp.Diff(original, specJSON(t, &vs.Spec)); diff != "" {
				t.Errorf("Plan modified its input (-before +after):\n%s", diff)
			}
			golden(t, filepath.Join("plan", fileName(tt.name)+".json"), patchDocument(t, change))
		})
	}
}

// checkPatch applies the change's patch to the original spec, with the JSON patch library
// the API server uses, and requires the result to be exactly the planned next state: the
// patch is the change, all of the change and nothing but the change.
func checkPatch(t testing.TB, original []byte, change traffic.Change) {
	t.Helper()
	checkPatchDocument(t, []byte(`{"metadata":{},"spec":`+string(original)+`}`), change)
}

// checkPatchDocument is checkPatch on a document with metadata (see State.document).
func checkPatchDocument(t testing.TB, doc []byte, change traffic.Change) {
	t.Helper()
	ops, err := json.Marshal(change.Patch)
	if err != nil {
		t.Fatal(err)
	}
	if len(change.Patch) > 0 {
		p, err := jsonpatch.DecodePatch(ops)
		if err != nil {
			t.Fatal(err)
		}
		if doc, err = p.Apply(doc); err != nil {
			t.Fatalf("patch %s does not apply: %v", ops, err)
		}
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(normalizeJSON(t, specJSON(t, change.Next.(*State).spec)), normalizeJSON(t, got["spec"])); diff != "" {
		t.Errorf("patched spec differs from the planned one (-planned +patched):\n%s", diff)
	}
}

func specJSON(t testing.TB, spec *networking.VirtualService) []byte {
	t.Helper()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func normalizeJSON(t testing.TB, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return dropZeroWeights(v)
}

// dropZeroWeights treats "weight": 0 and an absent weight alike (they mean the same to Istio,
// and the protobuf encoding omits zero).
func dropZeroWeights(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if w, ok := v["weight"].(float64); ok && w == 0 {
			delete(v, "weight")
		}
		for k, e := range v {
			v[k] = dropZeroWeights(e)
		}
	case []any:
		for i, e := range v {
			v[i] = dropZeroWeights(e)
		}
	}
	return v
}

func patchDocument(t testing.TB, c traffic.Change) []byte {
	t.Helper()
	data, err := c.PatchJSON("1")
	if err != nil {
		t.Fatal(err)
	}
	var v any
	_ = json.Unmarshal(data, &v)
	out, _ := json.MarshalIndent(v, "", "  ")
	return append(out, '\n')
}

// golden compares got with testdata/golden/<name>, or rewrites it with -update.
func golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "..", "..", "testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

// fileName turns a test case name into a file name: lower-case letters, digits and dashes.
func fileName(name string) string {
	return strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(name)), "-")
}

// The patch's test operations pin every destination whose weight it writes: applied to the
// same route with its destinations in another order, or renamed, it fails as a whole, with no
// weight written, even where no resourceVersion guards it.
func TestPatchPinsWhatItReliesOn(t *testing.T) {
	t.Parallel()
	vs := loadFixture(t, "three-subsets.yaml")
	state, err := stateOf(vs.Namespace, vs.Name, "1", vs.Spec.DeepCopy(), target("v1", "v2", ""))
	if err != nil {
		t.Fatal(err)
	}
	change, err := state.Plan(traffic.Desired{CanaryWeight: 25})
	if err != nil {
		t.Fatal(err)
	}
	ops, err := json.Marshal(change.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := patch.Apply([]byte(`{"spec":` + string(specJSON(t, &vs.Spec)) + `}`)); err != nil {
		t.Fatalf("the patch does not apply to the spec it was planned on: %v", err)
	}
	for name, edit := range map[string]func(*networking.VirtualService){
		"canary moved to the front": func(spec *networking.VirtualService) {
			r := spec.Http[0].Route
			r[0], r[1], r[2] = r[2], r[0], r[1]
		},
		"stable subset renamed": func(spec *networking.VirtualService) { spec.Http[0].Route[0].Destination.Subset = "v1-old" },
	} {
		spec := vs.Spec.DeepCopy()
		edit(spec)
		if _, err := patch.Apply([]byte(`{"spec":` + string(specJSON(t, spec)) + `}`)); err == nil {
			t.Errorf("%s: the patch applied to a route it was not planned on", name)
		}
	}
}

// stateOf is NewState for a typed spec.
func stateOf(namespace, name, resourceVersion string, spec *networking.VirtualService, target Target) (*State, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return NewState(namespace, name, resourceVersion, data, target)
}
