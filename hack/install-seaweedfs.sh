#!/usr/bin/env bash
# Builds a pinned SeaweedFS `weed` (Apache-2.0) from its Go module through the Go module proxy
# into a cache outside the repository, and prints the directory holding the binary. The store's
# tests run it as their S3-compatible object storage (tests/support/s3.py). A warm cache makes
# this a no-op, so `make test` and the tests can call it freely.
#
#   bash hack/install-seaweedfs.sh      # prints ~/.cache/assay/seaweedfs-<pin>/bin
set -euo pipefail

# SeaweedFS tags no Go module releases; this is the pseudo-version of one commit.
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
CACHE="${ASSAY_CACHE:-$HOME/.cache/assay}"

BIN="$CACHE/seaweedfs-$SEAWEEDFS_VERSION/bin"
if [ -x "$BIN/weed" ]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { echo "install-seaweedfs: Go is required (https://go.dev/dl) and was not found" >&2; exit 1; }
mkdir -p "$BIN"
start=$(date +%s)
echo "install-seaweedfs: building weed $SEAWEEDFS_VERSION (a large build: several minutes)" >&2
# Build in scratch space and move the binary in last, so an interrupted build never leaves a
# half-written binary that the warm-cache check above would trust.
scratch=$(mktemp -d "$CACHE/.seaweedfs-build.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
grep -q "Apache License" "$dir/LICENSE" || { echo "install-seaweedfs: SeaweedFS is no longer Apache-licensed" >&2; exit 1; }
# Built as the main module, from a copy: its go.mod has a replace directive, which
# `go install module@version` refuses.
cp -r "$dir" "$scratch/src" && chmod -R u+w "$scratch/src"
(cd "$scratch/src" && CGO_ENABLED=0 GOTOOLCHAIN=local nice -n 10 go build -trimpath -ldflags "-s -w" -o "$scratch/weed" ./weed)
mv "$scratch/weed" "$BIN/weed"
echo "install-seaweedfs: built weed $SEAWEEDFS_VERSION in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
