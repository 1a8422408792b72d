#!/usr/bin/env bash
# Build a Debian bookworm base image with Python from Debian's packages alone: no container
# registry needed (docker pull is impossible on air-gapped hosts and on this project's CI).
#
#   deploy/assets/base-image.sh IMAGE_TAG
#
# Skips the build when the tag already exists. Needs root (debootstrap) and a running Docker daemon.
set -euo pipefail
TAG=${1:?usage: $0 IMAGE_TAG}
mkdir -p "${WORK_DIR:=.work}"
DOCKER=$(command -v /usr/bin/docker || command -v docker)
if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "base-image: $TAG exists"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d "$WORK_DIR/rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$root" "$MIRROR" >"$WORK_DIR"/debootstrap.log 2>&1 || { tail -20 "$WORK_DIR"/debootstrap.log >&2; exit 1; }
# NB: apt lists and caches would only bloat every image built on top.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar --numeric-owner -C "$root" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "base-image: built $TAG in $(( $(date +%s) - start )) s ($("$DOCKER" image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
