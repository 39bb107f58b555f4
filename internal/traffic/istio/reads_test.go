package istio

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic"
)

// answer is how the flaky transport of flakyClient answers a request.
type answer int

const (
	pass        answer = iota // on to the API server
	refuse                    // connection refused, as when no API server listens
	unavailable               // 503, as during a control-plane upgrade
	lost                      // on to the API server, whose answer is lost (connection reset)
)

// requestCounts counts requests by "METHOD path".
type requestCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *requestCounts) add(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[key]++
	return c.n[key]
}

func (c *requestCounts) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// flakyClient is a Client for target on the API server cfg points at, whose every request
// is counted and then answered as answerFor says (n counts that request's "METHOD path",
// from 1). Each answer is decided before the request is sent, so counts do not depend on
// timing.
func flakyClient(t *testing.T, cfg *rest.Config, target Target, answerFor func(r *http.Request, n int) answer) (*Client, *requestCounts) {
	t.Helper()
	counts := &requestCounts{n: map[string]int{}}
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			switch answerFor(r, counts.add(r.Method+" "+r.URL.Path)) {
			case refuse:
				closeBody(r)
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
			case unavailable:
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
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return NewClient(ic, kc, target), counts
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}

func vsPath(ns, name string) string {
	return "GET /apis/networking.istio.io/v1/namespaces/" + ns + "/virtualservices/" + name
}

// A read that the API server does not answer (refused, 503) is sent again until it is
// answered; when the read's context ends first, the error says why it ended, how long the
// server had not answered and its last error.
func TestReadRetriesASilentServer(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name     string
		fail     answer
		failures int // the first that many GETs fail
		cancelAt int // the context ends as that GET fails; 0: it lasts a minute
		wantGets int
		wantErr  []string // in the error, after "failed to get VirtualService <ns>/reviews: "
	}{
		{name: "refused, then answered", fail: refuse, failures: 3, wantGets: 4},
		{name: "503, then answered", fail: unavailable, failures: 3, wantGets: 4},
		{name: "refused until the budget ends", fail: refuse, failures: 1 << 30, cancelAt: 3, wantGets: 3,
			wantErr: []string{"the read's budget ended: the API server had not answered for ", "; last: ", "connection refused"}},
		{name: "503 until the budget ends", fail: unavailable, failures: 1 << 30, cancelAt: 3, wantGets: 3,
			wantErr: []string{"the read's budget ended: the API server had not answered for ", "; last: ", "the server is currently unable to handle the request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml"))
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			ctx, end := context.WithCancelCause(ctx)
			defer end(nil)
			c, counts := flakyClient(t, env.Config, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"}, func(r *http.Request, n int) answer {
				if n == tt.cancelAt {
					end(errors.New("the read's budget ended"))
				}
				if n <= tt.failures {
					return tt.fail
				}
				return pass
			})
			state, err := c.Read(ctx)
			if got := counts.get(vsPath(ns, "reviews")); got != tt.wantGets {
				t.Errorf("%d GETs sent, want %d", got, tt.wantGets)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff("v1 90, v2 10", traffic.DescribeWeights(state.Routing().Destinations)); diff != "" {
					t.Errorf("weights read (-want +got):\n%s", diff)
				}
				return
			}
			prefix := "failed to get VirtualService " + ns + "/reviews: "
			if err == nil || !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("err = %v, want it to start with %q", err, prefix)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want it to say %q", err, want)
				}
			}
		})
	}
}

