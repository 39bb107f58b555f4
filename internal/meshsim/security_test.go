package meshsim

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Requests are reported with connection_security_policy as Istio reports it: by the version's
// own proxy (reporter destination) "mutual_tls", or "none" once SetPlaintext makes the
// version's traffic plaintext, mirrored copies included; by the client's proxy "unknown"
// either way.
func TestConnectionSecurityPolicy(t *testing.T) {
	t.Parallel()
	// Testers reach v2; everyone else reaches v1, and v2 gets a copy of each of those.
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews"}}
	vs.Spec.Hosts = []string{"reviews"}
	vs.Spec.Http = []*apinetworking.HTTPRoute{
		{Name: "tester", Match: []*apinetworking.HTTPMatchRequest{{Headers: map[string]*apinetworking.StringMatch{"end-user": exact("tester")}}},
			Route: []*apinetworking.HTTPRouteDestination{to("v2", 0)}},
		{Name: "default", Route: []*apinetworking.HTTPRouteDestination{to("v1", 0)},
			Mirror: &apinetworking.Destination{Host: "reviews", Subset: "v2"}},
	}
	tests := []struct {
		name      string
		plaintext []map[string]bool // SetPlaintext calls, in order
		want      map[string]float64
	}{
		{
			name: "mutual TLS by default",
			want: map[string]float64{
				"destination reviews-v1 mutual_tls": 2,
				"destination reviews-v2 mutual_tls": 5, // 3 testers, 2 copies
				"source reviews-v1 unknown":         2,
				"source reviews-v2 unknown":         3,
			},
		},
		{
			name:      "one version plaintext",
			plaintext: []map[string]bool{{"v2": true}},
			want: map[string]float64{
				"destination reviews-v1 mutual_tls": 2,
				"destination reviews-v2 none":       5,
				"source reviews-v1 unknown":         2,
				"source reviews-v2 unknown":         3,
			},
		},
		{
			name:      "both plaintext",
			plaintext: []map[string]bool{{"v1": true, "v2": true}},
			want: map[string]float64{
				"destination reviews-v1 none": 2,
				"destination reviews-v2 none": 5,
				"source reviews-v1 unknown":   2,
				"source reviews-v2 unknown":   3,
			},
		},
		{
			name:      "plaintext, then mutual TLS again",
			plaintext: []map[string]bool{{"v2": true}, {"v2": false}},
			want: map[string]float64{
				"destination reviews-v1 mutual_tls": 2,
				"destination reviews-v2 mutual_tls": 5,
				"source reviews-v1 unknown":         2,
				"source reviews-v2 unknown":         3,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMesh(Options{Namespace: "shop", VirtualService: "reviews",
				Versions: []Version{{Subset: "v1", Workload: "reviews-v1"}, {Subset: "v2", Workload: "reviews-v2"}}})
			t.Cleanup(m.stopShadows)
			m.table.Store(compile(vs, "shop", "reviews"))
			for _, set := range tt.plaintext {
				for subset, plaintext := range set {
					m.SetPlaintext(subset, plaintext)
				}
			}
			for _, user := range []string{"tester", "tester", "tester", "", ""} {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				if user != "" {
					r.Header.Set("end-user", user)
				}
				w := httptest.NewRecorder()
				m.serveFront(w, r)
				if w.Code != http.StatusOK {
					t.Fatalf("end-user %q: %d, want 200", user, w.Code)
				}
			}
			m.shadows.Wait() // the copies are answered and recorded
			if diff := cmp.Diff(tt.want, securityCounts(t, m)); diff != "" {
				t.Errorf("istio_requests_total by reporter, workload and connection_security_policy (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSetPlaintextUnknownSubset(t *testing.T) {
	t.Parallel()
	m := newMesh(Options{Namespace: "shop", VirtualService: "reviews", Versions: []Version{{Subset: "v1", Workload: "reviews-v1"}}})
	t.Cleanup(m.stopShadows)
	defer func() {
		if recover() == nil {
			t.Error("SetPlaintext of an unknown subset did not panic")
		}
	}()
	m.SetPlaintext("v9", true)
}

// securityCounts are istio_requests_total's values by "reporter destination_workload
// connection_security_policy".
func securityCounts(t *testing.T, m *Mesh) map[string]float64 {
	t.Helper()
	families, err := m.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != requestsTotalName {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["reporter"]+" "+labels["destination_workload"]+" "+labels["connection_security_policy"]] += s.GetCounter().GetValue()
		}
	}
	return out
}
