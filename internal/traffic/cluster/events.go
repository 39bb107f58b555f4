package cluster

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
)

// eventMessageLimit is the longest Event message Kubernetes keeps whole (longer ones are
// cut, or refused by the events.k8s.io API).
const eventMessageLimit = 1024

// Ref is the routing object an Event is about, at the resourceVersion the Event describes.
type Ref struct {
	Kind            string // VirtualService, HTTPRoute
	APIVersion      string // networking.istio.io/v1, gateway.networking.k8s.io/v1
	Namespace, Name string
	UID             types.UID
	ResourceVersion string
}

// String names the object for messages: "VirtualService prod/reviews".
func (r Ref) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// RecordChange leaves an Event on the routing object for a change: what changed, then why.
// An empty reason is recorded as WeightsChanged. The Event is retried while the API server
// is silent or overloaded, for as long as ctx lasts: give it a deadline.
func RecordChange(ctx context.Context, k kubernetes.Interface, ref Ref, change traffic.Change, why traffic.Why) error {
	reason := why.Reason
	if reason == "" {
		reason = "WeightsChanged"
	}
	message := fmt.Sprintf("route %s: %s", change.After.Route, change.Describe())
	if why.Message != "" {
		message += "; " + why.Message
	}
	return createEvent(ctx, k, ref, newEvent(ref, reason, message, "SetWeights"))
}

// Note records an Event on the routing object without changing it, so that the cluster says
// why a run stopped (another writer moved the route, the lock was taken over). An empty
// reason is recorded as Note. The Event is retried while the API server is silent or
// overloaded, for as long as ctx lasts: give it a deadline.
func Note(ctx context.Context, k kubernetes.Interface, ref Ref, why traffic.Why) error {
	reason := why.Reason
	if reason == "" {
		reason = "Note"
	}
	return createEvent(ctx, k, ref, newEvent(ref, reason, why.Message, "Note"))
}

// newEvent is an Event about the object ref names, at its resourceVersion.
func newEvent(ref Ref, reason, message, action string) *corev1.Event {
	now := time.Now()
	host, _ := os.Hostname()
	return &corev1.Event{
		// Named here rather than by the server (generateName), so that an attempt that
		// landed without an answer is found on the next one instead of recorded twice.
		ObjectMeta: metav1.ObjectMeta{Name: eventName(ref.Name, now), Namespace: ref.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion:      ref.APIVersion,
			Kind:            ref.Kind,
			Namespace:       ref.Namespace,
			Name:            ref.Name,
			UID:             ref.UID,
			ResourceVersion: ref.ResourceVersion,
		},
		Reason:              reason,
		Message:             truncate(message, eventMessageLimit),
		Type:                corev1.EventTypeNormal,
		Source:              corev1.EventSource{Component: traffic.FieldManager, Host: host},
		FirstTimestamp:      metav1.NewTime(now),
		LastTimestamp:       metav1.NewTime(now),
		Count:               1,
		ReportingController: "meshroll.dev/meshroll",
		ReportingInstance:   host,
		Action:              action,
	}
}

// createEvent creates ev, retrying a silent or overloaded API server for as long as ctx lasts.
func createEvent(ctx context.Context, k kubernetes.Interface, ref Ref, ev *corev1.Event) error {
	attempts := 0
	err := kube.Retry(ctx, func(ctx context.Context) error {
		attempts++
		_, err := k.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) && attempts > 1 {
			return nil // an earlier attempt landed
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to record an Event on %s: %w", ref, err)
	}
	return nil
}

// eventName names an Event about object the way client-go's recorder does: the object's
// name and the time in hex, the name shortened to keep the whole a valid object name.
func eventName(object string, at time.Time) string {
	suffix := fmt.Sprintf(".%x", at.UnixNano())
	if limit := validation.DNS1123SubdomainMaxLength - len(suffix); len(object) > limit {
		object = strings.TrimRight(object[:limit], ".-")
	}
	return object + suffix
}

// truncate cuts s to at most limit bytes, on a character boundary, marking the cut with "…".
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	const ellipsis = "…"
	cut := limit - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