// An answer that will not change (not found, forbidden) is returned at once, not retried.
func TestFinalAnswersAreNotRetried(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	// A user that no Role binds: the API server forbids it everything meshroll reads.
	stranger := rest.CopyConfig(env.Config)
	stranger.Impersonate = rest.ImpersonationConfig{UserName: "meshroll-test-stranger"}
	tests := []struct {
		name    string
		cfg     *rest.Config
		vs      string // the VirtualService read; reviews exists
		split   bool   // reviews splits between Services (host-split.yaml), only the stable one exists
		checks  *traffic.Checks
		path    string // counted, under the test's namespace
		wantErr error
	}{
		{name: "VirtualService not found", cfg: env.Config, vs: "ratings", path: vsPath("NS", "ratings"), wantErr: traffic.ErrVirtualServiceNotFound},
		{name: "VirtualService forbidden", cfg: stranger, vs: "reviews", path: vsPath("NS", "reviews"), wantErr: traffic.ErrForbidden},
		{name: "Service not found", cfg: env.Config, vs: "reviews", split: true, checks: &traffic.Checks{Canary: true},
			path: "GET /api/v1/namespaces/NS/services/reviews-canary", wantErr: traffic.ErrServiceNotFound},
		{name: "Deployment not found", cfg: env.Config, vs: "reviews", checks: &traffic.Checks{Canary: true, CanaryDeployment: "reviews-v2", ReadyTimeout: time.Minute},
			path: "GET /apis/apps/v1/namespaces/NS/deployments/reviews-v2", wantErr: traffic.ErrDeploymentNotReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			target := Target{Namespace: ns, VirtualService: tt.vs, StableSubset: "v1", CanarySubset: "v2"}
			if tt.split {
				env.Apply(t, ns, strings.ReplaceAll(fixtureText(t, "host-split.yaml"), ".bookinfo.", "."+ns+".")+"---\n"+service("reviews-stable", "v1"))
				target = Target{Namespace: ns, VirtualService: tt.vs, StableService: "reviews-stable", CanaryService: "reviews-canary"}
			} else {
				env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml")+"---\n"+destinationRule)
			}
			c, counts := flakyClient(t, tt.cfg, target, func(*http.Request, int) answer { return pass })
			var err error
			if tt.checks == nil {
				_, err = c.Read(t.Context())
			} else {
				_, err = c.Preflight(t.Context(), *tt.checks)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := counts.get(strings.Replace(tt.path, "NS", ns, 1)); got != 1 {
				t.Errorf("%s sent %d times, want once", tt.path, got)
			}
		})
	}
}

// Every read the preflight makes is retried: each is refused, then answered 503, then
// answered, and the preflight passes.
func TestPreflightRetriesEveryRead(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, fixtureText(t, "weighted-with-policies.yaml")+"---\n"+destinationRule+"---\n"+testenv.DeploymentManifest("reviews-v2", "v2"))
	if err := env.SetDeploymentStatus(t.Context(), ns, "reviews-v2", true); err != nil {
		t.Fatal(err)
	}
	c, counts := flakyClient(t, env.Config, Target{Namespace: ns, VirtualService: "reviews", StableSubset: "v1", CanarySubset: "v2"}, func(_ *http.Request, n int) answer {
		return map[int]answer{1: refuse, 2: unavailable}[n]
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	checks := traffic.Checks{Canary: true, CanaryDeployment: "reviews-v2", ReadyTimeout: time.Minute, Write: true}
	if _, err := c.Preflight(ctx, checks); err != nil {
		t.Fatal(err)
	}
	reads := map[string]int{}
	for _, path := range []string{
		vsPath(ns, "reviews"),
		"GET /apis/networking.istio.io/v1/namespaces/" + ns + "/destinationrules",
		"GET /apis/apps/v1/namespaces/" + ns + "/deployments/reviews-v2",
	} {
		reads[path] = counts.get(path)
	}
	want := map[string]int{}
	for path := range reads {
		want[path] = 3
	}
	if diff := cmp.Diff(want, reads); diff != "" {
		t.Errorf("requests sent (-want +got):\n%s", diff)
	}
	// The access reviews share one path: the first is retried twice, then each is asked once.
	if got := counts.get("POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews"); got < 3 {
		t.Errorf("%d access reviews sent: the first was not retried", got)
	}
}
