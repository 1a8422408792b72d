"""The CPU twins of the built-in GPU profiles (minicpm-v-2_6: the guide's model from a host directory;
qwen2_5-vl-7b: a hub model in a cache volume), and of a user's copy of minicpm-v-2_6 with two replicas behind vLLM's
router, brought up as their users deploy them: under compose (what `make up PROFILE=<twin file>` runs), and the hub
twin also as its rendered Kubernetes Deployment under `podman kube play` (its init container fetches the model).
Each passes the smoke suite as the uid of the GPU Deployment, with the model where the GPU profile has it in the
container and served under the GPU profile's name. The MiniCPM twins' Kubernetes objects run under podman in
tests/integration/test_pods.py: the two-replica copy's engine Deployment (twice, as podman plays one pod a
Deployment) and its router Deployment; its engine Deployment differs from the one-replica twin's only in what podman
cannot judge (replicas, strategy, spread, the disruption budget; the same argument as there).

The twin keeps the GPU profile's shape, so what fails on first contact with a cluster because of that shape fails
here too. The guide's model did (issue 19): mounted at /root/ld/… for a non-root uid, in an image whose /root is
0700; `test_the_guides_path_fails_for_the_gpu_uid_as_on_a_cluster` keeps that failure reproduced, so the twin is
known to see it.

NB: the five engines (three twins; the two-replica one has two) and the hub twin's pod start together and are waited
for together: one cold-start phase for the module.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import io
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from deploy.bench.hub_server import HubServer
from deploy.runtime.docker import docker_cli
from deploy.runtime.net import wait_for_http
from deploy.runtime.smoke import plan_options, run_suite
from deploy.runtime.stack import down, fetch_model, prepare, wait_services
from deploy.targets import kubernetes_plan
from tests.conftest import print_logs_if_failed
from tests.tools.podman import (
    configmap_options,
    containers,
    create_podman_secret,
    for_podman,
    fresh_claim,
    kustomize_objects,
    load_into_podman,
    logs,
    network_of,
    play,
    podman,
    published_port,
    require_podman,
)
from tests.tools.twins import GUIDE_MODEL_PATH, MINICPM, MINICPM_X2, Twin, make_twin

pytestmark = [pytest.mark.docker, pytest.mark.podman, pytest.mark.slow]
QWEN = "qwen2_5-vl-7b"
TWINS = [MINICPM, MINICPM_X2, QWEN]
QWEN_REPOSITORY = "Qwen/Qwen2.5-VL-7B-Instruct"
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"  # what our hub answers for the profile's "main"


def play_pod(twin: Twin, manifests: list[Path]) -> None:
    """The twin's Deployment as kustomize builds it from its rendered k8s/ (hostPath: the twin's model directory,
    which `up` filled; or an empty hub claim, which the pod's fetch step fills), played by podman."""
    plan = twin.plan
    twin.pod_key = "sk-" + secrets.token_hex(16)
    objects = kustomize_objects(plan, twin.root / "kube", twin.pod_key)
    secret = next(o for o in objects if o["kind"] == "Secret")
    create_podman_secret(secret)
    twin.pod_secret = secret["metadata"]["name"]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    if plan.storage.kind == "hub":
        claim = kubernetes_plan(plan).pvc_name
        assert claim
        fresh_claim(claim)  # NB: empty: the pod's init container (the fetch step) fills it
    pod = for_podman(copy.deepcopy(deployment), "twin", publish=True)
    configmaps = configmap_options(deployment, [o for o in objects if o["kind"] == "ConfigMap"], twin.root)
    manifests.append(play(pod, twin.root / "twin-pod.yaml", configmaps))
    twin.pod_url = f"http://127.0.0.1:{published_port(pod)}"


def clean_volumes(twin: Twin) -> None:
    subprocess.run([docker_cli(), "volume", "rm", "-f", *(f"{twin.plan.name}_{v}" for v in ("cache", "model-cache"))], capture_output=True)  # fmt: skip


