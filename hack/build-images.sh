#!/usr/bin/env bash
# Builds Assay's three images (operator, gateway, runner) from runner-image/Dockerfile with
# buildah, with no container registry and no Docker engine: the Dockerfile's two base images
# come from Debian packages (debootstrap), everything else from the Debian, PyPI and npm
# mirrors the Dockerfile itself uses.
#
#   bash hack/build-images.sh                 build (or reuse) the images and their archives
#   bash hack/build-images.sh --print         one line per image: NAME REF ARCHIVE (exit 1 if not built)
#   bash hack/build-images.sh --load ADDRESS  build if needed, then import the archives into the
#                                             containerd at socket ADDRESS, namespace k8s.io
#   bash hack/build-images.sh --smoke         run each image's entrypoint (--help) as uid 10001
#                                             on a read-only root filesystem
#
# The references are docker.io/assay/{operator,gateway,runner}:<appVersion of
# charts/assay/Chart.yaml>: the names containerd gives the chart's default repositories
# (assay/operator, ...), so the chart's defaults with pullPolicy IfNotPresent find them.
#
# Everything lives under ${ASSAY_CACHE:-$HOME/.cache/assay}/images, nothing in the repository
# or in the system's container storage:
#   storage/            buildah's image store (vfs driver) and its run state
#   debs/               the Debian packages debootstrap fetched, reused by later base builds
#   <hash>/NAME.tar     each image as a docker-archive (`docker load`, `ctr images import`,
#                       `kind load image-archive` read it), for one hash of the build's inputs
#   build.log           the output of the last build
# The base images are keyed on their package lists, the app images on a hash of every file
# the build reads (git ls-files of the Dockerfile's context, the build steps, the base keys), so a
# build with unchanged inputs only computes that hash. Needs root (debootstrap, chroot) and the
# tools hack/install-image-tools.sh installs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${ASSAY_CACHE:-$HOME/.cache/assay}"
WORK="$CACHE/images"
LOG="$WORK/build.log"
NAMES=(operator gateway runner)
SUITE=bookworm
MIRROR="${ASSAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The public python:3.11-slim-bookworm's Python minor, as Debian bookworm packages it.
PYTHON_REF=localhost/assay/python:3.11-bookworm
PYTHON_PKGS="python3 python3-pip python-is-python3 ca-certificates netbase tzdata"
# Debian's Node.js and npm on top of the Python base (debootstrap's own resolver cannot install npm).
NODE_REF=localhost/assay/node:bookworm
NODE_PKGS="nodejs npm"

TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/assay/Chart.yaml)
[ -n "$TAG" ] || { echo "images: no appVersion in charts/assay/Chart.yaml" >&2; exit 1; }

BUILDAH=(buildah --root "$WORK/storage/root" --runroot "$WORK/storage/run" --storage-driver vfs)
# Layer tars of a commit or push are staged in TMPDIR; keep them beside the store.
export TMPDIR="$WORK/tmp"

say() { echo "images: [$(printf '%4d' "$SECONDS")s] $*"; }
die() { echo "images: error: $*" >&2; exit 1; }
# Runs a step with its output in the log; on failure the log's tail and path are the message.
logged() {
  local what=$1; shift
  echo "=== $what: $*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 25 "$LOG" >&2
    die "$what failed (full log: $LOG)"
  fi
}

# Certificate authorities this machine trusts beyond Debian's (a TLS-inspecting egress proxy):
# the base images trust them too, or apt, pip and npm inside the build could not reach their
# mirrors. Where there are none, the images hold Debian's set only.
LOCAL_CAS=/usr/local/share/ca-certificates
local_cas() { find "$LOCAL_CAS" -name '*.crt' -type f 2>/dev/null | sort; }
base_key() {
  { printf '%s\n' "$SUITE" "$MIRROR" "$@" "$(declare -f make_base make_node)"; local_cas | xargs -r cat; } |
    sha256sum | cut -c1-16
}

# Every file the Dockerfile's context can hold, as git sees them (tracked and untracked, not
# ignored), with their contents; the vendored JavaScript comes from the pinned lock inside it.
inputs_hash() {
  {
    printf '%s\n' "$TAG" "$PYTHON_KEY" "$NODE_KEY" "$(declare -f build)"
    git ls-files -z -co --exclude-standard -- runner-image/Dockerfile .dockerignore requirements.txt \
      pyproject.toml README.md operator api crds runner-image/runner hack/vendor-js.sh |
      sort -z -u | xargs -0 -r sha256sum 2>/dev/null || true
  } | sha256sum | cut -c1-16
}
archive() { echo "$OUT/$1.tar"; }
ref() { echo "docker.io/assay/$1:$TAG"; }
built() { for n in "${NAMES[@]}"; do [ -f "$(archive "$n").complete" ] || return 1; done; }

