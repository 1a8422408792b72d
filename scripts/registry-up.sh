#!/usr/bin/env bash
# Unpack Debian's docker-registry (CNCF Distribution 2.8) into a folder of ours, for the push test.
# NB: unpacked, not installed: installing the package would start a system-wide service on :5000.
#
#   scripts/registry-up.sh DEST    -> DEST/usr/bin/docker-registry
set -euo pipefail
DEST=$(realpath -m "${1:?usage: $0 DEST}")
[[ -x "$DEST/usr/bin/docker-registry" ]] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download docker-registry >/dev/null 2>&1 || { apt-get update -qq && apt-get download docker-registry >/dev/null; }
mkdir -p "$DEST"
dpkg-deb -x docker-registry_*.deb "$DEST"
echo "registry-up: $("$DEST/usr/bin/docker-registry" --version)"