@pytest.fixture(scope="module")
def twins(tmp_path_factory, measured):
    """The MiniCPM twin's host directory, filled from its image by `prepare`, is also what our loopback hub serves
    as Qwen's repository: the Qwen twin's fetch step (compose's service, the pod's init container) downloads it
    with Hugging Face's client, and its engines load it offline."""
    require_podman()
    found: dict[str, Twin] = {}
    manifests: list[Path] = []
    hub: HubServer | None = None
    try:
        started = time.monotonic()
        for name in (MINICPM, MINICPM_X2):
            twin = found[name] = make_twin(tmp_path_factory.mktemp(name), name)
            clean_volumes(twin)
            prepare(twin.stack, echo=False)  # the images (cache hits after tiny-cpu-x2's) and the twin's weights
        hub = HubServer(
            found[MINICPM].root / "model",
            QWEN_REPOSITORY,
            HUB_COMMIT,
            bind=found[MINICPM].stack.docker.bridge_gateway(),
        ).__enter__()
        qwen = found[QWEN] = make_twin(tmp_path_factory.mktemp(QWEN), QWEN, hub)
        clean_volumes(qwen)
        prepare(qwen.stack, echo=False)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            measured["hub twin: fetch step before the engines, compose (s)"] = round(fetch_model(qwen.stack) or 0, 1)
        qwen.fetch_output = printed.getvalue()
        for twin in found.values():
            twin.stack.compose("up", "-d", "--no-build", *twin.stack.services).checked("docker compose up")
        load_into_podman(qwen.plan.image.reference)  # NB: while the servers start
        play_pod(qwen, manifests)
        for twin in found.values():
            wait_services(twin.stack, twin.stack.services)
        try:
            wait_for_http(f"{qwen.pod_url}/health", qwen.plan.health.start_period_seconds, interval=0.5)
        except TimeoutError:
            pytest.fail(
                f"{QWEN}'s pod is not healthy:\n{logs(containers(kubernetes_plan(qwen.plan).object_name, every=True))}"
            )
        qwen.pod_container = containers(f"{kubernetes_plan(qwen.plan).object_name}-pod-", "-vllm")[0]
        measured["twins: 3 compose stacks (5 engines) and 1 podman pod, all healthy (s)"] = round(
            time.monotonic() - started, 1
        )
        yield found
    finally:

        def stop(twin: Twin) -> None:
            down(twin.stack, remove_volumes=True)

        def unplay(path: Path) -> None:
            podman("kube", "down", str(path), check=False)

        # NB: every stack and pod at once: each waits for its engines' graceful stop, on no CPU.
        with concurrent.futures.ThreadPoolExecutor() as pool:
            stopped = [pool.submit(unplay, path) for path in manifests]
            stopped += [pool.submit(stop, twin) for twin in found.values()]
        for twin in found.values():
            if twin.pod_secret:
                podman("secret", "rm", twin.pod_secret, check=False)
        if hub:
            hub.__exit__(None, None, None)
        for each in stopped:
            each.result()


@pytest.fixture(autouse=True)
def container_logs_on_failure(request):
    yield
    for name in TWINS:
        print_logs_if_failed(request, "twins", 80, stack_of=lambda found, name=name: found[name].stack)


def exec_in(target: str, container: str, *args: str) -> subprocess.CompletedProcess:
    binary = docker_cli() if target == "compose" else "podman"
    return subprocess.run([binary, "exec", container, *args], capture_output=True, text=True)


@pytest.mark.parametrize("name", TWINS)
def test_the_twin_keeps_the_gpu_profiles_names_paths_and_user(twins, name):
    twin = twins[name]
    assert twin.plan.name == twin.gpu.name and twin.plan.twin_of == name
    assert twin.plan.served_model_name == twin.gpu.served_model_name
    assert twin.plan.model == twin.gpu.model
    assert twin.plan.storage.container_path == twin.gpu.storage.container_path
    assert twin.plan.image.run_as_user == twin.gpu_uid
    assert twin.plan.replicas == twin.gpu.replicas == (2 if name == MINICPM_X2 else 1)
    assert (twin.plan.router is None) is (twin.gpu.router is None)
    if name != QWEN:
        assert twin.plan.served_model_name == GUIDE_MODEL_PATH and twin.plan.model == "/models/weights"


