"""The rendered Kubernetes objects, as `kubectl kustomize` builds them, run for real under `podman kube play`, in
the users' shape: the CPU twin of a user's copy of minicpm-v-2_6 with two replicas behind vLLM's router
(tests/tools/twins.py), as the GPU Deployment's uid, with the guide's model name and the model on the GPU profile's
container path (a hostPath: the twin's model directory on this host).

What is played, once for the module (one vLLM cold start phase: the two engine pods start together): the twin's
engine Deployment twice (podman plays a Deployment as one pod whatever its replicas, so two copies under two names),
engine pod 0 also published on 127.0.0.1; then its router Deployment in front of them. Against engine pod 0 itself:
the smoke suite, as the GPU uid with a read-only root and the key from the Secret, every route of vLLM's own table
needs the key. Through the router pod: the smoke suite, and its front answers only the client allowlist and checks
the key; its admin routes answer inside the pod only.

Why this covers the one-replica twin's Deployment (`vllm-deploy twin minicpm-v-2_6`), and tiny-cpu-x2's: the same
template and image recipe, the same user, mounts, probes, key check and generation config. What differs, and why
podman could not judge it anyway: replicas 1 with strategy Recreate, no topologySpreadConstraints and no
PodDisruptionBudget (podman plays one pod, has no rollout and one node); the CPU limit (podman applies it, which
changes only speed); VLLM_HTTP_TIMEOUT_KEEP_ALIVE (for the router's pooled connections); names, labels and the
Secret's and ConfigMaps' names. tiny-cpu-x2 keeps its model in its image instead of a hostPath. The smoke suite
against engine pod 0 gets the one-replica twin's own options, asserted equal to those of an x2 engine without its
router. tiny-cpu's own Deployment is still played, for the empty-key pod (cheap: it exits at once), and every
profile's rendered objects are validated statically in tests/static (kubernetes-validate --strict, kustomize,
checkov).

Where podman differs from a cluster, see tests/tools/podman.py. Besides: it has no API server, so the
router cannot discover the engine pods by label; it gets their addresses as static worker URLs (the
router's --worker-urls), as it would on compose.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import secrets
import time
from dataclasses import dataclass

import pytest
import requests

from deploy.plan import Plan, resolve
from deploy.runtime.net import wait_for_http
from deploy.runtime.process import wait_until
from deploy.runtime.router import RouterClient
from deploy.runtime.smoke import plan_options, run_suite
from deploy.runtime.stack import Stack, prepare
from deploy.spec import load_profile
from deploy.targets import kubernetes_plan
from tests.tools import routes
from tests.tools.podman import (
    CONF,
    configmap_options,
    containers,
    create_podman_secret,
    for_podman,
    kustomize_build,
    kustomize_objects,
    load_into_podman,
    logs,
    network_of,
    play,
    podman,
    published_port,
    require_podman,
)
from tests.tools.router_routes import every_route, other_spellings
from tests.tools.twins import MINICPM, MINICPM_X2, Twin, make_twin

pytestmark = [pytest.mark.podman, pytest.mark.slow]
READY_DEADLINE_SECONDS = 420


def engine_prefix(plan: Plan, index: int) -> str:
    """kube play names a pod's containers `<deployment>-pod-<hash>-<container>`; engine pod i's Deployment
    is `<object name>-<i>`."""
    return f"{kubernetes_plan(plan).object_name}-{index}-pod-"


@dataclass(frozen=True)
class Pods:
    twin: Twin  # of the user's copy of minicpm-v-2_6 with two replicas
    one_replica: Plan  # the twin of minicpm-v-2_6 itself (not brought up)
    key: str
    engine_url: str  # engine pod 0, published on 127.0.0.1
    router_url: str  # the router pod, published on 127.0.0.1
    gateway: str  # the host's address on the pods' network, where they reach the smoke suite's image server
    engines_ready_seconds: float  # from playing the engine pods to both answering /health
    tiny_cpu: Plan  # its image is in podman's store: for the empty-key pod

    @property
    def plan(self) -> Plan:
        return self.twin.plan

    def engine_prefix(self, index: int) -> str:
        return engine_prefix(self.plan, index)

    def router_prefix(self) -> str:
        router = kubernetes_plan(self.plan).router
        assert router is not None
        return f"{router.object_name}-pod-"

    def engine_logs(self) -> str:
        return logs([n for i in range(self.plan.replicas) for n in containers(self.engine_prefix(i), every=True)])


def engine_container(pods: Pods) -> str:
    names = containers(pods.engine_prefix(0), "-vllm")
    assert len(names) == 1, podman("ps", "-a").stdout
    return names[0]


@pytest.fixture(scope="module")
def pods(tmp_path_factory):
    require_podman()
    root = tmp_path_factory.mktemp("pods")
    twin = make_twin(root / "twin", MINICPM_X2)
    plan = twin.plan
    kube = kubernetes_plan(plan)
    assert plan.router is not None and kube.router is not None
    prepare(twin.stack, echo=False)  # the images the manifests name (cache hits) and the twin's model directory
    load_into_podman(plan.image.reference)
    key = "sk-" + secrets.token_hex(16)
    objects = kustomize_objects(plan, root / "rendered", key)
    secret = next(o for o in objects if o["kind"] == "Secret")
    create_podman_secret(secret)
    engine = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == kube.object_name)
    router = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == kube.router.object_name)

    configmaps = configmap_options(engine, [o for o in objects if o["kind"] == "ConfigMap"], root)
    manifests = []
    engine_url = ""
    started = time.monotonic()
    try:
        for index in range(plan.replicas):
            # NB: engine pod 0 also on 127.0.0.1, for the checks on an engine pod itself.
            pod = for_podman(copy.deepcopy(engine), str(index), publish=index == 0)
            pod["metadata"]["name"] = f"{kube.object_name}-{index}"
            pod["spec"]["replicas"] = 1  # NB: one pod a copy: podman 4.3 plays `replicas: 2` as two pods
            manifests.append(play(pod, root / f"engine-{index}.yaml", configmaps))
            if index == 0:
                engine_url = f"http://127.0.0.1:{published_port(pod)}"
        # NB: while the engines start cold, the images they do not need: the router's, and tiny-cpu's for the
        # empty-key pod (cache hits once built and loaded; a `docker save | podman load` each on a new machine).
        load_into_podman(plan.router.image)
        tiny_cpu = resolve(load_profile("tiny-cpu"))
        prepare(Stack(tiny_cpu, root / "tiny-cpu"), echo=False)
        load_into_podman(tiny_cpu.image.reference)

        networks = [network_of(containers(engine_prefix(plan, i), "-vllm")[0]) for i in range(plan.replicas)]
        addresses = [network["IPAddress"] for network in networks]
        try:
            for address in addresses:
                wait_for_http(f"http://{address}:8000/health", READY_DEADLINE_SECONDS, interval=0.5)
        except TimeoutError:
            pytest.fail(
                f"engine pods not healthy in {READY_DEADLINE_SECONDS} s:\n{logs(containers(kube.object_name, every=True))}"
            )
        engines_ready = time.monotonic() - started
        wait_for_http(f"{engine_url}/health", 30)  # engine pod 0 on its hostPort too
        # Static workers instead of service discovery (no API server here), as compose has them.
        container = router["spec"]["template"]["spec"]["containers"][0]
        args = container["args"]
        start = args.index("--service-discovery")
        end = args.index("--service-discovery-namespace") + 2
        container["args"] = ["--worker-urls", *(f"http://{a}:8000" for a in addresses), *args[:start], *args[end:]]
        for_podman(router, "router", publish=True)
        router_url = f"http://127.0.0.1:{published_port(router)}"
        manifests.append(play(router, root / "router.yaml"))

        def ready() -> bool:
            try:  # NB: public at the front, as the kubelet's probes call it
                return requests.get(f"{router_url}/readiness", timeout=2).json().get("healthy_workers") == 2
            except (requests.RequestException, ValueError):
                return False

        wait_until(lambda: True if ready() else None, timeout=120, interval=1)
        one_replica = make_twin(root / "one-replica", MINICPM).plan
        yield Pods(twin, one_replica, key, engine_url, router_url, networks[0]["Gateway"], engines_ready, tiny_cpu)
    finally:
        # NB: the pods at once: each waits for its engine's graceful stop, on no CPU.
        with concurrent.futures.ThreadPoolExecutor() as pool:
            list(pool.map(lambda path: podman("kube", "down", str(path), check=False), manifests))
        podman("secret", "rm", secret["metadata"]["name"], check=False)


def test_an_engine_pod_serves_the_smoke_suite(pods, measured):
    # NB: the one-replica twin's own options (the plan's, so the server-side stop ids prove the ConfigMap reached
    # vLLM); an x2 engine without the router in front takes the same ones.
    options = plan_options(pods.one_replica, pods.engine_url, pods.gateway)
    assert options == plan_options(pods.plan.model_copy(update={"router": None}), pods.engine_url, pods.gateway)
    code, cases, output = run_suite(options, key=pods.key, ready=pods.plan.health.start_period_seconds)
    assert code == 0, output[-6000:] + pods.engine_logs()
    assert {c.status for c in cases} == {"passed"}
    assert {
        "test_chat::test_image_by_url",
        "test_chat::test_image_as_base64_matches_url",
        "test_chat::test_server_stop_ids_apply_without_extra_body",
    } <= {c.name for c in cases}
    measured["podman engine pods (two at once) time-to-ready (s)"] = round(pods.engines_ready_seconds, 1)
    measured["smoke suite against an engine pod, sum of cases (s)"] = round(sum(c.seconds for c in cases), 2)


def test_an_engine_pod_runs_as_the_gpu_uid_with_a_read_only_root_and_the_key_from_the_secret(pods):
    container = engine_container(pods)
    assert podman("exec", container, "id", "-u").stdout.strip() == str(pods.twin.gpu_uid)
    who = podman("exec", container, "python3", "-c", "import getpass; print(getpass.getuser())", check=False)
    assert who.stdout.strip() == pods.plan.environment["USER"], who.stderr
    mounts = json.loads(podman("inspect", container).stdout)[0]["Mounts"]
    weights = next(m for m in mounts if m["Destination"] == pods.twin.gpu.storage.container_path)
    assert weights["RW"] is False and weights["Source"] == str(pods.twin.root / "model")
    write = podman(
        "exec", container, "sh", "-c", 'touch /opt/x; echo "root $?"; touch "$HOME/x" && echo "home 0"', check=False
    )
    assert "root 1" in write.stdout and "home 0" in write.stdout, write.stdout + write.stderr
    assert requests.get(f"{pods.engine_url}/v1/models", timeout=5).status_code == 401
    headers = {"Authorization": f"Bearer {pods.key}"}
    assert requests.get(f"{pods.engine_url}/v1/models", headers=headers, timeout=5).ok
    inspect = json.loads(podman("inspect", container).stdout)[0]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert pods.key not in json.dumps(inspect["Config"].get("Cmd")) + json.dumps(inspect.get("Args"))


def test_every_route_of_an_engine_pod_needs_the_key(pods, measured):
    """The Kubernetes shape: the middleware's module from its ConfigMap. Every route of vLLM's own table but
    /health and /metrics answers 401 without the key or with a wrong one."""
    from deploy.assets.edge.vllm_deploy_edge import PUBLIC

    found = routes.report(pods.engine_url, pods.key)
    measured["engine pod: routes in vLLM's own table, each called three ways"] = found["routes"]
    assert found["routes"] >= 20 and routes.lock_problems(found, PUBLIC) == []


def test_the_smoke_suite_passes_through_the_router_pod(pods, measured):
    code, cases, output = run_suite(
        plan_options(pods.plan, pods.router_url, pods.gateway),
        key=pods.key,
        ready=pods.plan.health.start_period_seconds,
    )
    assert code == 0, output[-6000:]
    assert {c.status for c in cases} == {"passed"}
    measured["smoke suite through the router pod (cases)"] = len(cases)


def router_admin(pods: Pods) -> RouterClient:
    """The router's admin routes, from inside its pod's container (as `kubectl exec` would)."""
    names = containers(pods.router_prefix())
    assert len(names) == 1, podman("ps", "-a").stdout
    router = pods.plan.router
    assert router is not None
    return RouterClient(
        "", ["env", f"CONTAINERS_CONF={CONF}", "podman", "exec", names[0]], router.python, router.admin_url
    )


def test_the_router_pod_answers_only_the_allowlist_and_checks_the_key(pods, measured):
    plan, base_url, key = pods.plan, pods.router_url, pods.key
    assert requests.get(f"{base_url}/v1/models", timeout=5).status_code == 401
    assert requests.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=5).ok
    admin = router_admin(pods)
    expected = sorted(admin.workers())
    assert len(expected) == plan.replicas
    problems, calls = every_route(plan, base_url, key, expected[0])
    problems += other_spellings(base_url, key, expected[0])
    assert not problems, "\n".join(problems)
    assert sorted(admin.workers()) == expected  # the admin routes called with the client key did nothing
    measured["router pod front: table routes x 3 keys called"] = calls


def test_a_pod_with_an_empty_key_in_its_secret_exits_at_once(pods, tmp_path, measured):
    """secrets.env copied from the example holds `VLLM_API_KEY=`: the container must refuse to start.
    tiny-cpu's own Deployment (its image loaded by the fixture), under another name."""
    # The Kubernetes names (the Deployment, the Secret) follow the plan's name.
    empty = pods.tiny_cpu.model_copy(update={"name": "tiny-cpu-empty-key"})
    objects = kustomize_build(empty, tmp_path, "")
    assert objects["Secret"]["data"] == {"VLLM_API_KEY": ""}
    create_podman_secret(objects["Secret"])
    configmaps = configmap_options(objects["Deployment"], objects["ConfigMaps"], tmp_path)
    deployment = for_podman(objects["Deployment"], "empty-key", publish=True)
    started = time.monotonic()
    manifest = play(deployment, tmp_path / "empty.yaml", configmaps)
    try:
        while time.monotonic() - started < 60:
            name = next(iter(containers("tiny-cpu-empty-key-", "-vllm", every=True)), "none")
            found = podman("logs", name, check=False)
            if "refusing to start" in found.stdout + found.stderr:
                break
            time.sleep(0.5)
        measured["pod with an empty key: play to refusal (s)"] = round(time.monotonic() - started, 1)
        assert "vllm-deploy: VLLM_API_KEY is empty or unset; refusing to start" in found.stdout + found.stderr
        assert "Application startup complete" not in found.stdout + found.stderr  # vLLM never ran
    finally:
        podman("kube", "down", str(manifest), check=False)
        podman("secret", "rm", objects["Secret"]["metadata"]["name"], check=False)
