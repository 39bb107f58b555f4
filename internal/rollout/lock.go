package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/traffic"
)

// Lock is a run's hold on its routing object, and where the cluster keeps what the run is
// doing (a Lease per routing object): one run steers an object at a time, and anyone can
// tell whether a rollout is in flight, who runs it and where it stands.
type Lock interface {
	// Check verifies, writing nothing, that the credentials may take and keep the lock.
	Check(ctx context.Context) error
	// Read returns the lock as it is, with the record of the last run that held it.
	Read(ctx context.Context) (Holding, error)
	// Acquire takes the lock for rec's run and returns the lock as it found it. A lock a
	// live run holds fails with ErrLocked, unless takeOver (rollback breaks it, resume
	// takes it over).
	Acquire(ctx context.Context, rec Record, takeOver bool) (Holding, error)
	// Update keeps rec with the lock and renews it; ErrLockLost when another run holds it.
	Update(ctx context.Context, rec Record) error
	// Release keeps rec (its outcome set) and frees the lock.
	Release(ctx context.Context, rec Record) error
}

// ErrLocked marks a routing object that another live run holds: nothing was written (exit 2).
var ErrLocked = errors.New("locked by another run")

// ErrLockLost marks a run whose lock another run took (a rollback broke it, a resume took it
// over): it stops at once without writing, since the traffic is no longer its to move.
var ErrLockLost = errors.New("the lock was taken by another run")

// Record is what the cluster knows about a run, kept with its lock.
type Record struct {
	Run    string      `json:"run"`            // this run's random id: tells two runs of one holder apart
	Holder string      `json:"holder"`         // who runs it: the CI run's address, else host and pid
	Link   string      `json:"link,omitempty"` // the CI run's address
	Mode   config.Mode `json:"mode"`
	Stable string      `json:"stable"`
	Canary string      `json:"canary"`
	Route  string      `json:"route,omitempty"`
	// Stage is the 1-based index, in the whole plan, of the stage in flight (or last taken);
	// 0 before the first.
	Stage int `json:"stage"`
	Of    int `json:"of"`
	// Doing says in words what the run is doing: "holding step 2/4 (canary 25%, ...)".
	Doing string `json:"doing"`
	// Weights is what the route does as the run last wrote (or found) it: Routing.Summary.
	Weights string `json:"weights,omitempty"`
	// Writing is what the write in flight asks of the route, nil between writes.
	Writing *traffic.Desired `json:"writing,omitempty"`
	// RollingBack says the run was returning traffic to stable: there is nothing to resume.
	RollingBack bool `json:"rollingBack,omitempty"`
	// Inputs are the variables that define the rollout, which resume must be given alike.
	Inputs  map[string]string `json:"inputs,omitempty"`
	Started time.Time         `json:"started"`
	Updated time.Time         `json:"updated"`
	// Outcome and Reason are set when the run ended; an empty Outcome is a run in flight,
	// or one whose runner died.
	Outcome Outcome `json:"outcome,omitempty"`
	Reason  string  `json:"reason,omitempty"`
}

// Holding is the lock as read: the last run's record, and whether a run holds it now.
type Holding struct {
	Record  *Record // nil: no run has been recorded on this routing object
	Held    bool    // a run holds the lock (it may have died: see Expires)
	Renewed time.Time
	Expires time.Time
}

// Live says whether a run holds the lock at now: held and renewed in time.
func (h Holding) Live(now time.Time) bool { return h.Held && now.Before(h.Expires) }

// Describe renders the holder for messages: who, doing what, since when, renewed when.
func (h Holding) Describe(now time.Time) string {
	rec := h.Record
	if rec == nil {
		return "a run that left no record"
	}
	s := fmt.Sprintf("%s (meshroll %s, %s; started %s ago", rec.Holder, rec.Mode, rec.Doing, age(now, rec.Started))
	if h.Held {
		s += fmt.Sprintf(", lock renewed %s ago", age(now, h.Renewed))
		if h.Live(now) {
			s += fmt.Sprintf(", expires in %s", age(h.Expires, now))
		} else {
			s += ", expired"
		}
	}
	return s + ")"
}

func age(now, t time.Time) time.Duration {
	if t.IsZero() || now.Before(t) {
		return 0
	}
	return now.Sub(t).Round(time.Second)
}

// newRunID returns a random id for one run.
func newRunID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
