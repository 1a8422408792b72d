"""Kustomize-built Kubernetes objects under `podman kube play`: the helpers of tests/integration/test_pods.py.

Podman 4.3 plays Deployments but is no cluster; what it cannot take, and what these helpers do instead
(podman limitations, not manifest faults):
- the Secret (a podman bug with Secrets in the YAML): its data, as kustomize generated it under its
  hashed name, goes to `podman secret create` with that same name;
- Namespace, Service, NetworkPolicy and the rest: podman has no such objects; Deployments alone are played;
- /dev/shm: podman turns a Memory emptyDir into a root-owned disk volume, so the host's /dev/shm is
  mounted instead (hostPath);
- the other emptyDirs become named volumes, which two pods of one Deployment would share: each pod's are
  renamed with a suffix;
- no Service: a container port the test calls is published on 127.0.0.1 with hostPort;
- the ConfigMaps a Deployment mounts (kustomize's hashed names) go to `podman kube play --configmap`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.runtime.docker import docker_cli
from deploy.runtime.net import free_port
from tests.conftest import REPO

CONF = REPO / ".work" / "containers.conf"


def podman(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    completed = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, **kwargs)
    if check and completed.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} failed: {completed.stderr[-3000:]}")
    return completed


def require_podman() -> None:
    if not CONF.exists():
        pytest.fail("run scripts/podman-up.sh (make test does) to install podman and write its configuration")


def containers(prefix: str, suffix: str = "", every: bool = False) -> list[str]:
    """The names of the (running, or `every`) containers whose name starts with `prefix` and ends with `suffix`.
    kube play names a pod's containers `<deployment>-pod-<hash>-<container>`."""
    listing = podman("ps", *(["-a"] if every else []), "--format", "{{.Names}}").stdout.split()
    return [n for n in listing if n.startswith(prefix) and n.endswith(suffix)]


def network_of(container: str) -> dict:
    """The container's settings on the pod's network (kube play makes its own): IPAddress, Gateway."""
    networks = json.loads(podman("inspect", container).stdout)[0]["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))


def logs(names: list[str], lines: int = 100) -> str:
    return "\n".join(
        f"--- {n} ---\n" + (found := podman("logs", "--tail", str(lines), n, check=False)).stdout + found.stderr
        for n in names
    )


def kustomize_objects(plan, root: Path, key: str) -> list[dict]:
    """Render the profile into `root`, fill secrets.env as a user would, build it with the real kustomize."""
    from deploy.render import render, write_files
    from tests.conftest import kubectl

    write_files(render(plan), root)
    directory = root / "k8s" / plan.name
    (directory / "secrets.env").write_text(f"{plan.api_key_variable}={key}\n")
    built = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=True)
    return [o for o in yaml.safe_load_all(built.stdout) if o]


def kustomize_build(plan, root: Path, key: str) -> dict[str, Any]:
    """The same objects by kind (one of each), the ConfigMaps by name under "ConfigMaps"."""
    objects = kustomize_objects(plan, root, key)
    found: dict = {o["kind"]: o for o in objects if o["kind"] != "ConfigMap"}
    found["ConfigMaps"] = [o for o in objects if o["kind"] == "ConfigMap"]
    return found


def configmap_options(deployment: dict, configmaps: list[dict], directory: Path) -> list[str]:
    """`--configmap FILE` for each ConfigMap the Deployment mounts (the key check's module, the generation
    config), as kustomize built them: podman takes them beside the Deployment."""
    mounted = {
        v["configMap"]["name"] for v in deployment["spec"]["template"]["spec"].get("volumes", []) if "configMap" in v
    }
    options = []
    for found in (c for c in configmaps if c["metadata"]["name"] in mounted):
        path = directory / f"configmap-{found['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(found))
        options += ["--configmap", str(path)]
    return options


def load_into_podman(*references: str) -> None:
    """Docker's images into podman's store (podman cannot pull them: they are local), unless already there; one
    `docker save` stream for all of them, so the layers they share are read once."""
    missing = [r for r in references if podman("image", "exists", r, check=False).returncode != 0]
    if missing:
        save = subprocess.Popen([docker_cli(), "save", *missing], stdout=subprocess.PIPE)
        podman("load", stdin=save.stdout, timeout=900)
        assert save.wait() == 0


def create_podman_secret(secret: dict) -> None:
    """The kustomize-built Secret (hashed name, base64 data) as a podman secret of the same name."""
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "secret.json"
        data.write_text(json.dumps(secret["data"]))
        podman("secret", "rm", secret["metadata"]["name"], check=False)
        podman("secret", "create", secret["metadata"]["name"], str(data))


def for_podman(deployment: dict, suffix: str, publish: bool) -> dict:
    """/dev/shm from the host; init containers kept (see below); emptyDirs named per pod (podman makes a named
    volume of each, which two pods would share); container ports published only where the test needs them (podman
    publishes a bare containerPort on the host's same port, and two engine pods would collide)."""
    spec = deployment["spec"]["template"]["spec"]
    if spec.get("initContainers"):
        # NB: podman 4.3 removes a "once" init container (kube play's default) racing its exit ("cannot remove
        # container … as it is running"); "always" keeps it, and it runs once per play all the same.
        annotations = deployment["spec"]["template"].setdefault("metadata", {}).setdefault("annotations", {})
        annotations["io.podman.annotations.init.container.type"] = "always"
    for volume in spec.get("volumes", []):
        if volume["name"] == "dshm":
            volume.pop("emptyDir")
            volume["hostPath"] = {"path": "/dev/shm", "type": "Directory"}
        elif "emptyDir" in volume:
            for each in [*spec.get("initContainers", []), *spec["containers"]]:
                for mount in each.get("volumeMounts", []):
                    if mount["name"] == volume["name"]:
                        mount["name"] = f"{volume['name']}-{suffix}"
            volume["name"] = f"{volume['name']}-{suffix}"
    container = spec["containers"][0]
    if publish:
        container["ports"] = [dict(container["ports"][0], hostPort=free_port(), hostIP="127.0.0.1")]
    else:
        container.pop("ports")  # NB: probes named the port "http": give them the number
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            for kind in ("httpGet", "tcpSocket"):
                if kind in container.get(probe, {}):
                    container[probe][kind]["port"] = 8000
    return deployment


def published_port(deployment: dict) -> int:
    """The hostPort `for_podman(..., publish=True)` gave the Deployment's first container."""
    return deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPort"]


def play(deployment: dict, path: Path, configmaps: Sequence[str] = ()) -> Path:
    """`podman kube play` of one Deployment written to `path`, with the ConfigMap options it mounts."""
    path.write_text(yaml.safe_dump(deployment))
    podman("kube", "play", "--replace", *configmaps, str(path))
    return path


def fresh_claim(claim: str) -> None:
    """An empty podman volume named for the claim (kube play mounts it for the PersistentVolumeClaim): the pod's
    fetch step (its init container) fills it; podman gives a fresh volume the owner of the image's directory."""
    podman("volume", "rm", "-f", claim, check=False)
    podman("volume", "create", claim)
