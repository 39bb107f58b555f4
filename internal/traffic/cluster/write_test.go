package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshroll/meshroll/internal/kube"
	"github.com/meshroll/meshroll/internal/traffic"
)

const object = "HTTPRoute prod/reviews"

// budgetEnded is the cause of the end of a write's budget in these tests.
var budgetEnded = errors.New("the write's budget ended")

// unavailable is the API server's answer during a control-plane upgrade: worth another attempt.
var unavailable = apierrors.NewServiceUnavailable("etcd leader changed")

// Write starts again after a conflict or an unanswered request, tells each attempt after the
// first that it is a retry, returns a final answer at once, and counts the conflicts; when
// its budget ends it gives up and says why.
func TestWrite(t *testing.T) {
	t.Parallel()
	invalid := apierrors.NewInvalid(schema.GroupKind{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"}, "reviews", nil)
	tests := []struct {
		name string
		// answers of the attempts, in turn; nil lands. endAt ends the budget as that attempt
		// (from 1) runs; 0: it lasts a minute.
		answers       []error
		endAt         int
		wantAttempts  int
		wantConflicts int
		wantErr       error
		wantMessage   string // the error's message after the budget's cause
	}{
		{name: "lands", answers: []error{nil}, wantAttempts: 1},
		{name: "conflicts, then lands", answers: []error{ErrConflict, ErrConflict, nil}, wantAttempts: 3, wantConflicts: 2},
		{name: "unanswered, then lands", answers: []error{unavailable, ErrConflict, nil}, wantAttempts: 3, wantConflicts: 1},
		{name: "final answer", answers: []error{ErrConflict, invalid}, wantAttempts: 2, wantErr: invalid},
		{name: "conflicts until the budget ends", answers: []error{ErrConflict, ErrConflict, ErrConflict}, endAt: 3, wantAttempts: 3,
			wantErr: budgetEnded, wantMessage: ": another writer kept changing HTTPRoute prod/reviews (3 conflicting writes)"},
		{name: "unanswered until the budget ends", answers: []error{ErrConflict, unavailable, unavailable}, endAt: 3, wantAttempts: 3,
			wantErr: budgetEnded, wantMessage: ": the write to HTTPRoute prod/reviews did not land in 2 attempts (1 of them conflicting with another writer); last: etcd leader changed"},
		{name: "budget ended before an answer", answers: []error{context.Canceled}, endAt: 1, wantAttempts: 1,
			wantErr: budgetEnded, wantMessage: ": the write to HTTPRoute prod/reviews had not landed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			ctx, end := context.WithCancelCause(ctx)
			defer end(nil)
			var retries []bool
			applied, err := Write(ctx, object, func(ctx context.Context, retry bool) (traffic.Applied, error) {
				retries = append(retries, retry)
				n := len(retries)
				if n == tt.endAt {
					end(budgetEnded)
				}
				if n > len(tt.answers) {
					t.Fatalf("attempt %d: only %d expected", n, len(tt.answers))
				}
				return traffic.Applied{ResourceVersion: fmt.Sprint(n)}, tt.answers[n-1]
			})
			if got := len(retries); got != tt.wantAttempts {
				t.Errorf("%d attempts, want %d", got, tt.wantAttempts)
			}
			for i, retry := range retries {
				if retry != (i > 0) {
					t.Errorf("attempt %d: retry = %v", i+1, retry)
				}
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				want := traffic.Applied{ResourceVersion: fmt.Sprint(tt.wantAttempts), Conflicts: tt.wantConflicts}
				if diff := cmp.Diff(want, applied); diff != "" {
					t.Errorf("applied (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantMessage != "" && err.Error() != budgetEnded.Error()+tt.wantMessage {
				t.Errorf("err = %q, want %q", err, budgetEnded.Error()+tt.wantMessage)
			}
		})
	}
}

// After a conflict the next attempt follows within 20 ms: the API server answered, and a busy
// writer would win every race against a write that waited longer.
func TestConflictPause(t *testing.T) {
	t.Parallel()
	for range 1000 {
		if p := conflictPause(); p < 0 || p >= 20*time.Millisecond {
			t.Fatalf("conflictPause() = %s, want 0–20 ms", p)
		}
	}
}

func TestForbidden(t *testing.T) {
	t.Parallel()
	if err := Forbidden(nil); err != nil {
		t.Errorf("Forbidden(nil) = %v", err)
	}
	err := Forbidden([]kube.Permission{
		{Verb: "patch", Group: "gateway.networking.k8s.io", Resource: "httproutes", Namespace: "prod"},
		{Verb: "create", Resource: "events", Namespace: "prod"},
	})
	if !errors.Is(err, traffic.ErrForbidden) || !errors.Is(err, traffic.ErrPreflight) {
		t.Errorf("err = %v, want ErrForbidden", err)
	}
	want := "forbidden: the credentials in use cannot patch httproutes.gateway.networking.k8s.io in namespace prod, nor create events in namespace prod; grant them in meshroll's Role (see examples/rbac.yaml)"
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
}
