package analysis

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRetries(t *testing.T) {
	t.Parallel()
	const volume = `sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="cart-v2"}[30s]))`
	tests := []struct {
		name string
		// respond answers the canary's volume query on its call-th attempt;
		// every other query is healthy.
		respond   func(call int) (int, string)
		wantErr   error
		wantCalls int
		want      Result
	}{
		{
			name: "503 twice, then an answer",
			respond: func(call int) (int, string) {
				if call <= 2 {
					return http.StatusServiceUnavailable, "upstream connect error"
				}
				return http.StatusOK, vectorBody("120")
			},
			wantCalls: 3,
			want:      Result{Check: "request-volume", Canary: ptr(120), Stable: ptr(1000), Threshold: "≥ 20 requests", Verdict: VerdictPass},
		},
		{
			name: "429 and a Prometheus timeout are retried",
			respond: func(call int) (int, string) {
				switch call {
				case 1:
					return http.StatusTooManyRequests, "slow down"
				case 2:
					return http.StatusOK, errorBody("timeout", "query timed out in expression evaluation")
				}
				return http.StatusOK, vectorBody("120")
			},
			wantCalls: 3,
			want:      Result{Check: "request-volume", Canary: ptr(120), Stable: ptr(1000), Threshold: "≥ 20 requests", Verdict: VerdictPass},
		},
		{
			name:      "always 503: unavailable after the attempts",
			respond:   func(int) (int, string) { return http.StatusServiceUnavailable, "no healthy upstream" },
			wantErr:   ErrUnavailable,
			wantCalls: 3,
		},
		{
			name: "bad_data is never retried",
			respond: func(int) (int, string) {
				return http.StatusBadRequest, errorBody("bad_data", "1:5: parse error: unexpected <by>")
			},
			wantCalls: 1,
			want: Result{Check: "request-volume", Stable: ptr(1000), Threshold: "≥ 20 requests", Verdict: VerdictError,
				Message: "failed to run query " + volume + ": Prometheus rejected it: 1:5: parse error: unexpected <by>: invalid query"},
		},
		{
			name: "an execution error is not retried",
			respond: func(int) (int, string) {
				return http.StatusUnprocessableEntity, errorBody("execution", "many-to-many matching not allowed")
			},
			wantCalls: 1,
			want: Result{Check: "request-volume", Stable: ptr(1000), Threshold: "≥ 20 requests", Verdict: VerdictError,
				Message: "failed to run query " + volume + ": execution: many-to-many matching not allowed"},
		},
		{
			name:      "404 (wrong URL path) is not retried",
			respond:   func(int) (int, string) { return http.StatusNotFound, "404 page not found" },
			wantCalls: 1,
			want: Result{Check: "request-volume", Stable: ptr(1000), Threshold: "≥ 20 requests", Verdict: VerdictError,
				Message: "failed to run query " + volume + ": Prometheus answered 404 Not Found: 404 page not found"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			healthyAnswers := answers(healthy())
			prom := newFakeProm(t, func(r *http.Request, q string, call int) (int, string) {
				if q == volume {
					calls.Add(1)
					return tt.respond(call)
				}
				return healthyAnswers(r, q, call)
			})
			s := testSettings(prom.URL)
			s.Backoff = 5 * time.Millisecond
			a, err := New(s)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			w, err := a.Evaluate(t.Context(), at)
			// Generous: only a hang (retries not bounded) fails this, never a busy machine.
			if took := time.Since(start); took > 30*time.Second {
				t.Errorf("Evaluate took %s", took)
			}
			if got := int(calls.Load()); got != tt.wantCalls {
				t.Errorf("the query was sent %d times, want %d", got, tt.wantCalls)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "3 attempts") || !strings.Contains(err.Error(), "503") {
					t.Errorf("error %q does not tell the attempts and the last answer", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, w.Results[0]); diff != "" {
				t.Errorf("request-volume (-want +got):\n%s", diff)
			}
		})
	}
}

// A Prometheus that never answers costs at most half the interval.
func TestRetryBudget(t *testing.T) {
	t.Parallel()
	prom := newHangingProm(t)
	s := testSettings(prom.URL)
	s.Interval = time.Second
	s.Backoff = 100 * time.Millisecond
	s.Retries = 10
	a, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = a.Evaluate(t.Context(), at)
	took := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error = %v, want ErrUnavailable", err)
	}
	// It cannot end before the budget (half the 1s interval); the upper bound only catches a
	// hang, with room for a busy machine.
	if took < 500*time.Millisecond || took > 30*time.Second {
		t.Errorf("Evaluate took %s, want about half the 1s interval", took)
	}
	if want := "in 500ms (half the analysis interval)"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

// Connection refused is a network error: retried, then unavailable.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	a, err := New(testSettings(refusedURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Evaluate(t.Context(), at)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Evaluate error = %v, want ErrUnavailable", err)
	}
	err = a.Preflight(t.Context())
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Preflight error = %v, want ErrUnavailable", err)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*Settings)
		want   map[string]string // headers every request must carry
	}{
		{
			name:   "bearer token",
			change: func(s *Settings) { s.Token = "t0ken-value" },
			want:   map[string]string{"Authorization": "Bearer t0ken-value"},
		},
		{
			name:   "basic auth",
			change: func(s *Settings) { s.Username, s.Password = "meshroll", "pa55word" },
			want:   map[string]string{"Authorization": "Basic bWVzaHJvbGw6cGE1NXdvcmQ="},
		},
		{
			name: "extra headers beside a token",
			change: func(s *Settings) {
				s.Token = "t0ken-value"
				s.Headers = map[string]string{"X-Scope-OrgID": "tenant-1", "x-custom": "yes"}
			},
			want: map[string]string{"Authorization": "Bearer t0ken-value", "X-Scope-Orgid": "tenant-1", "X-Custom": "yes"},
		},
		{
			name: "no credentials",
			want: map[string]string{"Authorization": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prom := newFakeProm(t, answers(healthy()))
			s := testSettings(prom.URL)
			if tt.change != nil {
				tt.change(&s)
			}
			a, err := New(s)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Evaluate(t.Context(), at); err != nil {
				t.Fatal(err)
			}
			seen := prom.seen()
			if len(seen) != 6 {
				t.Errorf("%d requests, want 6", len(seen))
			}
			for _, r := range seen {
				got := map[string]string{}
				for name := range tt.want {
					got[name] = r.Header.Get(name)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("request headers (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// A redirect to another host must not carry the credentials along.
func TestRedirectKeepsCredentials(t *testing.T) {
	t.Parallel()
	other := newFakeProm(t, answers(healthy()))
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path+"?"+r.URL.RawQuery, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	s := testSettings(redirector.URL)
	s.Token = "t0ken-value"
	s.Headers = map[string]string{"X-Scope-OrgID": "tenant-1"}
	a, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Evaluate(t.Context(), at); err != nil {
		t.Fatal(err)
	}
	if len(other.seen()) == 0 {
		t.Fatal("the redirect was not followed")
	}
	for _, r := range other.seen() {
		if got := r.Header.Get("Authorization") + r.Header.Get("X-Scope-OrgID"); got != "" {
			t.Errorf("the other host received credentials %q", got)
		}
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	prom := newFakePromTLS(t, answers(healthy()))
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: prom.Certificate().Raw})
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// A valid PEM bundle that does not hold the server's certificate.
	otherCA := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(otherCA, selfSignedPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		caFile  string
		skip    bool
		wantErr error
	}{
		{name: "CA file trusted", caFile: caFile},
		{name: "InsecureSkipVerify", skip: true},
		{name: "unknown authority", wantErr: ErrUnavailable},
		{name: "another CA only", caFile: otherCA, wantErr: ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testSettings(prom.URL)
			s.CAFile, s.InsecureSkipVerify, s.Retries = tt.caFile, tt.skip, 1
			a, err := New(s)
			if err != nil {
				t.Fatal(err)
			}
			w, err := a.Evaluate(t.Context(), at)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && !w.Judged() {
				t.Errorf("window not judged: %+v", w.Results)
			}
			if err != nil && !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error %q does not mention the certificate", err)
			}
		})
	}
}

// selfSignedPEM is a CA certificate that signed nothing the tests serve.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "other test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*Settings)
		want   []string // each problem, in order
	}{
		{
			name: "what config cannot know, all at once",
			change: func(s *Settings) {
				s.Namespace, s.Retries, s.Backoff = "", -1, -time.Millisecond
				s.CAFile = filepath.Join(dir, "missing.pem")
				s.Username, s.Password = "meshroll", "pa55word"
			},
			want: []string{
				"invalid analysis settings: the namespace of the workloads is required (destination_workload_namespace)",
				"the retry bounds (-1 attempts, backoff -1ms) must not be negative",
				fmt.Sprintf("failed to read the Prometheus CA file (MESHROLL_PROMETHEUS_CA_FILE): open %s: no such file or directory", filepath.Join(dir, "missing.pem")),
			},
		},
		{
			name:   "CA file without a certificate",
			change: func(s *Settings) { s.CAFile = notPEM },
			want:   []string{"invalid analysis settings: the Prometheus CA file " + notPEM + " holds no PEM certificate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testSettings("http://prometheus.invalid:9090")
			tt.change(&s)
			_, err := New(s)
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			got := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			for _, secret := range []string{"pa55word", "bWVzaHJvbGw6cGE1NXdvcmQ="} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds the secret %q", err, secret)
				}
			}
		})
	}
}

