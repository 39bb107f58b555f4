package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// answer is how the flaky transport of flakyKube answers a request.
type answer int

const (
	pass   answer = iota // on to the API server
	refuse               // connection refused, as when no API server listens
	busy                 // 503, as during a control-plane upgrade
	lost                 // on to the API server, whose answer is lost (connection reset)
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// flakyKube is a client of the API server cfg points at that answers the n-th request (from 1)
// whose method is method as script[n-1] says, and passes every other request; it counts
// those requests. Each answer is decided before the request is sent, so counts do not depend
// on timing.
func flakyKube(t *testing.T, cfg *rest.Config, method string, script ...answer) (kubernetes.Interface, *atomic.Int32) {
	t.Helper()
	var count atomic.Int32
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method != method {
				return next.RoundTrip(r)
			}
			a := pass
			if n := int(count.Add(1)); n <= len(script) {
				a = script[n-1]
			}
			switch a {
			case refuse:
				closeBody(r)
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
			case busy:
				closeBody(r)
				return &http.Response{
					StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
					Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: io.NopCloser(strings.NewReader("etcd leader changed\n")), Request: r,
				}, nil
			case lost:
				res, err := next.RoundTrip(r)
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
			}
			return next.RoundTrip(r)
		})
	}
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k, &count
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}

// routingObject creates the object the Events of a test are about, in a fresh namespace. Any
// kind will do: a ConfigMap stands in for a VirtualService or an HTTPRoute.
func routingObject(t *testing.T, env *testenv.Env) Ref {
	t.Helper()
	ns := env.Namespace(t)
	cm, err := env.Kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "reviews"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return Ref{Kind: "ConfigMap", APIVersion: "v1", Namespace: ns, Name: cm.Name, UID: cm.UID, ResourceVersion: cm.ResourceVersion}
}

// event is what a test checks of an Event.
type event struct {
	Reason, Message, Action string
	About                   corev1.ObjectReference
	Source                  string
}

// eventsOn lists the Events about the object ref names.
func eventsOn(t *testing.T, env *testenv.Env, ref Ref) []event {
	t.Helper()
	list, err := env.Kube.CoreV1().Events(ref.Namespace).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + ref.Name + ",involvedObject.kind=" + ref.Kind})
	if err != nil {
		t.Fatal(err)
	}
	var out []event
	for _, e := range list.Items {
		out = append(out, event{e.Reason, e.Message, e.Action, e.InvolvedObject, e.Source.Component})
	}
	return out
}

// about is the involvedObject of an Event about the object ref names.
func about(ref Ref) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: ref.Kind, APIVersion: ref.APIVersion, Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID, ResourceVersion: ref.ResourceVersion}
}

// The Event a change leaves says what changed and then why, in at most 1024 bytes, about the
// object ref names, whatever its kind.
func TestRecordChange(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	long := strings.Repeat("é", 600) // 1200 bytes
	weights := func(stable, canary int) traffic.Routing {
		return traffic.Routing{Route: "default", Destinations: []traffic.Destination{
			{Host: "reviews", Subset: "v1", Role: traffic.RoleStable, Weight: stable},
			{Host: "reviews", Subset: "v2", Role: traffic.RoleCanary, Weight: canary},
		}}
	}
	change := traffic.Change{Before: weights(90, 10), After: weights(75, 25), Changed: true}
	tests := []struct {
		name        string
		why         traffic.Why
		wantReason  string
		wantMessage string
	}{
		{name: "no why", wantReason: "WeightsChanged", wantMessage: "route default: v1 90 → 75, v2 10 → 25"},
		{name: "why", why: traffic.Why{Reason: "Step", Message: "canary, step 2 of 4: https://ci.example.com/runs/7"},
			wantReason: "Step", wantMessage: "route default: v1 90 → 75, v2 10 → 25; canary, step 2 of 4: https://ci.example.com/runs/7"},
		{name: "message cut to 1024 bytes", why: traffic.Why{Reason: "RolledBack", Message: long},
			// 43 bytes before the why, 489 two-byte characters of it, and the 3-byte "…".
			wantReason: "RolledBack", wantMessage: "route default: v1 90 → 75, v2 10 → 25; " + long[:978] + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ref := routingObject(t, env)
			if err := RecordChange(t.Context(), env.Kube, ref, change, tt.why); err != nil {
				t.Fatal(err)
			}
			want := []event{{tt.wantReason, tt.wantMessage, "SetWeights", about(ref), traffic.FieldManager}}
			got := eventsOn(t, env, ref)
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

// Note leaves an Event on the object, also when the API server does not answer at first or
// its answer is lost; an empty reason is recorded as Note.
func TestNote(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name        string
		why         traffic.Why
		create      []answer // answers to the Event's create, by attempt; pass after those
		wantReason  string
		wantCreates int32
	}{
		{name: "answered", why: traffic.Why{Reason: "Interrupted", Message: "another writer moved the weights"}, wantReason: "Interrupted", wantCreates: 1},
		{name: "no reason", why: traffic.Why{Message: "another writer moved the weights"}, wantReason: "Note", wantCreates: 1},
		{name: "refused, then 503", why: traffic.Why{Reason: "Interrupted", Message: "another writer moved the weights"}, create: []answer{refuse, busy}, wantReason: "Interrupted", wantCreates: 3},
		// The first create lands but its answer is lost: the second finds it, and it is not
		// recorded twice.
		{name: "answer lost", why: traffic.Why{Reason: "Interrupted", Message: "another writer moved the weights"}, create: []answer{lost}, wantReason: "Interrupted", wantCreates: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ref := routingObject(t, env)
			k, creates := flakyKube(t, env.Config, http.MethodPost, tt.create...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			if err := Note(ctx, k, ref, tt.why); err != nil {
				t.Fatal(err)
			}
			want := []event{{tt.wantReason, tt.why.Message, "Note", about(ref), traffic.FieldManager}}
			if diff := cmp.Diff(want, eventsOn(t, env, ref)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if got := creates.Load(); got != tt.wantCreates {
				t.Errorf("%d creates sent, want %d", got, tt.wantCreates)
			}
		})
	}
}

// An Event with a context that has already ended is not recorded, and the error says why
// and on what.
func TestNoteCancelledContext(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ref := routingObject(t, env)
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errors.New("the run was cancelled"))
	err := Note(ctx, env.Kube, ref, traffic.Why{Reason: "Interrupted"})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "the run was cancelled") ||
		!strings.HasPrefix(err.Error(), "failed to record an Event on ConfigMap "+ref.Namespace+"/reviews: ") {
		t.Fatalf("err = %v, want context.Canceled naming its cause and the object", err)
	}
	if got := eventsOn(t, env, ref); len(got) != 0 {
		t.Errorf("events = %+v, want none", got)
	}
}

func TestEventName(t *testing.T) {
	t.Parallel()
	at := time.Unix(1767225600, 5)
	tests := []struct {
		name, object string
	}{
		{name: "short", object: "reviews"},
		{name: "longest object name", object: strings.Repeat("a", validation.DNS1123SubdomainMaxLength)},
		{name: "cut after a dash", object: strings.Repeat("a", 235) + "-" + strings.Repeat("b", 17)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := eventName(tt.object, at)
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Errorf("eventName(%q) = %q: %v", tt.object, got, errs)
			}
			if !strings.HasSuffix(got, ".18867251edfa0005") || !strings.HasPrefix(tt.object, strings.TrimSuffix(got, ".18867251edfa0005")) {
				t.Errorf("eventName(%q) = %q, want a prefix of the name and the time in hex", tt.object, got)
			}
		})
	}
}
