"""tiny-cpu-x2's Kubernetes objects, as kustomize builds them, under `podman kube play`: two engine pods and
the router pod in front of them; the smoke suite passes through the router pod, whose front answers only
the client allowlist and checks the key; its admin routes answer inside the pod only.

Where podman differs from a cluster (besides what test_pod.py lists): it has no API server, so the
router cannot discover the engine pods by label; the test gives it the engine pods' addresses as static
worker URLs (the router's --worker-urls), as it would get on compose. Podman plays a Deployment as one
pod whatever its replicas, so the engine Deployment is played twice under two names.
"""

from __future__ import annotations

import copy
import json
import secrets

import pytest
import requests
import yaml

from deploy.plan import resolve
from deploy.runtime.net import free_port, wait_for_http
from deploy.runtime.process import wait_until
from deploy.runtime.router import RouterClient
from deploy.runtime.smoke import plan_options, run_suite
from deploy.runtime.stack import Stack, prepare
from deploy.spec import load_profile
from deploy.targets import kubernetes_plan
from tests.integration.test_pod import (
    CONF,
    configmap_options,
    create_podman_secret,
    kustomize_objects,
    load_into_podman,
    podman,
)
from tests.tools.router_routes import every_route, other_spellings

pytestmark = [pytest.mark.podman, pytest.mark.slow]
READY_DEADLINE_SECONDS = 420


def for_podman(deployment: dict, suffix: str, publish: bool) -> dict:
    """/dev/shm from the host; emptyDirs named per pod (podman makes a named volume of each, which two pods
    would share); container ports published only where the test needs them (podman publishes a bare
    containerPort on the host's same port, and two engine pods would collide)."""
    spec = deployment["spec"]["template"]["spec"]
    for volume in spec.get("volumes", []):
        if volume["name"] == "dshm":
            volume.pop("emptyDir")
            volume["hostPath"] = {"path": "/dev/shm", "type": "Directory"}
        elif "emptyDir" in volume:
            for mount in spec["containers"][0]["volumeMounts"]:
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


def pod_network(name_prefix: str) -> dict:
    """The network settings of the first container whose name starts with `name_prefix`: IPAddress, Gateway."""
    containers = [n for n in podman("ps", "--format", "{{.Names}}").stdout.split() if n.startswith(name_prefix)]
    assert containers, podman("ps", "-a").stdout
    networks = json.loads(podman("inspect", containers[0]).stdout)[0]["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    if not CONF.exists():
        pytest.fail("run scripts/podman-up.sh (make test does) to install podman and write its configuration")
    root = tmp_path_factory.mktemp("pod-router")
    plan = resolve(load_profile("tiny-cpu-x2"))
    assert plan.router is not None
    kube = kubernetes_plan(plan)
    assert kube.router is not None
    prepare(Stack(plan, root), echo=False)  # both images the manifests name; cache hits after `up`
    for reference in (plan.image.reference, plan.router.image):
        load_into_podman(reference)
    key = "sk-" + secrets.token_hex(16)
    objects = kustomize_objects(plan, root / "rendered", key)
    secret = next(o for o in objects if o["kind"] == "Secret")
    create_podman_secret(secret)
    engine = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == kube.object_name)
    router = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == kube.router.object_name)

    configmap = configmap_options(engine, [o for o in objects if o["kind"] == "ConfigMap"], root)
    manifests = []
    for index in range(plan.replicas):
        copy_ = for_podman(copy.deepcopy(engine), str(index), publish=False)
        copy_["metadata"]["name"] = f"{kube.object_name}-{index}"
        copy_["spec"]["replicas"] = 1  # NB: one pod a copy: podman 4.3 plays `replicas: 2` as two pods
        path = root / f"engine-{index}.yaml"
        path.write_text(yaml.safe_dump(copy_))
        podman("kube", "play", "--replace", *configmap, str(path))
        manifests.append(path)
    try:
        networks = [pod_network(f"{kube.object_name}-{index}-pod") for index in range(plan.replicas)]
        addresses = [network["IPAddress"] for network in networks]
        for address in addresses:
            wait_for_http(f"http://{address}:8000/health", READY_DEADLINE_SECONDS, interval=1)
        # Static workers instead of service discovery (no API server here), as compose has them.
        container = router["spec"]["template"]["spec"]["containers"][0]
        args = container["args"]
        start = args.index("--service-discovery")
        end = args.index("--service-discovery-namespace") + 2
        container["args"] = ["--worker-urls", *(f"http://{a}:8000" for a in addresses), *args[:start], *args[end:]]
        for_podman(router, "router", publish=True)
        container = router["spec"]["template"]["spec"]["containers"][0]
        port = container["ports"][0]["hostPort"]
        path = root / "router.yaml"
        path.write_text(yaml.safe_dump(router))
        podman("kube", "play", "--replace", str(path))
        manifests.append(path)
        base_url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:  # NB: public at the front, as the kubelet's probes call it
                return requests.get(f"{base_url}/readiness", timeout=2).json().get("healthy_workers") == 2
            except (requests.RequestException, ValueError):
                return False

        wait_until(lambda: True if ready() else None, timeout=120, interval=1)
        yield plan, base_url, key, networks[0]["Gateway"]  # where the engine pods reach the image server
    finally:
        for path in reversed(manifests):
            podman("kube", "down", str(path), check=False)
        podman("secret", "rm", secret["metadata"]["name"], check=False)


def test_the_smoke_suite_passes_through_the_router_pod(routed, measured):
    plan, base_url, key, gateway = routed
    code, cases, output = run_suite(
        plan_options(plan, base_url, gateway), key=key, ready=plan.health.start_period_seconds
    )
    assert code == 0, output[-6000:]
    assert {c.status for c in cases} == {"passed"}
    measured["smoke suite through the router pod (cases)"] = len(cases)


def router_name(plan) -> str:
    router = kubernetes_plan(plan).router
    assert router is not None
    return router.object_name


def router_admin(plan) -> RouterClient:
    """The router's admin routes, from inside its pod's container (as `kubectl exec` would)."""
    names = [
        n for n in podman("ps", "--format", "{{.Names}}").stdout.split() if n.startswith(f"{router_name(plan)}-pod-")
    ]
    assert len(names) == 1, podman("ps", "-a").stdout
    return RouterClient(
        "", ["env", f"CONTAINERS_CONF={CONF}", "podman", "exec", names[0]], plan.router.python, plan.router.admin_url
    )


def test_the_router_pod_answers_only_the_allowlist_and_checks_the_key(routed, measured):
    plan, base_url, key, _ = routed
    assert requests.get(f"{base_url}/v1/models", timeout=5).status_code == 401
    assert requests.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=5).ok
    admin = router_admin(plan)
    expected = sorted(admin.workers())
    assert len(expected) == plan.replicas
    problems, calls = every_route(plan, base_url, key, expected[0])
    problems += other_spellings(base_url, key, expected[0])
    assert not problems, "\n".join(problems)
    assert sorted(admin.workers()) == expected  # the admin routes called with the client key did nothing
    measured["router pod front: table routes x 3 keys called"] = calls
