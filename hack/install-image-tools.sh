#!/usr/bin/env bash
# Installs from Debian what `make images` needs and no container registry: buildah (builds the
# images from runner-image/Dockerfile), debootstrap (the base images' root filesystems from
# Debian packages) and containerd (its `ctr` loads the image archives into a containerd).
# Only what is missing is installed, so a second run costs one dpkg query.
#
#   bash hack/install-image-tools.sh
set -euo pipefail

want=(buildah debootstrap containerd)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-image-tools: ${missing[*]} missing; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "install-image-tools: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Another apt run on this machine holds the lock for a while: wait for it rather than fail.
apt_opts=(-q -o DPkg::Lock::Timeout=600)
apt-get "${apt_opts[@]}" update >/dev/null
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
