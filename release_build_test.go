//go:build release

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Built with the release tag only (make release-check): on a machine whose Go build cache is
// empty, building meshroll for three more platforms costs about 20 CPU-minutes, which would
// dominate every fresh `make test`. The release workflow builds the same targets.

// crossBuilds is how many go builds TestReleaseCrossBuild runs at once: each is parallel
// itself, more would only queue on the CPUs.
const crossBuilds = 2

// Builds every released target as .goreleaser.yaml does and checks what each binary is.
func TestReleaseCrossBuild(t *testing.T) {
	t.Parallel()
	c := readGoreleaser(t)
	b := c.Builds[0]
	const tag = "v0.0.0-release-test"
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()

	type target struct{ goos, goarch string }
	var targets []target
	for _, goos := range b.Goos {
		for _, goarch := range b.Goarch {
			targets = append(targets, target{goos, goarch})
		}
	}
	var ldflags []string
	for _, l := range b.Ldflags {
		ldflags = append(ldflags, c.render(t, l, tag, "", ""))
	}
	errs := make([]error, len(targets))
	slots := make(chan struct{}, crossBuilds)
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			args := append(slices.Clone(b.Flags), "-ldflags", strings.Join(ldflags, " "), "-o", filepath.Join(dir, tg.goos+"_"+tg.goarch), b.Main)
			args = append([]string{"build"}, args...)
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Env = append(os.Environ(), append(slices.Clone(b.Env), "GOOS="+tg.goos, "GOARCH="+tg.goarch)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("%v: %s", err, out)
			}
		})
	}
	wg.Wait()

	for i, tg := range targets {
		t.Run(tg.goos+"/"+tg.goarch, func(t *testing.T) {
			if errs[i] != nil {
				t.Fatalf("GOOS=%s GOARCH=%s go build as .goreleaser.yaml: %v", tg.goos, tg.goarch, errs[i])
			}
			bin := filepath.Join(dir, tg.goos+"_"+tg.goarch)
			checkBinaryFormat(t, bin, tg.goos, tg.goarch)
			data, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte(tag)) {
				t.Errorf("the binary does not hold its version %s (ldflags -X)", tag)
			}
			if tg.goos != runtime.GOOS || tg.goarch != runtime.GOARCH {
				return
			}
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = []string{"MESHROLL_MODE=version"}
			out, err := cmd.CombinedOutput()
			if got := strings.TrimSpace(string(out)); err != nil || got != tag {
				t.Errorf("MESHROLL_MODE=version: %q (%v), want %s", got, err, tag)
			}
		})
	}
}
