"""The rendered Kubernetes Deployment of tiny-cpu runs for real under `podman kube play`, and the
smoke suite passes against the pod.

No kube-apiserver can run here; podman plays Deployments. Two adaptations, both made to a copy in
the test and both podman limitations rather than manifest faults (see shared FACTS):
- podman turns a Memory emptyDir at /dev/shm into a root-owned disk volume, so the copy mounts
  the host's /dev/shm (hostPath) instead;
- podman has no Service, so the copy publishes the container port on 127.0.0.1 with hostPort.
The Secret comes from `podman secret create` (a Secret in the YAML hits a podman bug).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time

import pytest
import requests
import yaml

from deploy import stack
from deploy.plan import resolve
from deploy.profile import load_profile
from deploy.smoke import run_suite
from deploy.stack import free_port
from tests.conftest import REPO

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
    stack.prepare_image(plan, root)  # the image the committed manifest names; a cache hit after `up`
    if podman("image", "exists", plan.image.tag, check=False).returncode != 0:
        save = subprocess.Popen([stack.docker_cli(), "save", plan.image.tag], stdout=subprocess.PIPE)
        podman("load", stdin=save.stdout, timeout=900)
        assert save.wait() == 0

    key = "sk-" + secrets.token_hex(16)
    secret_file = root / "secret.json"
    secret_file.write_text(json.dumps({"VLLM_API_KEY": base64.b64encode(key.encode()).decode()}))
    secret_file.chmod(0o600)
    podman("secret", "rm", plan.kubernetes.secret_name, check=False)
    podman("secret", "create", plan.kubernetes.secret_name, str(secret_file))

    port = free_port()
    committed = yaml.safe_load((REPO / "k8s" / "tiny-cpu" / "deployment.yaml").read_text(encoding="utf-8"))
    manifest = root / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(adapt_for_podman(committed, port)))
    podman("kube", "play", "--replace", str(manifest))
    base_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            try:
                if requests.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() - started > READY_DEADLINE_SECONDS:
                pytest.fail(f"pod not healthy in {READY_DEADLINE_SECONDS} s:\n{pod_logs(plan)}")
            time.sleep(0.5)
        yield plan, base_url, key, time.monotonic() - started
    finally:
        podman("kube", "down", str(manifest), check=False)
        podman("secret", "rm", plan.kubernetes.secret_name, check=False)


def pod_logs(plan) -> str:
    listing = podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
    names = [n for n in listing if n.endswith("-vllm") and plan.kubernetes.object_name in n]
    return "\n".join(podman("logs", "--tail", "100", n, check=False).stdout + podman("logs", "--tail", "100", n,
                     check=False).stderr for n in names)


def test_pod_serves_the_smoke_suite(pod, measured):
    plan, base_url, key, ready_seconds = pod
    code, cases, output = run_suite(["--base-url", base_url, "--api-key", key, "--model", plan.served_model_name,
                                     "--local-image-server", "--image-server-host", pod_gateway()])
    assert code == 0, output[-6000:] + pod_logs(plan)
    assert len(cases) >= 18 and {c.status for c in cases} == {"passed"}
    measured["podman pod time-to-ready (s)"] = round(ready_seconds, 1)
    measured["smoke suite against the pod, sum of cases (s)"] = round(sum(c.seconds for c in cases), 2)


def test_pod_runs_as_non_root_with_the_key_from_the_secret(pod):
    plan, base_url, key, _ = pod
    container = vllm_container()
    assert podman("exec", container, "id", "-u").stdout.strip() == "1000"
    assert requests.get(f"{base_url}/v1/models", timeout=5).status_code == 401
    assert requests.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=5).ok
    inspect = json.loads(podman("inspect", container).stdout)[0]
    assert key not in json.dumps(inspect["Config"].get("Cmd")) + json.dumps(inspect.get("Args"))
