package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// The package's Env: started by the first Get, stopped by Main after the tests.
var (
	mainUsed  bool
	startOnce sync.Once
	shared    *Env
	startErr  error
)

// startTimeout bounds starting etcd, kube-apiserver and the CRDs on a busy 2-core machine.
const startTimeout = 5 * time.Minute

// Main is for TestMain: it runs the tests and stops the Env that Get started, if any. A test
// package whose pure tests run alone (go test -short, or -run on them) never starts it.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	mainUsed = true
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Get returns the package's Env, starting it on first use. It skips the test under
// `go test -short` (the inner loop runs pure tests only) and, outside CI, when the binaries
// are missing; with CI=true a missing binary fails the test.
func Get(t testing.TB) *Env {
	t.Helper()
	if !mainUsed {
		t.Fatal("testenv.Get needs testenv.Main: add `func TestMain(m *testing.M) { testenv.Main(m) }`")
	}
	SkipShort(t)
	startOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		shared, startErr = Start(ctx)
	})
	skipOrFail(t, startErr)
	return shared
}

// skipOrFail ends the test if a control plane failed to start: a skip when assets are missing
// outside CI, a failure otherwise.
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	switch {
	case errors.Is(err, ErrAssetsMissing) && os.Getenv("CI") != "true":
		t.Skip(err)
	case err != nil:
		t.Fatalf("testenv: %v", err)
	}
}

// SkipShort skips an integration test (one that starts a server or waits on real time) under
// `go test -short`.
func SkipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs without -short")
	}
}
