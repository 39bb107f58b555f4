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
	code := app.Main(ctx, os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
