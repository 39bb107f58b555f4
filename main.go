// Command meshroll moves traffic between the stable and canary versions of a service by
// changing the weights of an Istio VirtualService route. See README.md.
package main

import (
	"context"
	"os"

	"github.com/meshroll/meshroll/internal/app"
)

func main() {
	ctx, stop := app.SignalContext(context.Background())
	code := app.Main(ctx, os.Args, os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
