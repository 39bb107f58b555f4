#!/usr/bin/env bash
# Builds kube-apiserver from the Go module proxy and caches it per version.
# Usage: .ci/kube-apiserver.sh VERSION DEST_DIR   (e.g. v1.37.2 ~/.cache/meshroll/k8s-v1.37.2)
# Prints the directory that holds the binary.
set -euo pipefail
version=$1
dest=$2
if [ -x "$dest/kube-apiserver" ]; then
  echo "$dest"
  exit 0
fi
minor=${version#v1.}
staging_version=v0.$minor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init meshroll.local/kube-apiserver-build >/dev/null 2>&1
modfile=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
go mod edit -require "k8s.io/kubernetes@$version"
# Every staging module that kubernetes replaces with a local path is taken from the proxy instead.
for m in $(sed -n '/^replace (/,/^)/p' "$modfile" | awk '$2 == "=>" && $3 ~ /^\.\// {print $1}'); do
  go mod edit -replace "$m=$m@$staging_version"
done
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
go mod tidy >&2
mkdir -p "$dest.tmp"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
