"""The rendered Kubernetes objects of tiny-cpu, as `kubectl kustomize` builds them, run for real
under `podman kube play`, with a read-only root, and the smoke suite passes against the pod.

No kube-apiserver can run here; podman plays Deployments. What podman cannot take, and what the test
does instead (podman 4.3 limitations, not manifest faults):
- the Secret (a podman bug with Secrets in the YAML): its data, as kustomize generated it under its
  hashed name, goes to `podman secret create` with that same name;
- Namespace, Service and NetworkPolicy: podman has no such objects; the Deployment alone is played;
- /dev/shm: podman turns a Memory emptyDir into a root-owned disk volume, so the host's /dev/shm is
  mounted instead (hostPath);
- no Service: the container port is published on 127.0.0.1 with hostPort;
- the ConfigMaps the Deployment mounts (kustomize's hashed names) go to `podman kube play --configmap`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from deploy.plan import resolve
from deploy.runtime.docker import docker_cli
from deploy.runtime.net import free_port, wait_for_http
from deploy.runtime.smoke import plan_options, run_suite
from deploy.runtime.stack import Stack, prepare
from deploy.spec import load_profile
from deploy.targets import kubernetes_plan
from tests.conftest import REPO
from tests.tools import routes

pytestmark = [pytest.mark.podman, pytest.mark.slow]
CONF = REPO / ".work" / "containers.conf"
READY_DEADLINE_SECONDS = 300


def podman(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    completed = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, **kwargs)
    if check and completed.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} failed: {completed.stderr[-3000:]}")
    return completed


def vllm_container() -> str:
    names = [n for n in podman("ps", "--format", "{{.Names}}").stdout.split() if n.endswith("-vllm")]
    assert len(names) == 1, podman("ps", "-a").stdout
    return names[0]


def pod_gateway() -> str:
    """The host's address on the pod's network (kube play makes its own), where the pod reaches us."""
    networks = json.loads(podman("inspect", vllm_container()).stdout)[0]["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["Gateway"]


def kustomize_objects(plan, root, key: str) -> list[dict]:
    """Render the profile into `root`, fill secrets.env as a user would, build it with the real kustomize."""
    from deploy.render import render, write_files
    from tests.conftest import kubectl

    write_files(render(plan), root)
    directory = root / "k8s" / plan.name
    (directory / "secrets.env").write_text(f"{plan.api_key_variable}={key}\n")
    built = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=True)
    return [o for o in yaml.safe_load_all(built.stdout) if o]


def kustomize_build(plan, root, key: str) -> dict[str, dict]:
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


def load_into_podman(reference: str) -> None:
    """Docker's image into podman's store (podman cannot pull it: it is local), unless already there."""
    if podman("image", "exists", reference, check=False).returncode != 0:
        save = subprocess.Popen([docker_cli(), "save", reference], stdout=subprocess.PIPE)
        podman("load", stdin=save.stdout, timeout=900)
        assert save.wait() == 0


def create_podman_secret(secret: dict) -> None:
    """The kustomize-built Secret (hashed name, base64 data) as a podman secret of the same name."""
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "secret.json"
        data.write_text(json.dumps(secret["data"]))
        podman("secret", "rm", secret["metadata"]["name"], check=False)
        podman("secret", "create", secret["metadata"]["name"], str(data))


def play(manifest: Path, objects: dict) -> None:
    """`podman kube play` of the Deployment, with the kustomize-built ConfigMaps it mounts."""
    configmaps = configmap_options(objects["Deployment"], objects["ConfigMaps"], manifest.parent)
    podman("kube", "play", "--replace", *configmaps, str(manifest))


def adapt_for_podman(deployment: dict, port: int) -> dict:
    spec = deployment["spec"]["template"]["spec"]
    for volume in spec["volumes"]:
        if volume["name"] == "dshm":
            volume.pop("emptyDir")
            volume["hostPath"] = {"path": "/dev/shm", "type": "Directory"}
    spec["containers"][0]["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
    return deployment


@pytest.fixture(scope="module")
def pod(tmp_path_factory):
    if not CONF.exists():
        pytest.fail("run scripts/podman-up.sh (make test does) to install podman and write its configuration")
    root = tmp_path_factory.mktemp("pod")
    plan = resolve(load_profile("tiny-cpu"))
    prepare(Stack(plan, root), echo=False)  # the image the manifests name; a cache hit after `up`
    load_into_podman(plan.image.reference)

    key = "sk-" + secrets.token_hex(16)
    objects = kustomize_build(plan, root / "rendered", key)
    create_podman_secret(objects["Secret"])

    port = free_port()
    manifest = root / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(adapt_for_podman(objects["Deployment"], port)))
    play(manifest, objects)
    base_url = f"http://127.0.0.1:{port}"
    try:
        try:
            ready = wait_for_http(f"{base_url}/health", READY_DEADLINE_SECONDS, interval=0.5)
        except TimeoutError:
            pytest.fail(f"pod not healthy in {READY_DEADLINE_SECONDS} s:\n{pod_logs(plan)}")
        yield plan, base_url, key, ready
    finally:
        podman("kube", "down", str(manifest), check=False)
        podman("secret", "rm", objects["Secret"]["metadata"]["name"], check=False)


def pod_logs(plan) -> str:
    listing = podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
    names = [n for n in listing if n.endswith("-vllm") and kubernetes_plan(plan).object_name in n]
    return "\n".join(
        podman("logs", "--tail", "100", n, check=False).stdout + podman("logs", "--tail", "100", n, check=False).stderr
        for n in names
    )


def test_pod_serves_the_smoke_suite(pod, measured):
    plan, base_url, key, ready_seconds = pod
    # NB: the plan's options, so the server-side stop ids prove the ConfigMap reached vLLM.
    code, cases, output = run_suite(
        plan_options(plan, base_url, pod_gateway()), key=key, ready=plan.health.start_period_seconds
    )
    assert code == 0, output[-6000:] + pod_logs(plan)
    assert {c.status for c in cases} == {"passed"}
    assert {
        "test_chat::test_image_by_url",
        "test_chat::test_image_as_base64_matches_url",
        "test_chat::test_server_stop_ids_apply_without_extra_body",
    } <= {c.name for c in cases}
    measured["podman pod time-to-ready (s)"] = round(ready_seconds, 1)
    measured["smoke suite against the pod, sum of cases (s)"] = round(sum(c.seconds for c in cases), 2)


def test_pod_runs_as_non_root_with_a_read_only_root_and_the_key_from_the_secret(pod):
    plan, base_url, key, _ = pod
    container = vllm_container()
    assert podman("exec", container, "id", "-u").stdout.strip() == str(plan.image.run_as_user)
    write = podman(
        "exec", container, "sh", "-c", 'touch /opt/x; echo "root $?"; touch "$HOME/x" && echo "home 0"', check=False
    )
    assert "root 1" in write.stdout and "home 0" in write.stdout, write.stdout + write.stderr
    assert requests.get(f"{base_url}/v1/models", timeout=5).status_code == 401
    assert requests.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=5).ok
    inspect = json.loads(podman("inspect", container).stdout)[0]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert key not in json.dumps(inspect["Config"].get("Cmd")) + json.dumps(inspect.get("Args"))


def test_every_route_of_the_pod_needs_the_key(pod, measured):
    """The Kubernetes shape: the middleware's module from its ConfigMap. Every route of vLLM's own table but
    /health and /metrics answers 401 without the key or with a wrong one."""
    from deploy.assets.edge.vllm_deploy_edge import PUBLIC

    _, base_url, key, _ = pod
    found = routes.report(base_url, key)
    measured["pod: routes in vLLM's own table, each called three ways"] = found["routes"]
    assert found["routes"] >= 20 and routes.lock_problems(found, PUBLIC) == []


def test_a_pod_with_an_empty_key_in_its_secret_exits_at_once(pod, tmp_path, measured):
    """secrets.env copied from the example holds `VLLM_API_KEY=`: the container must refuse to start."""
    plan, _, _, _ = pod
    # The Kubernetes names (the Deployment, the Secret) follow the plan's name.
    empty = plan.model_copy(update={"name": "tiny-cpu-empty-key"})
    objects = kustomize_build(empty, tmp_path, "")
    assert objects["Secret"]["data"] == {"VLLM_API_KEY": ""}
    create_podman_secret(objects["Secret"])
    manifest = tmp_path / "empty.yaml"
    manifest.write_text(yaml.safe_dump(adapt_for_podman(objects["Deployment"], free_port())))
    started = time.monotonic()
    play(manifest, objects)
    try:
        while time.monotonic() - started < 60:
            names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
            name = next((n for n in names if n.startswith("tiny-cpu-empty-key-") and n.endswith("-vllm")), "none")
            logs = podman("logs", name, check=False)
            if "refusing to start" in logs.stdout + logs.stderr:
                break
            time.sleep(0.5)
        measured["pod with an empty key: play to refusal (s)"] = round(time.monotonic() - started, 1)
        assert "vllm-deploy: VLLM_API_KEY is empty or unset; refusing to start" in logs.stdout + logs.stderr
        assert "Application startup complete" not in logs.stdout + logs.stderr  # vLLM never ran
    finally:
        podman("kube", "down", str(manifest), check=False)
        podman("secret", "rm", objects["Secret"]["metadata"]["name"], check=False)
