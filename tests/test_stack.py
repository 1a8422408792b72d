"""`vllm-deploy up` for real: Docker Compose v2 builds and starts the CPU profile; the smoke suite
passes against the container; runtime-only changes and down/up rebuild nothing.

The stack is a copy of tiny-cpu under its own name and a free port, rendered into a temporary
root, so a developer's own `make up` stack is never touched. Container logs print on failure.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import requests
import yaml

from deploy import stack
from deploy.plan import Plan, resolve
from deploy.profile import BUILTIN_DIR, load_profile
from deploy.smoke import run_suite, stack_defaults
from tests.conftest import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]
NAME = "tiny-cpu-stack-test"


def write_profile(path, **engine_changes) -> None:
    data = yaml.safe_load((BUILTIN_DIR / "tiny-cpu.yaml").read_text(encoding="utf-8"))
    data["name"] = NAME
    data["server"]["port"] = write_profile.port
    data["engine"].update(engine_changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


write_profile.port = 0


def docker(*args: str) -> str:
    return subprocess.run([stack.docker_cli(), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="module")
def running(root):
    write_profile.port = free_port()
    profile = root / "profile.yaml"
    write_profile(profile)
    plan = resolve(load_profile(str(profile)))
    try:
        timings = stack.up(plan, root)
        yield plan, timings, profile
    finally:
        stack.down(plan, root)


@pytest.fixture
def container_logs_on_failure(request, running, root):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        container = stack.running_container(stack.stack_for(running[0], root))
        if container:
            print(f"\n--- container logs ---\n{stack.logs_tail(container, 150)}")


pytestmark.append(pytest.mark.usefixtures("container_logs_on_failure"))


def models(plan: Plan, root) -> dict:
    key = stack.read_key(stack.stack_for(plan, root))
    response = requests.get(f"{stack.stack_for(plan, root).endpoint}/v1/models",
                            headers={"Authorization": f"Bearer {key}"}, timeout=10)
    response.raise_for_status()
    return response.json()["data"][0]


def test_up_is_healthy_on_loopback_with_a_generated_key(running, root):
    plan, timings, _ = running
    s = stack.stack_for(plan, root)
    container = stack.running_container(s)
    state = json.loads(docker("inspect", container))[0]
    assert state["State"]["Health"]["Status"] == "healthy"
    bindings = state["HostConfig"]["PortBindings"]["8000/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(plan.port)}]
    assert s.env_file.stat().st_mode & 0o777 == 0o600
    key = stack.read_key(s)
    assert key and key.startswith("sk-") and len(key) > 40
    # The key reaches vLLM through its environment only: not in the command line or entrypoint.
    config = state["Config"]
    assert key not in json.dumps([config["Cmd"], config["Entrypoint"], state["Args"], state["Path"]])
    assert config["Cmd"] == plan.argv
    assert models(plan, root)["id"] == plan.served_model_name


def test_smoke_suite_passes_against_the_container(running, root):
    _, _, profile = running
    code, cases, output = run_suite(stack_defaults(str(profile), root, with_key=True))
    assert code == 0, output[-6000:]
    assert len(cases) >= 18 and {c.status for c in cases} == {"passed"}


def test_runtime_only_changes_rebuild_nothing(running, root):
    plan, timings, profile = running
    # max-model-len, dtype, gpu-memory-utilization and the key change; the image must not.
    write_profile(profile, **{"max-model-len": 1024, "dtype": "float32", "gpu-memory-utilization": 0.5})
    s = stack.stack_for(plan, root)
    s.env_file.write_text(s.env_file.read_text().replace("VLLM_API_KEY=sk-", "VLLM_API_KEY=sk-changed-"))
    changed = resolve(load_profile(str(profile)))
    assert changed.image.tag == plan.image.tag
    again = stack.up(changed, root)
    assert again["image"] == timings["image"]
    assert models(changed, root)["max_model_len"] == 1024  # the new argv is live
    assert stack.read_key(s).startswith("sk-changed-")


def test_down_then_up_reuses_the_image(running, root):
    _, timings, profile = running
    plan = resolve(load_profile(str(profile)))
    stack.down(plan, root)
    assert stack.running_container(stack.stack_for(plan, root)) is None
    again = stack.up(plan, root)
    assert again["image"] == timings["image"]
    assert again["build_seconds"] < 30  # every layer cached: the build is a cache lookup


def test_up_refuses_a_busy_port_before_building(root, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        data = yaml.safe_load((BUILTIN_DIR / "tiny-cpu.yaml").read_text(encoding="utf-8"))
        data["name"], data["server"]["port"] = "busy-port-test", busy.getsockname()[1]
        profile = tmp_path / "busy.yaml"
        profile.write_text(yaml.safe_dump(data, allow_unicode=True))
        with pytest.raises(stack.UserError, match=r"port \d+ on 127.0.0.1 is already in use"):
            stack.up(resolve(load_profile(str(profile))), tmp_path)
    assert not (tmp_path / "compose").exists()  # nothing rendered, nothing built
