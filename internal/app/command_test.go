package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshroll/meshroll/internal/rollout"
)

// The command line: help, a mode as the argument, and everything meshroll does not
// understand. None of these cases reaches a cluster.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string // after the program's name
		vars       []string
		wantCode   int
		wantStdout string   // "" = nothing; usage = the usage text
		wantStderr []string // substrings; usage = the usage text
		wantFiles  bool     // the result files are written (an invalid run)
	}{
		{name: "--help", args: []string{"--help"}, wantStdout: usage},
		{name: "-h", args: []string{"-h"}, wantStdout: usage},
		{name: "help", args: []string{"help"}, wantStdout: usage},
		{name: "help whatever the input", args: []string{"--help"}, vars: []string{"MESHROLL_WEIGHT=ten", "MESHROLL_WIEGHT=20"}, wantStdout: usage},
		{name: "help with more", args: []string{"help", "status"}, wantCode: 2, wantStderr: []string{`help takes no further arguments, got ["status"]`, usage}},
		{name: "version", args: []string{"version"}, wantStdout: Version + "\n"},
		{name: "version by MESHROLL_MODE", vars: []string{"MESHROLL_MODE=version"}, wantStdout: Version + "\n"},
		{name: "version by both", args: []string{"version"}, vars: []string{"MESHROLL_MODE=version"}, wantStdout: Version + "\n"},
		// The argument is the mode: the input is checked for it (and found wanting here, so
		// the run is reported invalid, as with MESHROLL_MODE).
		{name: "phase", args: []string{"phase"}, wantCode: 2, wantStderr: []string{"MESHROLL_WEIGHT is required"}, wantFiles: true},
		{name: "status", args: []string{"status"}, vars: []string{"MESHROLL_STEPS=10,50"}, wantCode: 2,
			wantStderr: []string{"MESHROLL_STEPS=10,50: only used with MESHROLL_MODE=progress (and resume), but the mode is status"}, wantFiles: true},
		{name: "status by both", args: []string{"status"}, vars: []string{"MESHROLL_MODE=status", "MESHROLL_STEPS=10,50"}, wantCode: 2,
			wantStderr: []string{"but the mode is status"}, wantFiles: true},
		{name: "mode given twice, differently", args: []string{"status"}, vars: []string{"MESHROLL_MODE=progress"}, wantCode: 2,
			wantStderr: []string{"the argument asks for mode status but MESHROLL_MODE=progress"}},
		{name: "version against MESHROLL_MODE", args: []string{"version"}, vars: []string{"MESHROLL_MODE=promote"}, wantCode: 2,
			wantStderr: []string{"mode version but MESHROLL_MODE=promote"}},
		{name: "unknown argument", args: []string{"deploy"}, wantCode: 2, wantStderr: []string{`unknown argument "deploy"`, usage}},
		{name: "a flag", args: []string{"--dry-run"}, wantCode: 2, wantStderr: []string{`unknown argument "--dry-run"`, usage}},
		{name: "an empty argument", args: []string{""}, wantCode: 2, wantStderr: []string{`unknown argument ""`, usage}},
		{name: "a mode in capitals", args: []string{"STATUS"}, wantCode: 2, wantStderr: []string{`unknown argument "STATUS"`}},
		{name: "extra argument", args: []string{"status", "now"}, wantCode: 2, wantStderr: []string{`too many arguments ["status" "now"]`, usage}},
		{name: "a secret as argument", args: []string{"token-0123456789"}, vars: []string{"MESHROLL_PROMETHEUS_TOKEN=token-0123456789"}, wantCode: 2,
			wantStderr: []string{`unknown argument "***"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "out")
			environ := append([]string{"HOME=" + t.TempDir(), "MESHROLL_CI=plain", "MESHROLL_OUTPUT_DIR=" + out}, tt.vars...)
			var stdout, stderr bytes.Buffer
			code := Main(t.Context(), append([]string{"meshroll"}, tt.args...), environ, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			if !tt.wantFiles {
				if diff := cmp.Diff(tt.wantStdout, stdout.String()); diff != "" {
					t.Errorf("stdout (-want +got):\n%s", diff)
				}
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if len(tt.wantStderr) == 0 && stderr.Len() > 0 {
				t.Errorf("stderr is not empty:\n%s", stderr.String())
			}
			if strings.Contains(stdout.String()+stderr.String(), "token-0123456789") {
				t.Error("the Prometheus token was printed")
			}
			files, err := os.ReadDir(out)
			switch {
			case tt.wantFiles && len(files) != 4:
				t.Errorf("%d files in MESHROLL_OUTPUT_DIR (%v), want the 4 result files", len(files), err)
			case !tt.wantFiles && !errors.Is(err, os.ErrNotExist):
				t.Errorf("MESHROLL_OUTPUT_DIR was created (%d files, %v); a command line that does not run writes nothing", len(files), err)
			}
		})
	}
}

// The usage names every mode and every exit code, and where the inputs are documented.
func TestUsage(t *testing.T) {
	t.Parallel()
	for _, m := range modeNames() {
		if !strings.Contains(usage, "\n  "+m+" ") {
			t.Errorf("the usage does not describe mode %s", m)
		}
	}
	outcomes := []rollout.Outcome{rollout.Promoted, rollout.WeightSet, rollout.RolledBack, rollout.Unchanged, rollout.Status, rollout.DryRun,
		rollout.Invalid, rollout.CanaryFailed, rollout.Inconclusive, rollout.Failed, rollout.Cancelled}
	for _, o := range outcomes {
		if code := fmt.Sprintf("\n  %d ", o.ExitCode()); !strings.Contains(usage, code) {
			t.Errorf("the usage does not list exit code %d (%s)", o.ExitCode(), o)
		}
	}
	if !strings.Contains(usage, "README.md") {
		t.Error("the usage does not say where the inputs are documented")
	}
}

// A signal cancels the context with a cause that names it; stop leaves a context that no
// signal cancelled without that cause.
func TestSignalContext(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("sends SIGTERM to itself")
	}
	ctx, stop := SignalContext(t.Context())
	defer stop()
	self, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := self.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not cancel the context")
	}
	cause := context.Cause(ctx)
	if cause == nil || cause.Error() != "cancelled by SIGTERM" || !errors.Is(cause, context.Canceled) {
		t.Errorf("cause %v, want \"cancelled by SIGTERM\" that is a context.Canceled", cause)
	}

	ctx, stop = SignalContext(t.Context())
	stop()
	if cause := context.Cause(ctx); cause != context.Canceled {
		t.Errorf("cause after stop: %v, want context.Canceled", cause)
	}
	if got := (&Signalled{Signal: os.Interrupt}).Error(); got != "cancelled by SIGINT" {
		t.Errorf("an interrupt reads %q, want \"cancelled by SIGINT\"", got)
	}
}
