"""`vllm-deploy push` builds a profile's image and pushes it to the profile's registry, for real:
Debian's docker-registry (CNCF Distribution) on a loopback port stands in for the user's registry.

The profile is a small CUDA-device variant whose base is the registry-free Debian image, so the
build and the push stay small; the CPU image takes the same code path, only bigger.
"""

from __future__ import annotations

import subprocess

import pytest
import requests

from deploy.plan import resolve
from deploy.runtime.net import free_port, wait_for_http
from deploy.spec import load_profile
from deploy.spec.variant import write_variant
from tests.conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REGISTRY = REPO / ".work" / "registry" / "usr" / "bin" / "docker-registry"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    if not REGISTRY.exists():
        pytest.fail("run `make registry` (make test does) to unpack Debian's docker-registry")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    with (root / "registry.log").open("wb") as log:
        process = subprocess.Popen([str(REGISTRY), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/v2/", 30, alive=lambda: process.poll() is None, interval=0.2)
        except (RuntimeError, TimeoutError):
            pytest.fail((root / "registry.log").read_text())
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_push_sends_the_built_image_to_the_profiles_registry(registry, tmp_path):
    from deploy.facts import device_facts
    from deploy.runtime.stack import Stack, push

    profile = write_variant(
        "qwen2_5-vl-7b",
        tmp_path / "p.yaml",
        {
            "name": "push-test",
            "image": {"base": device_facts()["cpu"]["base-image"], "registry": f"{registry}/ml-team"},
        },
    )
    plan = resolve(load_profile(str(profile)))
    assert plan.image.build and plan.image.reference.startswith(f"{registry}/ml-team/push-test:")
    assert push(Stack(plan, tmp_path)) == [plan.image.reference]  # `vllm-deploy push` calls this; no router here
    tags = requests.get(f"http://{registry}/v2/ml-team/push-test/tags/list", timeout=5).json()
    assert tags == {"name": "ml-team/push-test", "tags": [plan.image.reference.rsplit(":", 1)[1]]}
    # The Kubernetes manifest names exactly what was pushed.
    deployment = (tmp_path / "k8s" / "push-test" / "deployment.yaml").read_text()
    assert f'image: "{plan.image.reference}"' in deployment


def test_push_explains_when_there_is_nothing_to_push(cli, tmp_path):
    official = cli("push", "minicpm-v-2_6", cwd=tmp_path)
    assert official.code == 2
    assert "runs the official image vllm/vllm-openai:v0.32.0 unchanged: nothing to push" in official.err
    local = cli("push", "tiny-cpu", cwd=tmp_path)
    assert local.code == 2
    assert "tiny-cpu has no image.registry: set it to where your cluster pulls from" in local.err
