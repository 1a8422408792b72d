#!/usr/bin/env bash
# Make `podman kube play` usable here: install podman when missing and write the containers.conf
# this machine needs (no systemd; root without CAP_SYS_RESOURCE). Prints the conf file's path.
#
#   scripts/podman-up.sh CONF_FILE
set -euo pipefail
CONF=${1:?usage: $0 CONF_FILE}
if ! command -v podman >/dev/null || ! command -v catatonit >/dev/null; then
    [[ $(id -u) == 0 ]] || { echo "podman-up: install podman and catatonit as root" >&2; exit 1; }
    # NB: make test installs the engine venv, Docker and podman side by side: apt runs one at a time.
    flock /tmp/vllm-deploy-apt.lock apt-get update -qq
    DEBIAN_FRONTEND=noninteractive flock /tmp/vllm-deploy-apt.lock apt-get install -y -qq --no-install-recommends podman catatonit >/dev/null
fi
mkdir -p "$(dirname "$CONF")"
cat >"$CONF" <<'CONF'
# Written by scripts/podman-up.sh for podman kube play on a host without systemd.
[containers]
# The defaults ask for limits root may not raise here (no CAP_SYS_RESOURCE).
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
log_driver = "k8s-file"
[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
CONF
echo "podman-up: $(podman --version), conf $CONF"
