K8S_VERSION ?= v1.37.2
ASSETS ?= $(HOME)/.cache/meshroll/k8s-$(K8S_VERSION)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The GoReleaser of .github/workflows/release.yml (release_test.go holds the two equal).
GORELEASER_VERSION ?= v2.15.1

# sudo only when not root and sudo exists.
SUDO := $(shell [ "$$(id -u)" -ne 0 ] && command -v sudo)

.PHONY: tools lint test test-short soak bench build demo clean release-check

tools:
	@command -v etcd >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y etcd-server; }
	@command -v prometheus >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }
	@command -v ip >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends iproute2; }
	.ci/kube-apiserver.sh $(K8S_VERSION) $(ASSETS)
	ln -sf "$$(command -v etcd)" "$(ASSETS)/etcd"

lint:
	@files=$$(git ls-files --cached --others --exclude-standard '*.go' | xargs -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt needed:"; echo "$$files"; exit 1; fi
	go vet ./...

# -parallel 8: the end-to-end tests spend their time waiting for held steps, not computing.
test: tools lint
	MESHROLL_TEST_ASSETS=$(ASSETS) go test -count=1 -parallel 8 -timeout 20m ./...

# The inner loop: pure tests only, no control plane, Prometheus or binary build.
test-short: lint
	go test -short -count=1 ./...

# make test three times in a row beside two CPU-bound processes: a test that depends on the
# machine's speed fails here. Not part of .ci/run, which stays fast.
soak: tools
	.ci/soak.sh

bench: tools
	MESHROLL_TEST_ASSETS=$(ASSETS) go test -run '^$$' -bench . -benchmem -count 5 ./...

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/meshroll/meshroll/internal/app.Version=$(VERSION)" -o bin/meshroll .

# goreleaser check of .goreleaser.yaml. Not part of make test: GoReleaser is built from source
# on first use (about 15 minutes on two busy cores, seconds afterwards); release_test.go holds
# the configuration in every test run instead.
# The release's own checks, too costly for every test run: GoReleaser's check of
# .goreleaser.yaml, and a build of every released platform (release_build_test.go).
release-check:
	go run github.com/goreleaser/goreleaser/v2@$(GORELEASER_VERSION) check
	go test -tags release -count=1 -run TestReleaseCrossBuild .

# DEMO_API: the routing the demo's rollouts steer, istio (a VirtualService) or gateway (a
# Gateway API HTTPRoute).
DEMO_API ?= istio

demo: tools build
	MESHROLL_TEST_ASSETS=$(ASSETS) go run ./internal/demo -api '$(DEMO_API)'

clean:
	rm -rf bin/ demo-output/
