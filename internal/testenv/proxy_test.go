package testenv

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"
)

// A server on a ServiceAddress, exposed as a Service, answers through the API server's service
// proxy; the address is not loopback, and it is gone when the test ends.
func TestExposeService(t *testing.T) {
	t.Parallel()
	e := Get(t)
	var host string
	t.Run("exposed", func(t *testing.T) {
		host = ServiceAddress(t)
		if a := netip.MustParseAddr(host); a.IsLoopback() || !serviceNet.Contains(a) {
			t.Fatalf("ServiceAddress() = %s, want one of %s", host, serviceNet)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s from %s", r.URL.Path, host)
		})}
		go srv.Serve(l) //nolint:errcheck // ends with Close
		t.Cleanup(func() { srv.Close() })
		ns := e.Namespace(t)
		e.ExposeService(t, ns, "web", "http", 8080, l.Addr().String(), "/ready")
		got, err := e.Kube.CoreV1().Services(ns).ProxyGet("", "web", "8080", "/hello", nil).DoRaw(t.Context())
		if want := "/hello from " + host; err != nil || string(got) != want {
			t.Errorf("through the proxy: %q, %v; want %q", got, err, want)
		}
	})
	if host == "" {
		return // skipped
	}
	if l, err := net.Listen("tcp", net.JoinHostPort(host, "0")); err == nil {
		l.Close()
		t.Errorf("%s is still an address of this machine after the test", host)
	}
}