@pytest.mark.parametrize(
    ("name", "target"), [(MINICPM, "compose"), (MINICPM_X2, "compose"), (QWEN, "compose"), (QWEN, "podman")]
)
def test_the_twin_serves_the_smoke_suite_as_the_gpu_uid(twins, name, target, measured):
    """The container runs as the GPU Deployment's uid, which has no passwd entry (as in the official image), with
    HOME writable and the root read-only; the smoke suite passes against it (through the router, where there is
    one: it spreads the suite over both replicas)."""
    twin = twins[name]
    if target == "compose":
        container, url, key = twin.engine_container, twin.stack.endpoint, twin.stack.key()
        gateway = twin.stack.gateway()
        mount = next(m for m in twin.stack.docker.inspect(container)["Mounts"] if m["Destination"] == twin.gpu.storage.container_path)  # fmt: skip
        assert mount["RW"] is (twin.plan.storage.kind == "hub")  # weights read-only; a hub cache is the engine's
        # NB: podman writes a passwd entry for the uid into its containers (containerd does not): compose only.
        lookup = exec_in(target, container, "python3", "-c", "import os, pwd; pwd.getpwuid(os.getuid())")
        assert "KeyError" in lookup.stderr, lookup.stdout + lookup.stderr
    else:
        container, url, key = twin.pod_container, twin.pod_url, twin.pod_key
        gateway = network_of(container)["Gateway"]
    assert exec_in(target, container, "id", "-u").stdout.strip() == str(twin.gpu_uid)
    who = exec_in(target, container, "python3", "-c", "import getpass; print(getpass.getuser())")
    assert who.stdout.strip() == twin.plan.environment["USER"], who.stderr
    write = exec_in(target, container, "sh", "-c", 'touch /opt/x; echo "root $?"; touch "$HOME/x" && echo "home 0"')
    assert "root 1" in write.stdout and "home 0" in write.stdout, write.stdout + write.stderr
    code, cases, output = run_suite(plan_options(twin.plan, url, gateway), key=key, ready=60)
    assert code == 0, output[-6000:] + (logs([container]) if target == "podman" else "")
    assert {c.status for c in cases} == {"passed"}
    assert "test_seed_snippets::test_seed_snippet_runs[image-url]" in {c.name for c in cases}
    if twin.plan.router:  # every replica answered some of the suite's chats, through the router's round robin
        served = {
            r.service: twin.stack.docker.logs(twin.stack.container(r.service), 100_000).count(
                "POST /v1/chat/completions"
            )
            for r in twin.plan.instances
        }
        assert len(served) == 2 and min(served.values()) > 0, served
    measured[f"smoke suite against the twin of {name} ({target}), sum of cases (s)"] = round(
        sum(c.seconds for c in cases), 2
    )


def test_the_hub_twin_serves_its_model_from_the_cache_without_the_hub(twins):
    twin = twins[QWEN]
    assert twin.plan.environment["HF_HUB_OFFLINE"] == "1" and twin.plan.environment["HF_HOME"] == "/models/hf-cache"
    listing = exec_in("compose", twin.engine_container, "ls", "/models/hf-cache/hub")
    assert "models--Qwen--Qwen2.5-VL-7B-Instruct" in listing.stdout.split(), listing.stdout + listing.stderr
    refs = exec_in("compose", twin.engine_container, "cat", "/models/hf-cache/hub/models--Qwen--Qwen2.5-VL-7B-Instruct/refs/main")  # fmt: skip
    assert refs.stdout == HUB_COMMIT, refs.stdout + refs.stderr  # the hub's commit, as Hugging Face's client wrote it


