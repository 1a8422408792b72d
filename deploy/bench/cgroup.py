"""A CPU cgroup of its own for the load client, so that both arms of a comparison meet it the same way.

NB: why. With CFS group scheduling, a container's processes share one scheduling entity (its cgroup,
under docker/), while a client in the root cgroup competes thread by thread. On 2 cores a many-threaded
client in the root cgroup then takes CPU from the container that it cannot take from a bare server in the
root cgroup, and the container looks slower than it is. A client in its own cgroup is one entity against
either server. Where clients are not on the server's host at all (a deployment), neither arm pays this.

No systemd here (`systemd-run --scope` needs it as PID 1) and no cgroup-tools: the cgroup is a directory
made in the cgroup filesystem, and the client enters it by writing its own pid before it execs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
NAME = "vllm-deploy-bench-client"


@dataclass(frozen=True)
class Cgroup:
    path: Path
    version: int  # 1: the v1 cpu hierarchy; 2: the unified hierarchy

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def wrap(self, command: Sequence[str]) -> list[str]:
        """`command` started inside the cgroup: a shell writes its pid there, then execs the command."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.procs), *command]

    def remove(self) -> None:
        """Remove it once its processes have exited (rmdir refuses while one is left)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def cpu_hierarchy(root: Path = ROOT) -> tuple[Path, int] | None:
    """Where CPU cgroups are made: the unified hierarchy when it has the cpu controller, else v1's cpu."""
    controllers = root / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return root, 2
    if (root / "cpu" / "cgroup.procs").exists():
        return root / "cpu", 1
    return None


def client_cgroup(root: Path = ROOT, name: str = NAME) -> Cgroup:
    """Make (or reuse) the client's cgroup beside the container runtime's, with the default CPU weight.

    OSError when this host has no CPU cgroup hierarchy we may write to (not root, read-only, none)."""
    found = cpu_hierarchy(root)
    if found is None:
        raise OSError(f"no CPU cgroup hierarchy under {root}")
    hierarchy, version = found
    if version == 2:
        enabled = (hierarchy / "cgroup.subtree_control").read_text().split()
        if "cpu" not in enabled:  # NB: the root cgroup may hold processes and children with controllers
            (hierarchy / "cgroup.subtree_control").write_text("+cpu")
    path = hierarchy / name
    path.mkdir(exist_ok=True)
    if not os.access(path / "cgroup.procs", os.W_OK):
        raise OSError(f"{path / 'cgroup.procs'} is not writable")
    return Cgroup(path, version)
