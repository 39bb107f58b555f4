package gates

import (
	"context"
	"errors"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// scaleServer fakes the scale subresource of one Deployment (no real API server here: the
// app package's tests scale real Deployments). conflicts is how many updates fail first.
type scaleServer struct {
	replicas  int32
	version   int
	conflicts int
	updates   int
}

func (s *scaleServer) client() *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "reviews-v1", Namespace: "shop", ResourceVersion: string(rune('0' + s.version))},
			Spec: autoscalingv1.ScaleSpec{Replicas: s.replicas}}, nil
	})
	c.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s.updates++
		scale := a.(k8stesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		if s.conflicts > 0 || scale.ResourceVersion != string(rune('0'+s.version)) {
			s.conflicts--
			s.version++ // someone else wrote it
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "reviews-v1", errors.New("changed"))
		}
		s.replicas = scale.Spec.Replicas
		return true, scale, nil
	})
	return c
}

func TestScaleToZero(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		server       scaleServer
		wantFrom     int32
		wantUpdates  int
		wantReplicas int32
		wantErr      string
	}{
		{"three replicas", scaleServer{replicas: 3}, 3, 1, 0, ""},
		{"already at 0", scaleServer{replicas: 0}, 0, 0, 0, ""},
		{"a conflict, then the write", scaleServer{replicas: 2, conflicts: 2}, 2, 3, 0, ""},
		{"conflicts all along", scaleServer{replicas: 2, conflicts: 100}, 0, scaleConflicts, 2, "failed to scale Deployment shop/reviews-v1 to 0: its scale kept changing (5 conflicts)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := tt.server
			from, err := NewScaler(srv.client(), "shop").ScaleToZero(t.Context(), "reviews-v1")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if from != tt.wantFrom || srv.updates != tt.wantUpdates || srv.replicas != tt.wantReplicas {
				t.Errorf("from %d, %d updates, replicas %d; want from %d, %d updates, replicas %d", from, srv.updates, srv.replicas, tt.wantFrom, tt.wantUpdates, tt.wantReplicas)
			}
		})
	}
}

func TestScaleCheck(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		allowed map[string]bool
		want    string
	}{
		{"both", map[string]bool{"get": true, "update": true}, ""},
		{"no update", map[string]bool{"get": true}, "forbidden: the credentials in use cannot update deployments.apps/scale in namespace shop, which MESHROLL_SCALE_DOWN=true needs"},
		{"neither", nil, "cannot get deployments.apps/scale in namespace shop, nor update deployments.apps/scale in namespace shop"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := fake.NewClientset()
			c.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
				attr := r.Spec.ResourceAttributes
				r.Status.Allowed = tt.allowed[attr.Verb] && attr.Resource == "deployments" && attr.Subresource == "scale" && attr.Group == "apps"
				return true, r, nil
			})
			err := NewScaler(c, "shop").Check(t.Context())
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (!errors.Is(err, ErrScaleForbidden) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want ErrScaleForbidden with %q", err, tt.want)
			}
		})
	}
}

// Practice 6: an already-cancelled context stops before anything is read or written.
func TestScaleCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := fake.NewClientset()
	c.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, ctx.Err() })
	s := NewScaler(c, "shop")
	if _, err := s.ScaleToZero(ctx, "reviews-v1"); !errors.Is(err, context.Canceled) {
		t.Errorf("ScaleToZero: %v, want context.Canceled", err)
	}
	if err := s.Check(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Check: %v, want context.Canceled", err)
	}
}
