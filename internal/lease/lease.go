// Package lease keeps a run's lock on its routing object, and the run's record, in a
// coordination.k8s.io/v1 Lease beside it (meshroll-<name>). A Lease rather than an
// annotation on the VirtualService: every write to a VirtualService makes istiod push
// configuration to every proxy, and the lock is renewed every few seconds.
package lease

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/traffic"
)

const (
	// RecordAnnotation holds the run's rollout.Record as JSON.
	RecordAnnotation = "meshroll.dev/rollout"
	// ObjectAnnotation names the routing object the Lease locks ("VirtualService shop/reviews").
	ObjectAnnotation = "meshroll.dev/object"
	managedBy        = "app.kubernetes.io/managed-by"
)

// Lease is the lock of one routing object.
type Lease struct {
	kube      kubernetes.Interface
	namespace string
	name      string
	object    string // for messages and the annotation: "VirtualService shop/reviews"
	duration  time.Duration
	now       func() time.Time
}

// New returns the lock of the routing object kind namespace/name; a run holds it for
// duration after each renewal.
func New(k kubernetes.Interface, kind, namespace, name string, duration time.Duration) *Lease {
	return &Lease{kube: k, namespace: namespace, name: Name(name), object: kind + " " + namespace + "/" + name, duration: duration, now: time.Now}
}

// Name is the Lease's name for a routing object's: meshroll-<name>, shortened with a hash
// when that would be longer than an object name may be.
func Name(object string) string {
	const max = 253
	name := "meshroll-" + object
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(object))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	// A cut just after a dot would leave ".-", which no DNS subdomain may contain.
	return strings.TrimRight(name[:max-len(suffix)], ".") + suffix
}

// Read returns the lock as it is; no Lease is a lock nobody ever took.
func (l *Lease) Read(ctx context.Context) (rollout.Holding, error) {
	lease, err := l.get(ctx)
	if err != nil || lease == nil {
		return rollout.Holding{}, err
	}
	return holding(lease), nil
}

// Acquire takes the lock for rec's run (see rollout.Lock).
func (l *Lease) Acquire(ctx context.Context, rec rollout.Record, takeOver bool) (rollout.Holding, error) {
	for {
		lease, err := l.get(ctx)
		if err != nil {
			return rollout.Holding{}, err
		}
		if lease == nil {
			lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: l.namespace, Labels: map[string]string{managedBy: traffic.FieldManager}}}
			if err := l.hold(lease, rec, true); err != nil {
				return rollout.Holding{}, err
			}
			err = kube.Retry(ctx, func(ctx context.Context) error {
				_, err := l.kube.CoordinationV1().Leases(l.namespace).Create(ctx, lease, metav1.CreateOptions{FieldManager: traffic.FieldManager})
				return err
			})
			if apierrors.IsAlreadyExists(err) {
				continue // another run created it first: look at it again
			}
			return rollout.Holding{}, l.failed("create", err)
		}
		found := holding(lease)
		if found.Live(l.now()) && !takeOver && !ours(found, rec) {
			return found, rollout.ErrLocked
		}
		if err := l.hold(lease, rec, !ours(found, rec)); err != nil {
			return found, err
		}
		switch err := l.update(ctx, lease); {
		case apierrors.IsConflict(err):
			continue
		case err != nil:
			return found, err
		}
		return found, nil
	}
}

// Update keeps rec with the lock and renews it; ErrLockLost when another run holds it.
func (l *Lease) Update(ctx context.Context, rec rollout.Record) error {
	return l.keep(ctx, rec, true)
}

// Release keeps rec and frees the lock; a lock another run holds now is left alone.
func (l *Lease) Release(ctx context.Context, rec rollout.Record) error {
	return l.keep(ctx, rec, false)
}

// keep writes rec to the lock this run holds, renewing it (held) or freeing it.
func (l *Lease) keep(ctx context.Context, rec rollout.Record, held bool) error {
	for {
		lease, err := l.get(ctx)
		if err != nil {
			return err
		}
		if lease == nil {
			return fmt.Errorf("%w: Lease %s/%s, the lock of %s, was deleted", rollout.ErrLockLost, l.namespace, l.name, l.object)
		}
		switch found := holding(lease); {
		case !found.Held:
			return fmt.Errorf("%w: the lock of %s was freed; the last run recorded is %s", rollout.ErrLockLost, l.object, found.Describe(l.now()))
		case !ours(found, rec):
			return fmt.Errorf("%w: %s holds the lock of %s now", rollout.ErrLockLost, found.Describe(l.now()), l.object)
		}
		if err := l.hold(lease, rec, false); err != nil {
			return err
		}
		if !held {
			lease.Spec.HolderIdentity = nil
		}
		switch err := l.update(ctx, lease); {
		case apierrors.IsConflict(err):
			continue
		case err != nil:
			return err
		}
		return nil
	}
}

