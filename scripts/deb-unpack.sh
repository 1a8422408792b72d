#!/usr/bin/env bash
# Unpack a Debian package into a folder of ours, for the tests that run its binaries on loopback
# (docker-registry for the push test; prometheus and promtool for the monitoring checks).
# NB: unpacked, not installed: installing would start a system-wide service (the registry on :5000,
# Prometheus on :9090); here nothing runs until a test starts it.
#
#   scripts/deb-unpack.sh PACKAGE BINARY DEST    -> DEST/usr/bin/BINARY
set -euo pipefail
PACKAGE=${1:?usage: $0 PACKAGE BINARY DEST}
BINARY=${2:?usage: $0 PACKAGE BINARY DEST}
DEST=$(realpath -m "${3:?usage: $0 PACKAGE BINARY DEST}")
[[ -x "$DEST/usr/bin/$BINARY" ]] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download "$PACKAGE" >/dev/null 2>&1 || { flock /tmp/vllm-deploy-apt.lock apt-get update -qq && apt-get download "$PACKAGE" >/dev/null; }
mkdir -p "$DEST"
dpkg-deb -x "${PACKAGE}"_*.deb "$DEST"
echo "deb-unpack: $PACKAGE $(dpkg-deb -f "${PACKAGE}"_*.deb Version) -> $DEST"
