# meshroll images. Three targets, one binary:
#
#   docker build -t meshroll .                           # runtime (default): root, scratch; the GitHub Action
#   docker build --target nonroot -t meshroll:nonroot .  # user 65532, scratch; a Job or Pod in Kubernetes
#   docker build --target shell -t meshroll:shell .      # root, busybox (sh, cat); GitLab CI image:, Jenkins
#
# Pass --build-arg VERSION=v1.2.3 to stamp the version (`MESHROLL_MODE=version meshroll`).
# packaging_test.go runs the go build line below exactly and checks its result, because no
# Docker engine runs in the test environment; keep that RUN on one line.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/meshroll/meshroll/internal/app.Version=${VERSION}" -o /out/meshroll .

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

# The default target, last on purpose: `image: Dockerfile` in action.yml builds it. GitHub
# runs Docker actions as root and meshroll must write the runner's $GITHUB_OUTPUT and
# $GITHUB_STEP_SUMMARY files (owned by the runner's user), so no USER here.
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
