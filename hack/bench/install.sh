#!/usr/bin/env bash
# Tools for hack/bench/load_vs_wrk.py: nginx (the loopback target), wrk (the reference
# client) and Locust (the Python reference), from Debian's packages and the lock; bombardier
# and vegeta built from their Go modules into ${ASSAY_CACHE:-~/.cache/assay}/bench-tools.
# Run as root (or with sudo available). Idempotent: a tool already there is kept.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update
    # nginx-light is gone from newer Debian releases; plain nginx serves a static file as well.
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
        wanted=("${missing[@]/nginx-light/nginx}")
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${wanted[@]}"
    fi
fi

# The bench extra as locked in requirements-dev.txt (make deps installs the same file).
make -C "$(dirname "$0")/../.." deps

# Released versions that build with Go 1.26; both MIT-licensed (checked below in the module's
# LICENSE before the binary is kept).
BOMBARDIER=github.com/codesenberg/bombardier@v1.2.6
VEGETA=github.com/tsenart/vegeta/v12@v12.13.0
TOOLS="${ASSAY_CACHE:-$HOME/.cache/assay}/bench-tools"
mkdir -p "$TOOLS"
for module in "$BOMBARDIER" "$VEGETA"; do
    path=${module%@*}
    name=$(basename "${path%/v[0-9]*}")
    stamp="$TOOLS/.$name.version"
    if [ -x "$TOOLS/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$module" ]; then
        continue
    fi
    if ! command -v go >/dev/null 2>&1; then
        echo "go is not installed: $name is left out of the benchmark" >&2
        continue
    fi
    go mod download "$module"
    licence="$(go env GOMODCACHE)/$path@${module#*@}/LICENSE"
    if ! head -n 3 "$licence" | grep -q "MIT License"; then
        echo "$module: not the MIT licence this script expects ($licence)" >&2
        exit 1
    fi
    GOBIN="$TOOLS" go install "$module"
    echo "$module" >"$stamp"
done
