#!/usr/bin/env bash
# What a real node (hack/realnode.py) needs: containerd, runc and the CNI plugins from Debian,
# kubelet, kube-scheduler and kube-proxy (hack/build-kube.sh --node), CoreDNS from its Go
# module, and the local images no registry could give us (pause for the pod sandboxes, and
# "tiny", a client and server for smoke tests; both from hack/nodeimage/). Idempotent and
# quiet once everything is there.
#   --print   also print where everything is, as KEY=VALUE lines (hack/realnode.py reads them)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${ASSAY_CACHE:-$HOME/.cache/assay}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
COREDNS_BIN="$CACHE/coredns-$COREDNS_VERSION/bin"
PAUSE_IMAGE=assay.local/pause:3.10
TINY_IMAGE=assay.local/tiny:0.1
PKGS=(containerd runc containernetworking-plugins iptables iproute2)
start=$(date +%s)
log() { echo "install-node: $* ($(( $(date +%s) - start ))s)" >&2; }

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

KUBE_BIN=$(bash hack/build-kube.sh --node)

if [ ! -x "$COREDNS_BIN/coredns" ]; then
  log "building coredns $COREDNS_VERSION"
  mkdir -p "$COREDNS_BIN"
  (cd "$CACHE" && GOBIN="$COREDNS_BIN.tmp" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION")
  mv "$COREDNS_BIN.tmp/coredns" "$COREDNS_BIN/coredns"
  rmdir "$COREDNS_BIN.tmp"
fi

# The images are named by the hash of their sources, so an edit rebuilds them.
IMAGES="$CACHE/node-images-$(cat hack/nodeimage/main.go hack/nodeimage/archive.py | sha256sum | cut -c1-12)"
if [ ! -s "$IMAGES/tiny.tar" ]; then
  log "building the pause and tiny images"
  mkdir -p "$IMAGES"
  CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" -o "$IMAGES/tiny" hack/nodeimage/main.go
  python3 hack/nodeimage/archive.py "$IMAGES/tiny" "$PAUSE_IMAGE" "$IMAGES/pause.tar" --path /pause
  python3 hack/nodeimage/archive.py "$IMAGES/tiny" "$TINY_IMAGE" "$IMAGES/tiny.tar" --path /tiny
fi

if [ "${1:-}" = "--print" ]; then
  cat <<EOF
KUBE_BIN=$KUBE_BIN
COREDNS=$COREDNS_BIN/coredns
CNI_BIN=/usr/lib/cni
PAUSE_IMAGE=$PAUSE_IMAGE
PAUSE_ARCHIVE=$IMAGES/pause.tar
TINY_IMAGE=$TINY_IMAGE
TINY_ARCHIVE=$IMAGES/tiny.tar
EOF
fi
