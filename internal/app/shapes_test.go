package app

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/testenv"
)

// routes are the names of the reviews VirtualService's HTTP routes, in order, with the mirror
// of the default route ("" when none).
func routes(t *testing.T, env *testenv.Env, ns string) ([]string, string) {
	t.Helper()
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	mirror := ""
	for _, r := range vs.Spec.Http {
		names = append(names, r.Name)
		if r.Name == "default" && r.Mirror != nil {
			mirror = r.Mirror.Subset
			if r.MirrorPercentage != nil {
				mirror += " " + strings.TrimSuffix(strings.TrimRight(jsonNumber(r.MirrorPercentage.Value), "0"), ".") + "%"
			}
		}
	}
	return names, mirror
}

func jsonNumber(f float64) string {
	b, _ := json.Marshal(f)
	return string(b) + ".0"
}

// Every mode with an A/B route and a mirror, on the real API server: phase puts them in
// place, a progression goes mirror → A/B → weights and clears the mirror after its stage,
// and promote and rollback remove what a run left, given MESHROLL_MATCH or not.
func TestShapes(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	const match = "MESHROLL_MATCH=[{headers: {end-user: {exact: jason}}}]"

	t.Run("phase with an A/B route, then rollback without MESHROLL_MATCH", func(t *testing.T) {
		t.Parallel()
		ns := newStack(t, env)
		got := runMain(t.Context(), t, env, ns, "MESHROLL_MODE=phase", "MESHROLL_WEIGHT=20", match, "MESHROLL_MIRROR_PERCENT=5")
		if got.code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		names, mirror := routes(t, env, ns)
		if want := []string{"tester", "meshroll-ab-v2", "default"}; !slices.Equal(names, want) || mirror != "v2 5%" {
			t.Errorf("routes %v, mirror %q; want %v and v2 5%%", names, mirror, want)
		}
		if w, _ := weights(t, env, ns, "reviews"); w != "v1 80, v2 20" {
			t.Errorf("weights %s", w)
		}
		got = runMain(t.Context(), t, env, ns, "MESHROLL_MODE=rollback")
		if got.code != 0 || !strings.Contains(got.stdout, "A/B route meshroll-ab-v2 removed; mirror removed") {
			t.Fatalf("rollback: exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		names, mirror = routes(t, env, ns)
		if want := []string{"tester", "default"}; !slices.Equal(names, want) || mirror != "" {
			t.Errorf("after the rollback: routes %v, mirror %q; want %v and none", names, mirror, want)
		}
		if w, _ := weights(t, env, ns, "reviews"); w != "v1 100, v2 0" {
			t.Errorf("weights after the rollback: %s", w)
		}
	})
	t.Run("progress: mirror, A/B, weights, promotion", func(t *testing.T) {
		t.Parallel()
		ns := newStack(t, env)
		got := runMain(t.Context(), t, env, ns, "MESHROLL_STEPS=50,100", match, "MESHROLL_MIRROR_PERCENT=20")
		if got.code != 0 || !strings.Contains(got.stdout, "result: promoted") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
		}
		for _, line := range []string{
			"1. mirror 20% of the requests to the canary", "2. A/B: requests matching MESHROLL_MATCH to the canary",
			"step 1/4: reviews v1 90, v2 10; mirroring 20% to the canary",
			"step 2/4: reviews v1 90, v2 10; A/B route meshroll-ab-v2 inserted; mirror removed",
			"step 3/4: reviews v1 90 → 50, v2 10 → 50",
			"step 4/4: reviews v1 50 → 0, v2 50 → 100; A/B route meshroll-ab-v2 removed",
		} {
			if !strings.Contains(got.stdout, line) {
				t.Errorf("stdout lacks %q:\n%s", line, got.stdout)
			}
		}
		if names, mirror := routes(t, env, ns); !slices.Equal(names, []string{"tester", "default"}) || mirror != "" {
			t.Errorf("after the promotion: routes %v, mirror %q", names, mirror)
		}
	})
	t.Run("promote removes what a dead run left", func(t *testing.T) {
		t.Parallel()
		ns := newStack(t, env)
		if got := runMain(t.Context(), t, env, ns, "MESHROLL_MODE=phase", "MESHROLL_WEIGHT=30", match, "MESHROLL_MIRROR_PERCENT=50"); got.code != 0 {
			t.Fatalf("phase: exit %d\n%s\n%s", got.code, got.stdout, got.stderr)
		}
		got := runMain(t.Context(), t, env, ns, "MESHROLL_MODE=promote")
		if got.code != 0 {
			t.Fatalf("promote: exit %d\n%s\n%s", got.code, got.stdout, got.stderr)
		}
		if names, mirror := routes(t, env, ns); !slices.Equal(names, []string{"tester", "default"}) || mirror != "" {
			t.Errorf("after promote: routes %v, mirror %q", names, mirror)
		}
		if w, _ := weights(t, env, ns, "reviews"); w != "v1 0, v2 100" {
			t.Errorf("weights after promote: %s", w)
		}
	})
	t.Run("meshroll owns what it wrote in managedFields", func(t *testing.T) {
		t.Parallel()
		ns := newStack(t, env)
		if got := runMain(t.Context(), t, env, ns, "MESHROLL_MODE=phase", "MESHROLL_WEIGHT=40"); got.code != 0 {
			t.Fatalf("exit %d\n%s\n%s", got.code, got.stdout, got.stderr)
		}
		vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(t.Context(), "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var managers []string
		for _, m := range vs.ManagedFields {
			managers = append(managers, m.Manager+"/"+string(m.Operation))
		}
		if !slices.Contains(managers, "meshroll/Update") {
			t.Errorf("managedFields managers %v, want meshroll among them", managers)
		}
	})
	t.Run("refused before any write", func(t *testing.T) {
		t.Parallel()
		ns := newStack(t, env)
		env.Apply(t, ns, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shadowed}
spec:
  hosts: [reviews]
  http:
  - name: default
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews-shadow}
`)
		for _, tc := range []struct {
			name string
			vars []string
			want string
		}{
			{"a misspelt match field", []string{"MESHROLL_VIRTUAL_SERVICE=reviews", "MESHROLL_MATCH=[{header: {end-user: {exact: jason}}}]"}, `MESHROLL_MATCH: entry 1: not an Istio HTTPMatchRequest: unknown field "header"`},
			{"conditions the route cannot meet", []string{"MESHROLL_VIRTUAL_SERVICE=reviews", "MESHROLL_ROUTE=tester", "MESHROLL_STABLE_SUBSET=v2", "MESHROLL_CANARY_SUBSET=v1", "MESHROLL_MODE=phase", "MESHROLL_WEIGHT=10", "MESHROLL_MATCH=[{headers: {end-user: {exact: jason}}}]"}, "MESHROLL_MATCH sets headers \"end-user\" to {exact:jason}"},
			{"a mirror the user set", []string{"MESHROLL_VIRTUAL_SERVICE=shadowed", "MESHROLL_MIRROR_PERCENT=10"}, "already mirrors traffic to reviews-shadow, which meshroll leaves alone"},
		} {
			vsName := "reviews"
			for _, v := range tc.vars {
				if n, ok := strings.CutPrefix(v, "MESHROLL_VIRTUAL_SERVICE="); ok {
					vsName = n
				}
			}
			_, rv := weightsOrRV(t, env, ns, vsName)
			got := runMain(t.Context(), t, env, ns, tc.vars...)
			if got.code != 2 || !strings.Contains(got.stderr, tc.want) {
				t.Errorf("%s: exit %d, want 2 with %q\nstdout:\n%s\nstderr:\n%s", tc.name, got.code, tc.want, got.stdout, got.stderr)
			}
			if _, after := weightsOrRV(t, env, ns, vsName); after != rv {
				t.Errorf("%s: the VirtualService was written: resourceVersion %s → %s", tc.name, rv, after)
			}
		}
	})
}

// weightsOrRV is the resourceVersion of a VirtualService (the first result is unused).
func weightsOrRV(t *testing.T, env *testenv.Env, ns, name string) (string, string) {
	t.Helper()
	vs, err := env.Istio.NetworkingV1().VirtualServices(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return "", vs.ResourceVersion
}
