package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"
)

// smokeTest is the demo's pre-rollout webhook: it stands in for a test runner such as
// flagger-loadtester, prints the Flagger payload meshroll sent and answers 200.
type smokeTest struct {
	Addr string // host:port on loopback
	srv  *http.Server
}

func startSmokeTest() (*smokeTest, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to start the smoke-test webhook: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /smoke", func(w http.ResponseWriter, r *http.Request) {
		var payload struct {
			Name, Namespace, Phase, Checksum string
			Metadata                         map[string]string
		}
		if err := json.NewDecoder(r.Body).Decode(&payload); err != nil {
			http.Error(w, "not a Flagger webhook payload: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Printf("demo: smoke-test webhook called for %s/%s, phase %s, checksum %s, cmd %q: passed\n",
			payload.Namespace, payload.Name, payload.Phase, payload.Checksum, payload.Metadata["cmd"])
		fmt.Fprintln(w, "smoke test passed")
	})
	s := &smokeTest{Addr: l.Addr().String(), srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go s.srv.Serve(l) //nolint:errcheck // Serve returns ErrServerClosed after Close
	return s, nil
}

func (s *smokeTest) Close() error { return s.srv.Close() }
