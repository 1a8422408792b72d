"""The Docker daemon: queries through the Docker SDK, compose and image builds through the CLI.

NB: the CLI where it is the right tool: Compose v2 is a CLI plugin (the SDK has no compose), and the
classic BuildKit path that runs `RUN --mount` is driven by the docker CLI with DOCKER_BUILDKIT=1.
Everything else (is the daemon up, container state and health, logs, networks, images) is a query the
SDK answers as data, with no output to parse.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from deploy.errors import UserError
from deploy.runtime.process import Completed, Runner, run


def docker_cli() -> str:
    # NB: Debian's 20.10 client drives BuildKit (RUN --mount); a newer client without buildx does not.
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise UserError("no docker client found: install Docker (Debian: apt-get install docker.io), then retry")


def cli_environment() -> dict[str, str]:
    # NB: compose would try buildx bake first; the classic BuildKit path needs no buildx plugin.
    return {**os.environ, "DOCKER_BUILDKIT": "1", "COMPOSE_BAKE": "false"}


@dataclass(frozen=True)
class ContainerState:
    status: str  # created, running, exited, dead, …
    health: str  # healthy, unhealthy, starting, or "" without a healthcheck
    restarts: int = 0
    exit_code: int = 0


class DockerDaemon:
    """Queries to the Docker daemon (the SDK client is made on first use, from DOCKER_HOST)."""

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            self._client = docker.from_env(timeout=30)
        return self._client

    def info(self) -> dict[str, Any] | None:
        """The daemon's facts, or None when no daemon answers."""
        try:
            return self.client.info()
        except Exception:  # NB: docker.errors.DockerException and connection errors alike mean "not there"
            return None

    def _container(self, name: str) -> Any:
        import docker.errors

        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def state(self, container: str) -> ContainerState | None:
        found = self._container(container)
        if found is None:
            return None
        state = found.attrs["State"]
        return ContainerState(
            state["Status"],
            (state.get("Health") or {}).get("Status", ""),
            found.attrs.get("RestartCount", 0),
            state.get("ExitCode", 0),
        )

    def logs(self, container: str, lines: int = 40) -> str:
        found = self._container(container)
        return found.logs(tail=lines).decode("utf-8", "replace").rstrip() if found is not None else ""

    def gateway(self, container: str) -> str | None:
        """The host's address on the container's network: where the container reaches a server of ours."""
        found = self._container(container)
        networks = (found.attrs["NetworkSettings"].get("Networks") or {}) if found is not None else {}
        return next((n["Gateway"] for n in networks.values() if n.get("Gateway")), None)

    def bridge_gateway(self) -> str:
        """The host's address on Docker's default bridge: containers of any network (and podman's pods) reach a
        server of ours there before their own network exists (a hub endpoint written into a profile)."""
        return self.client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]

    def inspect(self, container: str) -> dict[str, Any]:
        found = self._container(container)
        return found.attrs if found is not None else {}

    def image_id(self, reference: str) -> str | None:
        import docker.errors

        try:
            return self.client.images.get(reference).id
        except docker.errors.ImageNotFound:
            return None


@dataclass
class Compose:
    """One compose project (a rendered compose/<name>/ directory), through the Compose v2 CLI."""

    directory: Path
    runner: Runner = run
    environment: dict[str, str] = field(default_factory=cli_environment)

    @cached_property
    def docker(self) -> str:
        return docker_cli()

    def command(self, *args: str) -> list[str]:
        return [self.docker, "compose", "--project-directory", str(self.directory), *args]

    def __call__(self, *args: str, echo: bool = False, timeout: float | None = None) -> Completed:
        return self.runner(self.command(*args), env=self.environment, echo=echo, timeout=timeout)

    def container(self, service: str) -> str | None:
        """The id of the service's container, if there is one."""
        done = self("ps", "-q", service)
        return done.stdout.strip().splitlines()[0] if done.ok and done.stdout.strip() else None
