package kube

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestRetry(t *testing.T) {
	t.Parallel()
	refused := &netOpError{syscall.ECONNREFUSED}
	unavailable := apierrors.NewServiceUnavailable("etcd is restarting")
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "meshroll-reviews")
	tests := []struct {
		name      string
		errs      []error // what each attempt returns; after the last, nil
		cancelAt  int     // the context ends during this attempt (1-based); 0: never
		wantCalls int
		wantErr   []string
	}{
		{name: "answered at once", wantCalls: 1},
		{name: "refused, then answered", errs: []error{refused, refused}, wantCalls: 3},
		{name: "503, then answered", errs: []error{unavailable}, wantCalls: 2},
		{name: "not found is not retried", errs: []error{notFound}, wantCalls: 1, wantErr: []string{"not found"}},
		{name: "the budget ends while refused", errs: []error{refused, refused, refused, refused}, cancelAt: 2, wantCalls: 2,
			wantErr: []string{"step budget: the API server had not answered for ", "; last: ", "connection refused"}},
		{name: "the budget ends in the request", errs: []error{context.Canceled}, cancelAt: 1, wantCalls: 1,
			wantErr: []string{"step budget: no answer from the API server within "}},
		{name: "a not found at the end of the budget is a not found", errs: []error{notFound}, cancelAt: 1, wantCalls: 1, wantErr: []string{"not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			calls := 0
			err := Retry(ctx, func(context.Context) error {
				calls++
				if calls == tt.cancelAt {
					cancel(errors.New("step budget"))
				}
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls {
				t.Errorf("%d attempts, want %d", calls, tt.wantCalls)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), "context canceled") {
				t.Errorf("error shows a Go internal: %v", err)
			}
			if tt.cancelAt > 0 && tt.errs[0] != notFound && !errors.Is(err, context.Canceled) && !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("error %v matches neither the context's end nor the last error", err)
			}
		})
	}
}

// netOpError is a dial error as the net package returns it.
type netOpError struct{ errno syscall.Errno }

func (e *netOpError) Error() string { return "dial tcp 127.0.0.1:6443: connect: " + e.errno.Error() }
func (e *netOpError) Unwrap() error { return e.errno }
