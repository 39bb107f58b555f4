package app

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/report"
)

// modeVersion is the mode that prints meshroll's version and nothing else. It is not a mode
// of config: it needs no other input and touches no cluster.
const modeVersion = "version"

// usage is what `meshroll --help` prints. Inputs are environment variables, so the command
// line only names the mode; docs/inputs.md (linked from README.md) is the reference of every
// variable.
const usage = `meshroll performs a canary release on Istio: it moves traffic between the stable and
the canary version of a service on one HTTP route of a VirtualService (a mirror, an A/B
route for matching requests, then weights), judges each step on Prometheus metrics, and
returns all traffic to the stable version when the canary fails.

Usage:
  meshroll [MODE]
  meshroll help | -h | --help

Every input is a MESHROLL_* environment variable (MESHROLL_VIRTUAL_SERVICE,
MESHROLL_STABLE_SUBSET, MESHROLL_CANARY_SUBSET, ...). The full reference is
docs/inputs.md, linked from README.md:
https://github.com/meshroll/meshroll/blob/HEAD/docs/inputs.md

Modes (the argument, or MESHROLL_MODE; if both are given they must agree):
  phase      one step to the canary weight MESHROLL_WEIGHT
  progress   every canary weight of MESHROLL_STEPS in turn, each held (the default)
  promote    canary 100
  rollback   canary 0, all traffic to stable
  status     print the route's weights and the rollout in flight (or the last one)
  resume     go on with a progression whose runner died, from the step it recorded
  version    print meshroll's version
With MESHROLL_DRY_RUN=true a mode plans its changes and prints them, and writes nothing.

Exit codes:
  0    success: the weights are as asked, or the status or dry run was printed
  1    runtime or infrastructure failure (a progression returned traffic to stable), or
       interrupted: someone else changed the route (or took the lock), and meshroll
       stopped without writing
  2    invalid input, command line or failed preflight check, or the VirtualService
       locked by another run; nothing was written
  3    the canary failed its checks; traffic was returned to stable
  4    inconclusive: too little data to judge the canary; traffic was returned to stable
  130  cancelled by SIGINT or SIGTERM

Every run but help, version and a wrong command line leaves result.json, summary.md,
outputs.env and junit.xml in MESHROLL_OUTPUT_DIR (default meshroll-out).
`

// command reads the command line, args (os.Args: the program's name first). It returns the
// environment the run sees, with MESHROLL_MODE set when the argument names a mode, and
// done=true with an exit code when the command line is all there is to do: help (0), or a
// command line meshroll does not understand (2), which is reported on stderr and leaves no
// result files, since no run was asked for in a way meshroll could read.
func command(args, environ []string, stdout, stderr io.Writer) (env []string, code int, done bool) {
	if len(args) <= 1 {
		return environ, 0, false
	}
	arg := args[1]
	wrong := func(format string, a ...any) ([]string, int, bool) {
		msg := report.Redact(fmt.Sprintf(format, a...), config.Reporting(environ).Secrets())
		fmt.Fprintf(stderr, "meshroll: %s\n\n%s", msg, usage)
		return nil, 2, true
	}
	switch {
	case arg == "help" || arg == "-h" || arg == "--help":
		if len(args) > 2 {
			return wrong("%s takes no further arguments, got %q", arg, args[2:])
		}
		fmt.Fprint(stdout, usage)
		return nil, 0, true
	case !isMode(arg):
		return wrong("unknown argument %q: the only argument is a mode (%s) or help", arg, strings.Join(modeNames(), ", "))
	case len(args) > 2:
		return wrong("too many arguments %q: meshroll takes one argument, the mode", args[1:])
	}
	if set := strings.TrimSpace(getenv(environ)("MESHROLL_MODE")); set != "" && set != arg {
		msg := fmt.Sprintf("the argument asks for mode %s but MESHROLL_MODE=%s: give the mode once, or make them agree; nothing was changed", arg, set)
		fmt.Fprintf(stderr, "meshroll: %s\n", report.Redact(msg, config.Reporting(environ).Secrets()))
		return nil, 2, true
	}
	return append(slices.Clip(environ), "MESHROLL_MODE="+arg), 0, false // later entries win
}

// modeNames are the modes the argument may name: MESHROLL_MODE's and version.
func modeNames() []string {
	var names []string
	for _, m := range config.Modes() {
		names = append(names, string(m))
	}
	return append(names, modeVersion)
}

func isMode(arg string) bool { return slices.Contains(modeNames(), arg) }