def test_the_hub_twin_fetched_from_the_hub_once_per_volume_before_its_engines(twins):
    """Compose's fetch step (run by `up` in the foreground, then by compose before the engine) and the pod's init
    container each downloaded every file of the repository once, with Hugging Face's client; a later run of the
    step downloads nothing and touches no network."""
    twin = twins[QWEN]
    hub = twin.hub
    assert hub and twin.plan.fetch and twin.plan.fetch.environment["HF_ENDPOINT"] == hub.root
    sizes = hub.sizes()
    assert dict(hub.body_bytes) == {name: 2 * size for name, size in sizes.items()}, (hub.body_bytes, sizes)
    assert "in the model volume after" in twin.fetch_output and f"snapshots/{HUB_COMMIT}" in twin.fetch_output, (
        twin.fetch_output
    )
    asked = sum(hub.requests.values())
    again = twin.stack.compose("run", "--rm", "--no-deps", "-T", twin.plan.fetch.name)
    assert again.ok and "is in the cache already" in again.stdout, again.stdout + again.stderr
    assert sum(hub.requests.values()) == asked  # not even a HEAD


def test_a_hub_twin_without_an_endpoint_lays_the_tiny_model_out_as_the_repositorys_snapshot(tmp_path):
    """What `vllm-deploy twin qwen2_5-vl-7b` gives a user (no hub to fetch from): the fetch step copies the image's
    tiny model into the volume as the repository's cached snapshot, as the GPU uid, once; the engine, offline, finds
    it by the hub id (run here alone, in the twin's image, on a fresh volume)."""
    twin = make_twin(tmp_path, QWEN)
    prepare(twin.stack, echo=False)  # NB: the image the twins' fixture built: a cache hit
    served, fetch = twin.plan, twin.plan.fetch
    assert fetch and "cp -R /models/tiny-vlm/." in fetch.command[2] and fetch.secrets == []
    volume = f"twin-fetch-{secrets.token_hex(4)}"
    uid = served.image.run_as_user
    run = [docker_cli(), "run", "--rm", "--network", "none", "--read-only", "--user", f"{uid}:{uid}",
           "-v", f"{volume}:{served.storage.container_path}", "--entrypoint", fetch.command[0], served.image.reference,
           *fetch.command[1:]]  # fmt: skip
    try:
        first, second = (subprocess.run(run, capture_output=True, text=True, timeout=120) for _ in range(2))
        assert first.returncode == 0 and "laid out as Qwen/Qwen2.5-VL-7B-Instruct@main" in first.stdout, first
        assert second.returncode == 0 and "in the cache already" in second.stdout, second
        folder = f"{served.storage.container_path}/hub/models--Qwen--Qwen2.5-VL-7B-Instruct"
        listed = subprocess.run(
            [docker_cli(), "run", "--rm", "--network", "none", "-v", f"{volume}:{served.storage.container_path}",
             "--entrypoint", "sh", served.image.reference, "-c", f'cat {folder}/refs/main; echo; ls {folder}/snapshots/*/'],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        commit, _, files = listed.stdout.partition("\n")
        assert re.fullmatch(r"[0-9a-f]{40}", commit) and "config.json" in files.split(), listed.stdout + listed.stderr
    finally:
        subprocess.run([docker_cli(), "volume", "rm", "-f", volume], capture_output=True)


def test_the_guides_path_fails_for_the_gpu_uid_as_on_a_cluster(twins):
    """Before issue 19's fix the container path was the guide's: the GPU Deployment's uid cannot traverse /root
    (0700 in the official image, and in the twin's), so vLLM takes the path for a hub id and stops."""
    twin = twins[MINICPM]
    uid = twin.gpu_uid
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
    # The same directory at the plan's container path is what the twin serves from (the smoke suite above).
    assert twin.stack.docker.inspect(twin.engine_container)["State"]["Health"]["Status"] == "healthy"