// hold makes lease say that rec's run holds it, renewed now; taken marks a new holder.
func (l *Lease) hold(lease *coordinationv1.Lease, rec rollout.Record, taken bool) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("failed to encode the record of the run: %w", err)
	}
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	lease.Annotations[RecordAnnotation] = string(raw)
	lease.Annotations[ObjectAnnotation] = l.object
	now := metav1.NewMicroTime(l.now())
	seconds := int32(l.duration / time.Second)
	spec := &lease.Spec
	spec.HolderIdentity, spec.LeaseDurationSeconds, spec.RenewTime = &rec.Holder, &seconds, &now
	if taken {
		spec.AcquireTime = &now
		if spec.LeaseTransitions != nil || lease.ResourceVersion != "" {
			n := int32(0)
			if spec.LeaseTransitions != nil {
				n = *spec.LeaseTransitions
			}
			n++
			spec.LeaseTransitions = &n
		}
	}
	return nil
}

func (l *Lease) get(ctx context.Context) (*coordinationv1.Lease, error) {
	var lease *coordinationv1.Lease
	err := kube.Retry(ctx, func(ctx context.Context) error {
		var err error
		lease, err = l.kube.CoordinationV1().Leases(l.namespace).Get(ctx, l.name, metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return lease, l.failed("get", err)
}

// update writes lease guarded by its resourceVersion: a conflict is returned as it is.
func (l *Lease) update(ctx context.Context, lease *coordinationv1.Lease) error {
	err := kube.Retry(ctx, func(ctx context.Context) error {
		_, err := l.kube.CoordinationV1().Leases(l.namespace).Update(ctx, lease, metav1.UpdateOptions{FieldManager: traffic.FieldManager})
		return err
	})
	if apierrors.IsConflict(err) {
		return err
	}
	return l.failed("update", err)
}

// failed words an API error of verb on the Lease; a missing permission is a preflight
// failure (exit 2), found before anything is written.
func (l *Lease) failed(verb string, err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		return traffic.Preflightf(traffic.ErrForbidden, "forbidden: the credentials in use cannot %s leases.coordination.k8s.io in namespace %s (the lock of %s); grant it in meshroll's Role (see examples/rbac.yaml)", verb, l.namespace, l.object)
	}
	return fmt.Errorf("failed to %s Lease %s/%s (the lock of %s): %w", verb, l.namespace, l.name, l.object, err)
}

// holding reads a Lease as the lock it is.
func holding(lease *coordinationv1.Lease) rollout.Holding {
	var h rollout.Holding
	if raw, ok := lease.Annotations[RecordAnnotation]; ok {
		var rec rollout.Record
		if err := json.Unmarshal([]byte(raw), &rec); err == nil {
			h.Record = &rec
		}
	}
	spec := lease.Spec
	h.Held = spec.HolderIdentity != nil && *spec.HolderIdentity != ""
	if spec.RenewTime != nil {
		h.Renewed = spec.RenewTime.Time
		if spec.LeaseDurationSeconds != nil {
			h.Expires = h.Renewed.Add(time.Duration(*spec.LeaseDurationSeconds) * time.Second)
		}
	}
	if h.Held && h.Record == nil {
		// Held by something that is not meshroll, or a record that cannot be read: a lock
		// all the same, described by its holder.
		h.Record = &rollout.Record{Holder: *spec.HolderIdentity, Doing: "unknown"}
	}
	return h
}

// ours says whether the lock is held by rec's run.
func ours(h rollout.Holding, rec rollout.Record) bool {
	return h.Record != nil && h.Record.Run != "" && h.Record.Run == rec.Run
}

var _ rollout.Lock = (*Lease)(nil)

// Check asks the API server (SelfSubjectAccessReview) whether the credentials in use may
// take and keep the lock, so that a missing permission stops the run before its first write.
func (l *Lease) Check(ctx context.Context) error {
	var needs []kube.Permission
	for _, verb := range []string{"get", "create", "update"} {
		needs = append(needs, kube.Permission{Verb: verb, Group: coordinationv1.GroupName, Resource: "leases", Namespace: l.namespace})
	}
	missing, err := kube.Missing(ctx, l.kube, needs)
	if err != nil || len(missing) == 0 {
		return err
	}
	verbs := make([]string, len(missing))
	for i, n := range missing {
		verbs[i] = n.Verb
	}
	return traffic.Preflightf(traffic.ErrForbidden, "forbidden: the credentials in use cannot %s leases.coordination.k8s.io in namespace %s (the lock of %s); grant them in meshroll's Role (see examples/rbac.yaml)",
		strings.Join(verbs, ", nor "), l.namespace, l.object)
}
