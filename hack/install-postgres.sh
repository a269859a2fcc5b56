#!/usr/bin/env bash
# Installs Debian's PostgreSQL server binaries (no cluster is created or started: the tests
# start throwaway ones, tests/support/postgres.py) and prints the directory holding initdb,
# pg_ctl and postgres. Already installed, it only prints that directory, so `make test` and
# the store's tests can call it freely.
#
#   bash hack/install-postgres.sh      # prints /usr/lib/postgresql/<major>/bin
set -euo pipefail

find_bin() {
  # The newest major version installed; the gateway supports 14 and later.
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

BIN="$(find_bin)"
if [ -n "$BIN" ] && [ -x "$BIN/initdb" ] && [ -x "$BIN/pg_ctl" ]; then echo "$BIN"; exit 0; fi

if [ "$(id -u)" != 0 ]; then
  echo "install-postgres: PostgreSQL is not installed; run as root, or: apt-get install postgresql" >&2
  exit 1
fi
echo "install-postgres: installing Debian's postgresql" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# The package's own post-install would create and start a cluster; the tests start their own.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/assay-no-main.conf
apt-get install -y -qq --no-install-recommends postgresql >&2
BIN="$(find_bin)"
[ -x "$BIN/initdb" ] || { echo "install-postgres: initdb not found after the install" >&2; exit 1; }
echo "$BIN"
