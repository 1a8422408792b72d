"""`vllm-deploy up` for real: Docker Compose v2 builds and starts the CPU profile; the smoke suite
passes against the container; runtime-only changes and down/up rebuild nothing.

The stack is a copy of tiny-cpu under its own name and a free port, rendered into a temporary
root, so a developer's own `make up` stack is never touched. Container logs print on failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from deploy import stack
from deploy.plan import Plan, resolve
from deploy.spec import load_profile
from deploy.spec.variant import write_variant
from deploy.smoke import run_suite, stack_defaults
from deploy.stack import free_port
from tests.conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]
NAME = "tiny-cpu-stack-test"


def docker(*args: str) -> str:
    return subprocess.run([stack.docker_cli(), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="module")
def running(root):
    profile = write_variant("tiny-cpu", root / "profile.yaml", {"name": NAME, "server": {"port": free_port()}})
    plan = resolve(load_profile(str(profile)))
    # NB: a throwaway stack: volumes left by an earlier run (another image, another uid) must not leak in.
    subprocess.run([stack.docker_cli(), "volume", "rm", "-f", f"{NAME}_cache"], capture_output=True)
    try:
        timings = stack.up(plan, root)
        yield plan, timings, profile
    finally:
        stack.down(plan, root, remove_volumes=True)


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


def test_up_is_healthy_on_loopback_with_a_generated_key(running, root, measured):
    plan, timings, _ = running
    measured["compose up: build (s), steps run, start to healthy (s)"] = (
        f"{timings['build_seconds']}, {timings['build_steps_run']}, {timings['healthy_seconds']}")
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
    assert config["Cmd"] == plan.argv and config["Entrypoint"] == plan.entrypoint
    assert models(plan, root)["id"] == plan.served_model_name


def test_the_container_runs_with_a_read_only_root(running, root):
    plan, _, _ = running
    container = stack.running_container(stack.stack_for(plan, root))
    assert json.loads(docker("inspect", container))[0]["HostConfig"]["ReadonlyRootfs"] is True
    write = subprocess.run([stack.docker_cli(), "exec", container, "sh", "-c",
                            'touch /opt/x; echo "root $?"; touch "$HOME/x" /tmp/x && echo "home and tmp 0"'],
                           capture_output=True, text=True)
    assert "root 1" in write.stdout and "home and tmp 0" in write.stdout, write.stdout + write.stderr
    assert "Read-only file system" in write.stderr


@pytest.mark.parametrize("how", ["compose-run", "docker-run-image"])
def test_an_empty_key_stops_the_container_within_seconds(running, root, how, measured):
    """vLLM would serve /v1 without auth on an empty key; the entrypoint refuses to start instead."""
    plan, _, _ = running
    s = stack.stack_for(plan, root)
    if how == "compose-run":  # the compose file's own entrypoint and command
        command = s.compose("run", "--rm", "--no-deps", "-e", "VLLM_API_KEY=", "vllm")
    else:  # the image's ENTRYPOINT, as `docker run` by hand would use it
        command = [stack.docker_cli(), "run", "--rm", "-e", "VLLM_API_KEY=", plan.image.reference]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - started
    assert done.returncode == 78, done.stdout + done.stderr
    assert "vllm-deploy: VLLM_API_KEY is empty or unset; refusing to start" in done.stderr
    measured[f"empty key to exit 78 ({how}) (s)"] = round(seconds, 1)


def test_smoke_suite_passes_against_the_container(running, root):
    _, _, profile = running
    code, cases, output = run_suite(stack_defaults(str(profile), root, with_key=True))
    assert code == 0, output[-6000:]
    assert len(cases) >= 18 and {c.status for c in cases} == {"passed"}


def test_runtime_only_changes_rebuild_nothing(running, root):
    plan, timings, profile = running
    # max-model-len, dtype, gpu-memory-utilization and the key change; the image must not.
    write_variant("tiny-cpu", profile, {"name": NAME, "server": {"port": plan.port},
                                        "engine": {"max-model-len": 1024, "dtype": "float32",
                                                   "gpu-memory-utilization": 0.5}})
    s = stack.stack_for(plan, root)
    s.env_file.write_text(s.env_file.read_text().replace("VLLM_API_KEY=sk-", "VLLM_API_KEY=sk-changed-"))
    changed = resolve(load_profile(str(profile)))
    assert changed.image.reference == plan.image.reference
    again = stack.up(changed, root)
    assert again["build_steps_run"] == 0
    assert again["image"] == timings["image"]
    assert models(changed, root)["max_model_len"] == 1024  # the new argv is live
    assert stack.read_key(s).startswith("sk-changed-")


def test_down_then_up_reuses_the_image(running, root):
    _, timings, profile = running
    plan = resolve(load_profile(str(profile)))
    stack.down(plan, root)
    assert stack.running_container(stack.stack_for(plan, root)) is None
    run, total = stack.executed_steps(stack.build_log(stack.stack_for(plan, root)))
    assert run == 0 and total >= 3  # every RUN/COPY step a cache hit
    again = stack.up(plan, root)
    assert again["build_steps_run"] == 0
    assert again["image"] == timings["image"]


def test_up_refuses_a_busy_port_before_building(root, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        profile = write_variant("tiny-cpu", tmp_path / "busy.yaml",
                                {"name": "busy-port-test", "server": {"port": busy.getsockname()[1]}})
        with pytest.raises(stack.UserError, match=r"port: 127.0.0.1:\d+ is already in use"):
            stack.up(resolve(load_profile(str(profile))), tmp_path)
    assert not (tmp_path / "compose").exists()  # nothing rendered, nothing built


# ---------------------------------------------------------------------------------------------
# Secrets, load and faults against the running container


def test_key_appears_nowhere_but_the_env_file(running, root, measured):
    plan, _, profile = running
    s = stack.stack_for(plan, root)
    key = stack.read_key(s)
    container = stack.running_container(s)
    places = {
        "docker inspect Cmd/Args/Entrypoint/Path": json.dumps(
            [(c := json.loads(docker("inspect", container))[0])["Config"]["Cmd"], c["Config"]["Entrypoint"],
             c["Args"], c["Path"]]),
        "/proc/*/cmdline in the container": subprocess.run(
            [stack.docker_cli(), "exec", container, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\\\0' ' '"],
            capture_output=True, text=True).stdout,
        "image history": docker("history", "--no-trunc", plan.image.reference),
        "image config": docker("image", "inspect", plan.image.reference),
        "vLLM's log": stack.logs_tail(container, 100000),
        "rendered files": "\n".join(p.read_text(errors="replace") for p in root.rglob("*")
                                    if p.is_file() and p.name != ".env" and p.suffix != ".whl"),
        "show output": subprocess.run([sys.executable, "-m", "deploy", "show", str(profile)],
                                      capture_output=True, text=True).stdout,
        "files in git": subprocess.run(["git", "grep", "-I", "-c", key], cwd=REPO, capture_output=True, text=True).stdout,
    }
    assert "[0-9]" not in places["/proc/*/cmdline in the container"] and "vllm" in places["/proc/*/cmdline in the container"]
    leaked = [where for where, text in places.items() if key in text]
    assert not leaked
    measured["places checked for the API key"] = ", ".join(places) + ", every image layer (next test)"


def test_key_is_not_in_any_image_layer(running):
    plan, _, _ = running
    key = stack.read_key(stack.stack_for(plan, running[2].parent)).encode()
    saved = subprocess.Popen([stack.docker_cli(), "save", plan.image.reference], stdout=subprocess.PIPE)
    tail, found, total = b"", False, 0
    for chunk in iter(lambda: saved.stdout.read(1 << 22), b""):
        total += len(chunk)
        found = found or key in tail + chunk
        tail = chunk[-len(key):]
    assert saved.wait() == 0 and total > 10**8
    assert not found


def test_env_file_is_git_ignored():
    paths = ["compose/tiny-cpu/.env", "k8s/tiny-cpu/secrets.env"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == paths


def test_load_of_500_image_requests_at_concurrency_8(running, root, measured):
    """URL and base64 images mixed: no errors, /health 200 throughout, latency percentiles printed."""
    import base64
    import statistics
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from smoke_tests.image_server import IMAGE_PATH, ImageServer, generated_jpeg

    plan, _, _ = running
    s = stack.stack_for(plan, root)
    key = stack.read_key(s)
    gateway = stack.compose_gateway(s)
    data_url = "data:image/jpeg;base64," + base64.b64encode(generated_jpeg()).decode()
    health_failures, stop = [], threading.Event()

    def watch_health():
        while not stop.is_set():
            try:
                if requests.get(f"{s.endpoint}/health", timeout=5).status_code != 200:
                    health_failures.append("status")
            except requests.RequestException as exc:
                health_failures.append(str(exc))
            stop.wait(0.5)

    with ImageServer(gateway, gateway, 0) as images:
        def one(i: int) -> tuple[int, float]:
            url = images.url(IMAGE_PATH) if i % 2 else data_url
            body = {"model": plan.served_model_name, "max_tokens": 4, "temperature": 0,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "请描述这张图片"},
                                                              {"type": "image_url", "image_url": {"url": url}}]}]}
            started = time.monotonic()
            with requests.Session() as session:
                status = session.post(f"{s.endpoint}/v1/chat/completions", json=body, timeout=120,
                                      headers={"Authorization": f"Bearer {key}"}).status_code
            return status, time.monotonic() - started

        watcher = threading.Thread(target=watch_health)
        watcher.start()
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(500)))
        wall = time.monotonic() - started
        stop.set()
        watcher.join()
    statuses = [status for status, _ in results]
    latencies = sorted(seconds for _, seconds in results)
    assert statuses.count(200) == 500, {code: statuses.count(code) for code in set(statuses)}
    assert not health_failures
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    measured["500 image requests at concurrency 8 (container)"] = (
        f"{500 / wall:.1f} req/s, p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, 0 errors, "
        f"/health polled every 0.5 s: 0 failures")


def test_killed_vllm_is_restarted_healthy(running, root, measured):
    plan, _, _ = running
    s = stack.stack_for(plan, root)
    container = stack.running_container(s)
    restarts = json.loads(docker("inspect", container))[0]["RestartCount"]
    # vLLM's API server is the init process's child: kill it as an OOM killer would.
    subprocess.run([stack.docker_cli(), "exec", container, "python3", "-c",
                    "import os, signal\n"
                    "for pid in os.listdir('/proc'):\n"
                    "    if pid.isdigit() and b'serve' in open(f'/proc/{pid}/cmdline', 'rb').read() and int(pid) > 1:\n"
                    "        os.kill(int(pid), signal.SIGKILL); break"], check=True)
    started = time.monotonic()
    deadline = started + 180
    while time.monotonic() < deadline:
        state = json.loads(docker("inspect", container))[0]
        if state["RestartCount"] > restarts and state["State"].get("Health", {}).get("Status") == "healthy":
            break
        time.sleep(1)
    else:
        pytest.fail(f"not restarted healthy within 180 s:\n{stack.logs_tail(container)}")
    measured["kill -9 of vLLM to healthy again via restart: unless-stopped (s)"] = round(time.monotonic() - started, 1)
    assert models(plan, root)["id"] == plan.served_model_name


def test_up_twice_is_idempotent(running, root):
    plan, _, profile = running
    plan = resolve(load_profile(str(profile)))
    s = stack.stack_for(plan, root)
    before = stack.running_container(s)
    stack.up(plan, root)
    assert stack.running_container(s) == before  # nothing recreated, nothing rebuilt


def test_down_keeps_volumes(running, root):
    """`down` never deletes a project's volumes (the model and cache volumes of hub profiles)."""
    plan, _, profile = running
    plan = resolve(load_profile(str(profile)))
    volume = f"{plan.name}_model-cache"
    docker("volume", "create", "--label", f"com.docker.compose.project={plan.name}",
           "--label", "com.docker.compose.volume=model-cache", volume)
    try:
        stack.down(plan, root)
        assert volume in docker("volume", "ls", "-q").split()
    finally:
        docker("volume", "rm", volume)
        stack.up(plan, root)


def test_stopped_daemon_is_a_clear_error_before_anything_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    plan = resolve(load_profile("tiny-cpu"))
    with pytest.raises(stack.UserError, match="docker daemon: the Docker daemon does not answer"):
        stack.up(plan, tmp_path)
    assert not (tmp_path / "compose").exists()
