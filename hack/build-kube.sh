#!/usr/bin/env bash
# Builds pinned kube-apiserver, kube-controller-manager, kubectl and etcd from their Go
# modules (through the Go module proxy) into a cache outside the repository. A warm cache
# makes this a no-op, so every entry point (make up, make test, CI) can call it freely.
# With --node it also builds what a real node runs (kubelet, kube-scheduler, kube-proxy; see
# hack/realnode.py), into the same folder; without it the control-plane path stays as short.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
CACHE="${ASSAY_CACHE:-$HOME/.cache/assay}"
BIN="$CACHE/kube-$KUBE_VERSION-etcd-$ETCD_VERSION/bin"
KUBE_CMDS=(kube-apiserver kube-controller-manager kubectl)
if [ "${1:-}" = "--node" ]; then KUBE_CMDS+=(kubelet kube-scheduler kube-proxy); shift; fi
WANT=("${KUBE_CMDS[@]}" etcd)

have_all() { for b in "${WANT[@]}"; do [ -x "$BIN/$b" ] || return 1; done; }

if [ "${1:-}" = "--print-bin" ]; then echo "$BIN"; exit 0; fi
if have_all; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { echo "build-kube: Go is required (https://go.dev/dl) and was not found" >&2; exit 1; }
mkdir -p "$BIN"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
start=$(date +%s)
log() { echo "build-kube: $* ($(( $(date +%s) - start ))s)" >&2; }

# k8s.io/kubernetes points its staging modules at ./staging with replace directives, which
# Go ignores in a dependency; a wrapper module replaces them with the published v0.x tags.
build_kube() {
  local work="$CACHE/src/kube-$KUBE_VERSION"
  local minor="v0.${KUBE_VERSION#v1.}"
  mkdir -p "$work"
  cd "$work"
  if [ ! -f go.mod ]; then
    local modfile
    modfile=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    {
      echo "module assay.local/kubebuild"
      echo
      echo "go 1.24"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk -v v="$minor" '{print "replace " $1 " => " $1 " " v}'
    } > go.mod.tmp
    mv go.mod.tmp go.mod
  fi
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
  for b in "${KUBE_CMDS[@]}"; do
    [ -x "$BIN/$b" ] && continue
    log "building $b $KUBE_VERSION"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$BIN/$b.tmp" "$BIN/$b"
  done
}

build_etcd() {
  [ -x "$BIN/etcd" ] && return 0
  local work="$CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  cd "$work"
  if [ ! -f go.mod ]; then
    printf 'module assay.local/etcdbuild\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
  fi
  log "building etcd $ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

build_etcd
build_kube
log "done"
echo "$BIN"
