"""The CPU twin of the guide's GPU profile (minicpm-v-2_6), brought up as its users would deploy it: under
compose (`vllm-deploy up` of the file `vllm-deploy twin` writes) and as its rendered Kubernetes Deployment under
`podman kube play`, each passing the smoke suite as the uid of the GPU Deployment, with the model at the GPU
profile's path in the container and served under the guide's name.

The twin keeps the GPU profile's shape: what fails on first contact with a cluster because of that shape fails
here too. The guide's own model did (issue 19): mounted at /root/ld/… for a non-root uid, in an image whose
/root is 0700; `test_the_guides_path_fails_for_the_gpu_uid_as_on_a_cluster` keeps that failure reproduced, so
the twin is known to see it.
"""

from __future__ import annotations

import copy
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deploy.init.twin import twin_profile
from deploy.plan import Plan, resolve
from deploy.runtime.docker import docker_cli
from deploy.runtime.net import free_port, wait_for_http
from deploy.runtime.smoke import plan_options, run_suite
from deploy.runtime.stack import down, stack_for, up
from deploy.spec import load_profile
from tests.conftest import REPO, print_logs_if_failed
from tests.tools.podman import (
    configmap_options,
    containers,
    create_podman_secret,
    for_podman,
    kustomize_objects,
    load_into_podman,
    logs,
    network_of,
    play,
    podman,
    published_port,
    require_podman,
)

pytestmark = [pytest.mark.docker, pytest.mark.podman, pytest.mark.slow]
GPU_PROFILE = "minicpm-v-2_6"
GUIDE_MODEL_PATH = "/root/ld/ld_model_pretrained/Minicpmv2_6"  # the seed guide's `vllm serve` path


@dataclass(frozen=True)
class Twin:
    root: Path
    plan: Plan  # the twin's (on a free port)
    gpu: Plan  # the GPU profile's
    gpu_deployment: dict  # the committed k8s/minicpm-v-2_6/deployment.yaml


def gpu_pod_user(twin: Twin) -> int:
    return twin.gpu_deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Twin:
    root = tmp_path_factory.mktemp("twin")
    document = yaml.safe_load(twin_profile(GPU_PROFILE, root / "model", REPO))
    document["server"]["port"] = free_port()  # NB: the shape's port (8000) may be a running tiny-cpu's here
    path = root / "twin.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    deployment = yaml.safe_load((REPO / "k8s" / GPU_PROFILE / "deployment.yaml").read_text())
    return Twin(root, resolve(load_profile(str(path))), resolve(load_profile(GPU_PROFILE)), deployment)


@pytest.fixture(scope="module")
def composed(twin):
    stack = stack_for(twin.plan, twin.root)
    subprocess.run([docker_cli(), "volume", "rm", "-f", f"{twin.plan.name}_cache"], capture_output=True)
    try:
        yield stack, up(stack)
    finally:
        down(stack, remove_volumes=True)


@pytest.fixture(autouse=True)
def container_logs_on_failure(request):
    yield
    print_logs_if_failed(request, "composed", 150, stack_of=lambda found: found[0])


def exec_in(container: str, *args: str, tool: str = "docker") -> subprocess.CompletedProcess:
    binary = docker_cli() if tool == "docker" else "podman"
    return subprocess.run([binary, "exec", container, *args], capture_output=True, text=True)


def assert_the_gpu_shape(twin: Twin, container: str, tool: str) -> None:
    """The container runs as the GPU Deployment's uid, which has no passwd entry (as in the official image), with
    HOME writable and the root read-only."""
    assert exec_in(container, "id", "-u", tool=tool).stdout.strip() == str(gpu_pod_user(twin))
    if tool == "docker":  # NB: podman writes a passwd entry for the uid into the container (containerd does not)
        lookup = exec_in(container, "python3", "-c", "import os, pwd; pwd.getpwuid(os.getuid())", tool=tool)
        assert "KeyError" in lookup.stderr, lookup.stdout + lookup.stderr
    who = exec_in(container, "python3", "-c", "import getpass; print(getpass.getuser())", tool=tool)
    assert who.stdout.strip() == twin.plan.environment["USER"], who.stderr
    write = exec_in(container, "sh", "-c", 'touch /opt/x; echo "root $?"; touch "$HOME/x" && echo "home 0"', tool=tool)
    assert "root 1" in write.stdout and "home 0" in write.stdout, write.stdout + write.stderr


def test_the_twin_keeps_the_gpu_profiles_names_paths_and_user(twin):
    assert twin.plan.name == twin.gpu.name and twin.plan.twin_of == GPU_PROFILE
    assert twin.plan.served_model_name == twin.gpu.served_model_name == GUIDE_MODEL_PATH
    assert twin.plan.model == twin.gpu.model == twin.gpu.storage.container_path
    assert twin.plan.image.run_as_user == gpu_pod_user(twin)