// Secrets never reach an error or a result, even when Prometheus (or a proxy)
// echoes the request headers back.
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	const (
		token    = "tok-S3CRET-value"
		password = "pw-S3CRET-value"
		tenant   = "tenant-S3CRET-value"
	)
	echo := func(r *http.Request) string {
		return fmt.Sprintf("denied: Authorization=%s X-Scope-OrgID=%s", r.Header.Get("Authorization"), r.Header.Get("X-Scope-OrgID"))
	}
	tests := []struct {
		name    string
		change  func(*Settings)
		respond func(r *http.Request) (int, string)
	}{
		{
			name:    "bad_data echoing a bearer token",
			change:  func(s *Settings) { s.Token = token },
			respond: func(r *http.Request) (int, string) { return http.StatusBadRequest, errorBody("bad_data", echo(r)) },
		},
		{
			name:    "503 body echoing basic auth",
			change:  func(s *Settings) { s.Username, s.Password = "meshroll", password },
			respond: func(r *http.Request) (int, string) { return http.StatusServiceUnavailable, echo(r) },
		},
		{
			name:    "401 echoing a header",
			change:  func(s *Settings) { s.Token = token; s.Headers = map[string]string{"X-Scope-OrgID": tenant} },
			respond: func(r *http.Request) (int, string) { return http.StatusUnauthorized, echo(r) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prom := newFakeProm(t, func(r *http.Request, _ string, _ int) (int, string) { return tt.respond(r) })
			s := testSettings(prom.URL)
			tt.change(&s)
			a, err := New(s)
			if err != nil {
				t.Fatal(err)
			}
			var texts []string
			w, err := a.Evaluate(t.Context(), at)
			if err != nil {
				texts = append(texts, err.Error())
			}
			for _, r := range w.Results {
				texts = append(texts, r.Message, r.Threshold, r.Check)
			}
			if err := a.Preflight(t.Context()); err != nil {
				texts = append(texts, err.Error())
			} else {
				t.Error("Preflight passed against a failing Prometheus")
			}
			texts = append(texts, a.Queries()...)
			all := strings.Join(texts, "\n")
			if !strings.Contains(all, "denied") {
				t.Fatalf("the echo did not reach the messages, so the test proves nothing:\n%s", all)
			}
			for _, secret := range []string{token, password, tenant, base64.StdEncoding.EncodeToString([]byte("meshroll:" + password))} {
				if strings.Contains(all, secret) {
					t.Errorf("a message holds the secret %q:\n%s", secret, all)
				}
			}
		})
	}
}
