package istio

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

// eventMessageLimit is the longest Event message Kubernetes keeps whole.
const eventMessageLimit = 1024

// event is what a test checks of an Event.
type event struct {
	Reason, Message, Action string
	ResourceVersion         string // of the VirtualService the Event is about
}

// eventsOn lists the Events about the reviews VirtualService in ns.
func eventsOn(t *testing.T, env *testenv.Env, ns string) []event {
	t.Helper()
	list, err := env.Kube.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=reviews,involvedObject.kind=VirtualService"})
	if err != nil {
		t.Fatal(err)
	}
	var out []event
	for _, e := range list.Items {
		out = append(out, event{e.Reason, e.Message, e.Action, e.InvolvedObject.ResourceVersion})
	}
	return out
}

// The Event a write leaves says what changed and then why, in at most 1024 bytes.
func TestApplyRecordsWhy(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	long := strings.Repeat("é", 600) // 1200 bytes
	tests := []struct {
		name        string
		why         traffic.Why
		wantReason  string
		wantMessage string
	}{
		{name: "no why", wantReason: "WeightsChanged", wantMessage: "route default: v1 90 → 75, v2 10 → 25"},
		{name: "why", why: traffic.Why{Reason: "Step", Message: "canary, step 2 of 4: https://ci.example.com/runs/7"},
			wantReason: "Step", wantMessage: "route default: v1 90 → 75, v2 10 → 25; canary, step 2 of 4: https://ci.example.com/runs/7"},
		{name: "reason only", why: traffic.Why{Reason: "Promoted"}, wantReason: "Promoted", wantMessage: "route default: v1 90 → 75, v2 10 → 25"},
		{name: "message cut to 1024 bytes", why: traffic.Why{Reason: "RolledBack", Message: long},
			// 43 bytes before the why, 489 two-byte characters of it, and the 3-byte "…".
			wantReason: "RolledBack", wantMessage: "route default: v1 90 → 75, v2 10 → 25; " + long[:978] + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml"))
			c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
			applied, err := c.Apply(t.Context(), traffic.Desired{CanaryWeight: 25, Why: tt.why})
			if err != nil {
				t.Fatal(err)
			}
			want := []event{{tt.wantReason, tt.wantMessage, "SetWeights", applied.ResourceVersion}}
			got := eventsOn(t, env, ns)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			for _, e := range got {
				if len(e.Message) > eventMessageLimit || !utf8.ValidString(e.Message) {
					t.Errorf("message of %d bytes (valid UTF-8: %v)", len(e.Message), utf8.ValidString(e.Message))
				}
			}
		})
	}
}

// Note leaves an Event on the VirtualService and leaves the VirtualService as it was, also
// when the API server does not answer at first or its answer to the Event is lost.
func TestNote(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	why := traffic.Why{Reason: "Interrupted", Message: "another writer moved the weights to v1 50, v2 50; this run stopped without writing"}
	tests := []struct {
		name string
		// answers for the read and the Event's create, by attempt; pass after those
		read, create []answer
		wantCreates  int
	}{
		{name: "answered", wantCreates: 1},
		{name: "read refused, then 503", read: []answer{refuse, unavailable}, wantCreates: 1},
		{name: "create refused, then 503", create: []answer{refuse, unavailable}, wantCreates: 3},
		// The first create lands but its answer is lost: the second finds it, and it is not
		// recorded twice.
		{name: "create's answer lost", create: []answer{lost}, wantCreates: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml"))
			rv := getRaw(t, env, "v1", ns).GetResourceVersion()
			c, counts := flakyClient(t, env.Config, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"}, func(r *http.Request, n int) answer {
				script := tt.read
				if r.Method == http.MethodPost {
					script = tt.create
				}
				if n <= len(script) {
					return script[n-1]
				}
				return pass
			})
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			if err := c.Note(ctx, why); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]event{{"Interrupted", why.Message, "Note", rv}}, eventsOn(t, env, ns)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if got := getRaw(t, env, "v1", ns).GetResourceVersion(); got != rv {
				t.Errorf("Note moved the resourceVersion: %s → %s", rv, got)
			}
			if got := counts.get("POST /api/v1/namespaces/" + ns + "/events"); got != tt.wantCreates {
				t.Errorf("%d creates sent, want %d", got, tt.wantCreates)
			}
		})
	}
}

// A Note with a context that has already ended records nothing and says why.
func TestNoteCancelledContext(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml"))
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errors.New("the run was cancelled"))
	c := NewClient(env.Istio, env.Kube, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"})
	err := c.Note(ctx, traffic.Why{Reason: "Interrupted"})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "the run was cancelled") {
		t.Fatalf("err = %v, want context.Canceled naming its cause", err)
	}
	if got := eventsOn(t, env, ns); len(got) != 0 {
		t.Errorf("events = %+v, want none", got)
	}
}
