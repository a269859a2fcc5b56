#!/usr/bin/env bash
# Installs the pinned uv (the lock tool) from PyPI into a cache outside the repository, once,
# and prints its path. uv is a single binary shipped in a wheel, so pip installs it as is.
set -euo pipefail
UV_VERSION="${UV_VERSION:-0.13.9}"
CACHE="${ASSAY_CACHE:-$HOME/.cache/assay}"
DIR="$CACHE/uv-$UV_VERSION"
if [ ! -x "$DIR/bin/uv" ]; then
  echo "uv: installing uv $UV_VERSION into $DIR" >&2
  rm -rf "$DIR.tmp"
  "${PYTHON:-python3}" -m venv "$DIR.tmp"
  "$DIR.tmp/bin/pip" install --quiet "uv==$UV_VERSION"
  rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
fi
echo "$DIR/bin/uv"
