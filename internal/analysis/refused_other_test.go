//go:build !unix

package analysis

import (
	"net"
	"testing"
)

// refusedURL is an http URL on loopback that refuses connections: a port just closed (where a
// port cannot be held without listening, another test may take it meanwhile).
func refusedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	return url
}
