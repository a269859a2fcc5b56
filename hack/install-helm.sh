#!/usr/bin/env bash
# Builds a pinned helm (and, with --kind, kind) from its Go module through the Go module
# proxy into a cache outside the repository, and prints the directory holding the binary.
# A warm cache makes this a no-op, so `make test` and hack/kind-e2e.sh can call it freely.
#
#   bash hack/install-helm.sh          # helm: prints ~/.cache/assay/helm-<pin>/bin
#   bash hack/install-helm.sh --kind   # kind: prints ~/.cache/assay/kind-<pin>/bin
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
KIND_VERSION="${KIND_VERSION:-v0.30.0}"
CACHE="${ASSAY_CACHE:-$HOME/.cache/assay}"

case "${1:-}" in
  --kind) name=kind; version="$KIND_VERSION"; module="sigs.k8s.io/kind@$KIND_VERSION" ;;
  ""|--helm) name=helm; version="$HELM_VERSION"; module="helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
  *) echo "usage: $0 [--helm|--kind]" >&2; exit 2 ;;
esac

BIN="$CACHE/$name-$version/bin"
if [ -x "$BIN/$name" ]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { echo "install-helm: Go is required (https://go.dev/dl) and was not found" >&2; exit 1; }
mkdir -p "$BIN"
start=$(date +%s)
echo "install-helm: building $name $version" >&2
# Build into a scratch GOBIN and move the binary in last, so an interrupted build never
# leaves a half-written binary that the warm-cache check above would trust.
scratch=$(mktemp -d "$CACHE/.$name-build.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# helm prints its version from this variable; `go install` alone would report "v3.x-dev".
ldflags="-s -w"
[ "$name" = helm ] && ldflags="$ldflags -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$scratch" go install -trimpath -ldflags "$ldflags" "$module"
mv "$scratch/$name" "$BIN/$name"
echo "install-helm: built $name $version in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
