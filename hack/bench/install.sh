#!/usr/bin/env bash
# Tools for hack/bench/load_vs_wrk.py: nginx (the loopback target), wrk (the reference
# client) and Locust (the Python reference), from Debian's packages and the lock.
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
