# meshroll images. Three targets, one binary:
#
#   docker build -t meshroll .                           # runtime (default): root, scratch; docker run, docker:// steps
#   docker build --target nonroot -t meshroll:nonroot .  # user 65532, scratch; a Job or Pod in Kubernetes
#   docker build --target shell -t meshroll:shell .      # root, busybox (sh, cat); GitLab CI image:, Jenkins
#
# Pass --build-arg VERSION=v1.2.3 to stamp the version (`MESHROLL_MODE=version meshroll`).
# packaging_test.go runs the go build line below exactly and checks its result, because no
# Docker engine runs in the test environment; keep that RUN on one line.
#
# Multi-platform (the release builds linux/amd64 and linux/arm64 at once): the build stage
# runs on the builder's own platform and Go cross-compiles for the target one, so no
# emulation is needed. BuildKit (docker build, buildx) sets TARGETOS and TARGETARCH; left
# empty, Go builds for the machine it runs on.

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X github.com/meshroll/meshroll/internal/app.Version=${VERSION}" -o /out/meshroll .

# For Kubernetes: runs as an unprivileged user (runAsNonRoot works), nothing but the binary.
FROM scratch AS nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="meshroll" \
      org.opencontainers.image.description="Canary releases on Istio: moves traffic between the stable and canary subsets of a VirtualService route, step by step (non-root)" \
      org.opencontainers.image.source="https://github.com/meshroll/meshroll" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/meshroll /meshroll
USER 65532:65532
ENTRYPOINT ["/meshroll"]

# For GitLab CI (`image:` runs the job script with sh) and Jenkins (docker.inside needs sh
# and cat): a shell around the binary. Root, so that it can write to the job's workspace.
FROM busybox:1.37 AS shell
ARG VERSION=dev
LABEL org.opencontainers.image.title="meshroll" \
      org.opencontainers.image.description="Canary releases on Istio: moves traffic between the stable and canary subsets of a VirtualService route, step by step (with a shell)" \
      org.opencontainers.image.source="https://github.com/meshroll/meshroll" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/meshroll /usr/local/bin/meshroll
ENTRYPOINT []
CMD ["meshroll"]

# The default target, last on purpose: `docker build .` builds it, and a workflow step
# `uses: docker://ghcr.io/meshroll/meshroll:<version>` runs it. GitHub runs such steps as root
# and meshroll must write the runner's $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY files (owned by
# the runner's user), so no USER here.
FROM scratch AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="meshroll" \
      org.opencontainers.image.description="Canary releases on Istio: moves traffic between the stable and canary subsets of a VirtualService route, step by step" \
      org.opencontainers.image.source="https://github.com/meshroll/meshroll" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/meshroll /meshroll
# scratch has no /etc/passwd, so nothing else would say where ~/.kube/config is
# (`docker run -v "$HOME/.kube:/root/.kube:ro" meshroll`); CI runners set their own HOME.
ENV HOME=/root
ENTRYPOINT ["/meshroll"]
