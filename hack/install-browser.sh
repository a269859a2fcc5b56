#!/usr/bin/env bash
# Installs the headless browser the report rendering tests use (tests/browser/): Debian's
# chromium package. Idempotent: does nothing when a chromium binary is already on PATH.
# Needs root (or sudo) and the Debian package mirrors; prints the binary's path on success.
set -euo pipefail

find_chromium() {
    command -v chromium || command -v chromium-browser || command -v google-chrome || true
}

existing="$(find_chromium)"
if [[ -n "$existing" ]]; then
    echo "$existing"
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    echo "install-browser: no chromium on PATH and no apt-get to install it with" >&2
    exit 1
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null; then
        SUDO="sudo"
    else
        echo "install-browser: installing chromium needs root" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Fonts so that rendered text has glyphs; without any font the report screenshots show boxes.
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

installed="$(find_chromium)"
if [[ -z "$installed" ]]; then
    echo "install-browser: chromium was installed but no binary is on PATH" >&2
    exit 1
fi
echo "$installed"