print_images() {
  built || { echo "images: not built for the current sources; run make images" >&2; return 1; }
  for n in "${NAMES[@]}"; do echo "$n $(ref "$n") $(archive "$n")"; done
}

# A Debian root filesystem with PKGS, committed as REF: debootstrap minbase plus the apt
# sources and the space savings of Debian's official slim images.
make_base() {
  local ref=$1 pkgs=$2 key=$3 stamp="$WORK/base-$4.key"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] && "${BUILDAH[@]}" inspect --type image "$ref" >/dev/null 2>&1; then
    say "$ref is up to date"; return
  fi
  say "$ref: debootstrap $SUITE with ${pkgs// /,}"
  local rootfs="$WORK/rootfs-$4"
  rm -rf "$rootfs" "$stamp"
  mkdir -p "$WORK/debs"
  logged debootstrap debootstrap --variant=minbase --include="${pkgs// /,}" --cache-dir="$WORK/debs" \
    "$SUITE" "$rootfs" "$MIRROR"
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # As in Debian's slim images: later package installs skip documentation and translations.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
  rm -rf "$rootfs"/usr/share/{man,info,locale}/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/* "$rootfs"/dev/* "$rootfs"/tmp/* "$rootfs"/run/*
  if [ -n "$(local_cas)" ]; then
    say "$ref: trusting this machine's CAs in $LOCAL_CAS"
    local_cas | xargs -r cp -t "$rootfs$LOCAL_CAS/"
    logged "local CAs" env TMPDIR=/tmp chroot "$rootfs" update-ca-certificates
  fi
  # The official Python images let pip install into the system Python; so does this one.
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  logged "base archive" tar --numeric-owner --sort=name -C "$rootfs" -cf "$rootfs.tar" .
  local ctr
  ctr=$("${BUILDAH[@]}" from scratch)
  logged "base import" "${BUILDAH[@]}" add "$ctr" "$rootfs.tar" /
  logged "base config" "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd bash --label "org.assay.base-key=$key" "$ctr"
  logged "base commit" "${BUILDAH[@]}" commit --rm "$ctr" "$ref"
  rm -rf "$rootfs" "$rootfs.tar"
  echo "$key" >"$stamp"
}

make_node() {
  local stamp="$WORK/base-node.key"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$NODE_KEY" ] && "${BUILDAH[@]}" inspect --type image "$NODE_REF" >/dev/null 2>&1; then
    say "$NODE_REF is up to date"; return
  fi
  say "$NODE_REF: apt-get install ${NODE_PKGS// /,} on $PYTHON_REF"
  rm -f "$stamp"
  local ctr
  ctr=$("${BUILDAH[@]}" from --pull=false "$PYTHON_REF")
  logged "node install" "${BUILDAH[@]}" run --isolation chroot --network host "$ctr" -- sh -c \
    "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends $NODE_PKGS \
     && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*"
  # Node.js reads its own CA list unless told to add the system's (which holds the local CAs).
  logged "node config" "${BUILDAH[@]}" config --env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt --label "org.assay.base-key=$NODE_KEY" "$ctr"
  logged "node commit" "${BUILDAH[@]}" commit --rm "$ctr" "$NODE_REF"
  echo "$NODE_KEY" >"$stamp"
}

build() {
  if built; then say "up to date ($OUT)"; return; fi
  mkdir -p "$WORK" "$TMPDIR"
  : >"$LOG"
  for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || die "$tool not found; run: bash hack/install-image-tools.sh"
  done
  [ "$(id -u)" -eq 0 ] || die "debootstrap and buildah's chroot need root"
  make_base "$PYTHON_REF" "$PYTHON_PKGS" "$PYTHON_KEY" python
  make_node
  mkdir -p "$OUT"
  for n in "${NAMES[@]}"; do
    say "building $(ref "$n")"
    logged "build $n" "${BUILDAH[@]}" bud --layers --pull=false --isolation chroot --network host \
      --build-arg PYTHON_IMAGE="$PYTHON_REF" --build-arg NODE_IMAGE="$NODE_REF" --build-arg ASSAY_SOURCES="$HASH" \
      --iidfile "$OUT/$n.iid" -f runner-image/Dockerfile --target "$n" -t "$(ref "$n")" .
    say "exporting $(archive "$n")"
    rm -f "$(archive "$n")"
    # By image ID: the tag is shared with builds of other checkouts on this machine.
    logged "export $n" "${BUILDAH[@]}" push "$(cat "$OUT/$n.iid")" "docker-archive:$(archive "$n"):$(ref "$n")"
    touch "$(archive "$n").complete"
  done
  # Archives of older inputs are of no further use.
  find "$WORK" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{16}' ! -name "$HASH" -exec rm -rf {} +
  "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
  sizes
  say "done"
}

sizes() {
  for n in "${NAMES[@]}"; do
    say "$(ref "$n") $(du -h "$(archive "$n")" | cut -f1) uncompressed ($(archive "$n"))"
  done
}

# Imports each archive unless the containerd already holds the reference with the digest this
# archive imported as before (the same archive always imports to the same manifest).
load() {
  local address=$1
  command -v ctr >/dev/null || die "ctr not found; run: bash hack/install-image-tools.sh"
  local CTR=(ctr --address "$address" -n k8s.io)
  "${CTR[@]}" version >/dev/null 2>&1 || die "no containerd answers at $address"
  for n in "${NAMES[@]}"; do
    local r digest want
    r=$(ref "$n")
    want=$(cat "$(archive "$n").digest" 2>/dev/null || true)
    digest=$("${CTR[@]}" images ls "name==$r" | awk 'NR > 1 { print $3 }')
    if [ -n "$want" ] && [ "$digest" = "$want" ]; then
      say "$r already in $address ($digest)"; continue
    fi
    say "importing $r into $address"
    logged "import $n" "${CTR[@]}" images import "$(archive "$n")"
    digest=$("${CTR[@]}" images ls "name==$r" | awk 'NR > 1 { print $3 }')
    [ -n "$digest" ] || die "$r missing from $address after the import (log: $LOG)"
    echo "$digest" >"$(archive "$n").digest"
    say "$r $digest $("${CTR[@]}" images ls "name==$r" | awk 'NR > 1 { print $4, $5 }')"
  done
}

# Runs each entrypoint with --help the way the chart runs the images: uid 10001, read-only
# root, a fresh /tmp.
smoke() {
  for n in "${NAMES[@]}"; do
    local r ctr mnt
    r=$(ref "$n")
    "${BUILDAH[@]}" inspect --type image "$r" >/dev/null 2>&1 ||
      logged "pull $n" "${BUILDAH[@]}" pull "docker-archive:$(archive "$n")"
    ctr=$("${BUILDAH[@]}" from --pull=false "$r")
    mnt=$("${BUILDAH[@]}" mount "$ctr")
    local entry
    entry=$("${BUILDAH[@]}" inspect --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}' "$ctr")
    say "$r: $entry --help as 10001:10001 on a read-only root"
    if ! unshare --mount --pid --fork sh -c '
        set -e
        mnt=$1; shift
        mount --bind "$mnt" "$mnt"
        mount -t proc proc "$mnt/proc"
        mount -t tmpfs -o mode=1777 tmpfs "$mnt/tmp"
        mount -o remount,bind,ro "$mnt"
        exec chroot --userspec=10001:10001 "$mnt" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp "$@"
      ' sh "$mnt" sh -c 'cd /tmp && "$@" --help' sh $entry >"$WORK/smoke.out" 2>&1; then
      "${BUILDAH[@]}" rm "$ctr" >/dev/null
      tail -n 20 "$WORK/smoke.out" >&2
      die "$r: $entry --help failed"
    fi
    "${BUILDAH[@]}" rm "$ctr" >/dev/null
    head -n 2 "$WORK/smoke.out" | sed 's/^/    /'
  done
  say "all three entrypoints run as 10001 on a read-only root"
}

# The keys hash make_base itself, so they are computed once every function is defined.
PYTHON_KEY=$(base_key "$PYTHON_PKGS")
NODE_KEY=$(base_key "$PYTHON_KEY" "$NODE_PKGS")
HASH=$(inputs_hash)
OUT="$WORK/$HASH"

# One build or load at a time per cache: builds from two checkouts share buildah's store.
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
if ! flock -n 9; then
  say "waiting for another build using $WORK"
  flock 9
fi

case "${1:-}" in
  "") build ;;
  --print) print_images ;;
  --load) [ -n "${2:-}" ] || die "usage: $0 --load ADDRESS"; build; load "$2" ;;
  --smoke) build; smoke ;;
  *) die "usage: $0 [--print | --load ADDRESS | --smoke]" ;;
esac
