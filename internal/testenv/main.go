package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// The package's Env, set by Main before any test runs.
var (
	shared     *Env
	skipReason string
	mainUsed   bool
)

// Main is for TestMain: it starts one Env for the test package, runs the tests and stops it.
// Missing binaries skip the tests that call Get, except when CI=true: there a missing binary
// is a failure. Any other start-up error fails the package.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	mainUsed = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, err := Start(ctx)
	switch {
	case errors.Is(err, ErrAssetsMissing) && os.Getenv("CI") != "true":
		skipReason = err.Error()
	case err != nil:
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		return 1
	default:
		shared = env
	}

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

// Get returns the Env that Main started. It skips the test when the binaries are missing
// outside CI.
func Get(t testing.TB) *Env {
	t.Helper()
	switch {
	case shared != nil:
		return shared
	case skipReason != "":
		t.Skip(skipReason)
	default:
		t.Fatal("testenv.Get needs testenv.Main: add `func TestMain(m *testing.M) { testenv.Main(m) }`")
	}
	return nil
}
