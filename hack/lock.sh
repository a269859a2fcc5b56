#!/usr/bin/env bash
# Writes the two lock files from pyproject.toml with uv (itself pinned, see uv-path.sh):
#   requirements.txt      the runtime set, which the images install
#   requirements-dev.txt  the runtime set plus every extra (test, bench), which `make deps`
#                          installs; constrained by requirements.txt so both pin alike
# Both are universal (any platform, Python 3.11+) and carry hashes. `make lock` refreshes them
# to the newest releases that pyproject.toml's bounds allow; `make lock LOCK_ARGS=` (empty)
# only adds what a changed pyproject.toml needs and keeps every other pin.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="$(bash hack/uv-path.sh)"
export UV_PYTHON_DOWNLOADS=never
args=(pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet
      --custom-compile-command "make lock" "$@")
"$UV" "${args[@]}" -o requirements.txt
"$UV" "${args[@]}" --all-extras -c requirements.txt -o requirements-dev.txt
echo "lock: $(grep -c '^[a-z0-9]' requirements.txt) runtime packages, $(grep -c '^[a-z0-9]' requirements-dev.txt) with the extras" >&2
