// Command meshroll moves traffic between the stable and canary versions of a service by
// changing the weights of an Istio VirtualService route. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshroll/meshroll/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	environ := os.Environ()
	if len(os.Args) == 2 && os.Args[1] == "version" {
		environ = append(environ, "MESHROLL_MODE=version")
	}
	code := app.Main(ctx, environ, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