def test_the_twin_serves_the_smoke_suite_under_compose_as_the_gpu_uid(twin, composed, measured):
    stack, result = composed
    measured["twin of minicpm-v-2_6 under compose: build (s), steps run, start to healthy (s)"] = (
        f"{result.build_seconds}, {result.build_steps_run}, {result.healthy_seconds}"
    )
    container = stack.container()
    assert container
    mounts = {m["Destination"]: m for m in stack.docker.inspect(container)["Mounts"]}
    assert mounts[twin.gpu.storage.container_path]["Source"] == str(twin.root / "model")
    assert mounts[twin.gpu.storage.container_path]["RW"] is False
    assert_the_gpu_shape(twin, container, "docker")
    code, cases, output = run_suite(plan_options(twin.plan, stack.endpoint, stack.gateway()), key=stack.key(), ready=60)
    assert code == 0, output[-6000:]
    assert {c.status for c in cases} == {"passed"}
    assert "test_seed_snippets::test_seed_snippet_runs[image-url]" in {c.name for c in cases}
    measured["smoke suite against the twin (compose), sum of cases (s)"] = round(sum(c.seconds for c in cases), 2)


def test_the_guides_path_fails_for_the_gpu_uid_as_on_a_cluster(twin, composed):
    """Before issue 19's fix the container path was the guide's: the GPU Deployment's uid cannot traverse /root
    (0700 in the official image, and in the twin's), so vLLM takes the path for a hub id and stops."""
    stack, _ = composed
    uid = gpu_pod_user(twin)
    failed = subprocess.run(
        [
            docker_cli(), "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
            "--user", f"{uid}:{uid}", "-e", "HF_HUB_OFFLINE=1", "-e", "HOME=/tmp", "-e", "USER=vllm",
            "-v", f"{twin.root / 'model'}:{GUIDE_MODEL_PATH}:ro", "--entrypoint", "vllm",
            twin.plan.image.reference, "serve", GUIDE_MODEL_PATH, "--max-model-len", "2048", "--enforce-eager",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert failed.returncode != 0
    assert "HFValidationError" in failed.stderr or "Permission denied" in failed.stderr, failed.stderr[-3000:]
    root = subprocess.run(
        [docker_cli(), "run", "--rm", "--entrypoint", "stat", twin.plan.image.reference, "-c", "%a %U", "/root"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert root.stdout.split() == ["700", "root"], root.stdout + root.stderr
    # The same directory at the plan's container path is what the compose stack serves from (the smoke test).
    assert stack.docker.inspect(stack.container() or "")["State"]["Health"]["Status"] == "healthy"


def test_the_twins_kubernetes_deployment_serves_under_podman_as_the_gpu_uid(twin, composed, measured):
    """The Deployment kustomize builds from the twin's rendered k8s/ (hostPath: the twin's model directory,
    which `up` filled), played by podman; the smoke suite against its pod."""
    require_podman()
    stack, _ = composed
    load_into_podman(twin.plan.image.reference)
    key = "sk-" + secrets.token_hex(16)
    objects = kustomize_objects(twin.plan, twin.root / "kube", key)
    secret = next(o for o in objects if o["kind"] == "Secret")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsUser"] == gpu_pod_user(twin)
    models = next(v for v in spec["volumes"] if v["name"] == "models")
    assert models["hostPath"]["path"] == str(twin.root / "model")
    create_podman_secret(secret)
    pod = for_podman(copy.deepcopy(deployment), "twin", publish=True)
    path = play(
        pod,
        twin.root / "twin-pod.yaml",
        configmap_options(deployment, [o for o in objects if o["kind"] == "ConfigMap"], twin.root),
    )
    try:
        started = time.monotonic()
        url = f"http://127.0.0.1:{published_port(pod)}"
        try:
            wait_for_http(f"{url}/health", twin.plan.health.start_period_seconds, interval=0.5)
        except TimeoutError:
            pytest.fail(
                f"the twin's pod is not healthy:\n{logs(containers(deployment['metadata']['name'], every=True))}"
            )
        measured["twin of minicpm-v-2_6 under podman kube play: time-to-ready (s)"] = round(
            time.monotonic() - started, 1
        )
        container = containers(f"{deployment['metadata']['name']}-pod-", "-vllm")[0]
        assert_the_gpu_shape(twin, container, "podman")
        gateway = network_of(container)["Gateway"]
        code, cases, output = run_suite(plan_options(twin.plan, url, gateway), key=key, ready=60)
        assert code == 0, output[-6000:] + logs([container])
        assert {c.status for c in cases} == {"passed"}
    finally:
        podman("kube", "down", str(path), check=False)
        podman("secret", "rm", secret["metadata"]["name"], check=False)
