#!/usr/bin/env bash
# Builds a pinned promtool from Prometheus's Go module through the Go module proxy into a cache
# outside the repository, and prints the directory holding the binary. A warm cache makes this
# a no-op, so `make test` and the chart tests can call it freely.
#
#   bash hack/install-promtool.sh      # prints ~/.cache/assay/promtool-<pin>/bin
set -euo pipefail

# Prometheus tags its Go module v0.<major><minor>.<patch>: v0.316.0 is Prometheus 3.16.0.
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
CACHE="${ASSAY_CACHE:-$HOME/.cache/assay}"
module="github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"

BIN="$CACHE/promtool-$PROMTOOL_VERSION/bin"
if [ -x "$BIN/promtool" ]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { echo "install-promtool: Go is required (https://go.dev/dl) and was not found" >&2; exit 1; }
mkdir -p "$BIN"
start=$(date +%s)
echo "install-promtool: building promtool $PROMTOOL_VERSION" >&2
# Build into a scratch GOBIN and move the binary in last, so an interrupted build never
# leaves a half-written binary that the warm-cache check above would trust.
scratch=$(mktemp -d "$CACHE/.promtool-build.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# promtool --version prints this; `go install` alone leaves it empty.
tag="${PROMTOOL_VERSION#v0.}"
release="${tag:0:1}.$((10#${tag:1:2})).${tag##*.}"
ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$scratch" go install -trimpath -ldflags "$ldflags" "$module"
mv "$scratch/promtool" "$BIN/promtool"
echo "install-promtool: built promtool $PROMTOOL_VERSION in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
