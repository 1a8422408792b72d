"""`vllm-deploy up` for real: Docker Compose v2 builds and starts the CPU profile; the smoke suite
passes against the container; runtime-only changes and down/up rebuild nothing.

The stack is a copy of tiny-cpu under its own name and a free port, rendered into a temporary root,
so a developer's own `make up` stack is never touched. Container logs print on failure. The tests
that only look come first; the lifecycle tests at the end change the stack (a hung engine, then one
down/up cycle with a new key and settings) and run last, in file order, each reading the state it needs
afresh. Each engine cold start costs about half a minute on 2 cores: the module makes three (up, the
restart after the hang, the up after down).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from deploy.bench.hang import hang_and_recover
from deploy.bench.load import image_urls_for, load
from deploy.errors import UserError
from deploy.plan import resolve
from deploy.plan.engine import HANG_VARIABLES
from deploy.runtime import images
from deploy.runtime.docker import docker_cli
from deploy.runtime.net import free_port
from deploy.runtime.smoke import plan_options, run_suite
from deploy.runtime.stack import Stack, down, up
from deploy.spec import load_profile
from deploy.spec.variant import write_variant
from deploy.targets import compose_plan
from tests.conftest import REPO, print_logs_if_failed
from tests.tools import routes

pytestmark = [pytest.mark.docker, pytest.mark.slow]
NAME = "tiny-cpu-stack-test"


def docker(*args: str) -> str:
    return subprocess.run([docker_cli(), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="module")
def running(root):
    profile = write_variant("tiny-cpu", root / "profile.yaml", {"name": NAME, "server": {"port": free_port()}})
    stack = Stack(resolve(load_profile(str(profile))), root)
    # NB: a throwaway stack: volumes left by an earlier run (another image, another uid) must not leak in.
    subprocess.run([docker_cli(), "volume", "rm", "-f", f"{NAME}_cache"], capture_output=True)
    try:
        result = up(stack)
        yield stack, result, profile
    finally:
        down(stack, remove_volumes=True)


@pytest.fixture(autouse=True)
def container_logs_on_failure(request):
    yield
    print_logs_if_failed(request, "running", 150, stack_of=lambda found: found[0])


def models(stack: Stack) -> dict:
    response = requests.get(
        f"{stack.endpoint}/v1/models", headers={"Authorization": f"Bearer {stack.key()}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()["data"][0]


def test_up_is_healthy_on_loopback_with_a_generated_key(running, measured):
    stack, result, _ = running
    measured["compose up: build (s), steps run, start to healthy (s)"] = (
        f"{result.build_seconds}, {result.build_steps_run}, {result.healthy_seconds}"
    )
    state = stack.docker.inspect(stack.container())
    assert state["State"]["Health"]["Status"] == "healthy"
    bindings = state["HostConfig"]["PortBindings"]["8000/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(stack.plan.port)}]
    assert stack.env_file.stat().st_mode & 0o777 == 0o600
    key = stack.key()
    assert key and key.startswith("sk-") and len(key) > 40
    # The key reaches vLLM through its environment only: not in the command line or entrypoint.
    config = state["Config"]
    assert key not in json.dumps([config["Cmd"], config["Entrypoint"], state["Args"], state["Path"]])
    assert config["Cmd"] == stack.plan.argv and config["Entrypoint"] == stack.plan.entrypoint
    assert models(stack)["id"] == stack.plan.served_model_name


def test_every_route_on_the_published_port_needs_the_key(running, measured):
    """The user's shape: the compose service's published port, the entrypoint's middleware mounted from a compose
    config. Every route of vLLM's own table but /health and /metrics answers 401 without the key."""
    from deploy.assets.edge.vllm_deploy_edge import PUBLIC

    stack, _, _ = running
    found = routes.report(stack.endpoint, stack.key())
    measured["compose: routes in vLLM's own table, each called three ways"] = found["routes"]
    assert found["routes"] >= 20 and routes.lock_problems(found, PUBLIC) == []


def test_the_container_runs_with_a_read_only_root(running):
    stack, _, _ = running
    assert stack.docker.inspect(stack.container())["HostConfig"]["ReadonlyRootfs"] is True
    write = subprocess.run(
        [
            docker_cli(),
            "exec",
            stack.container(),
            "sh",
            "-c",
            'touch /opt/x; echo "root $?"; touch "$HOME/x" /tmp/x && echo "home and tmp 0"',
        ],
        capture_output=True,
        text=True,
    )
    assert "root 1" in write.stdout and "home and tmp 0" in write.stdout, write.stdout + write.stderr
    assert "Read-only file system" in write.stderr
    # Nothing can write bytecode at run time: the build compiled every module of the serving path's folders (vLLM's,
    # its OpenAI server's) and only those (a model vLLM does not serve here: BERT's code in transformers).
    site = "/opt/venv/lib/python3.11/site-packages"
    count = 'for d in "$@"; do echo "$(ls "$d"/*.py | wc -l)/$(ls "$d"/__pycache__/*.pyc 2>/dev/null | wc -l)"; done'
    folders = ["vllm", "vllm/entrypoints/openai", "transformers/models/bert"]
    compiled = subprocess.run(
        [docker_cli(), "exec", stack.container(), "sh", "-c", count, "-", *(f"{site}/{f}" for f in folders)],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    modules = [tuple(map(int, pair.split("/"))) for pair in compiled]
    assert len(modules) == 3 and modules[0][0] > 20 and modules[1][0] > 0, compiled
    assert modules[0][0] == modules[0][1] and modules[1][0] == modules[1][1] and modules[2][1] == 0, compiled


def test_an_empty_key_stops_the_compose_service_within_seconds(running, measured):
    """vLLM would serve /v1 without auth on an empty key; the compose file's entrypoint refuses to start."""
    stack, _, _ = running
    started = time.monotonic()
    done = stack.compose("run", "--rm", "--no-deps", "-e", "VLLM_API_KEY=", "vllm", timeout=60)
    measured["empty key to exit 78 (compose run) (s)"] = round(time.monotonic() - started, 1)
    assert done.returncode == 78, done.stdout + done.stderr
    assert "vllm-deploy: VLLM_API_KEY is empty or unset; refusing to start" in done.stderr


def test_an_empty_key_stops_the_image_run_by_hand(running, measured):
    """`docker run IMAGE` with the image's own ENTRYPOINT, through testcontainers: exit 78 and one line."""
    from testcontainers.core.container import DockerContainer

    stack, _, _ = running
    started = time.monotonic()
    with DockerContainer(stack.plan.image.reference).with_env("VLLM_API_KEY", "") as container:
        exit_code = container.get_wrapped_container().wait(timeout=60)["StatusCode"]
        stdout, stderr = container.get_logs()
    measured["empty key to exit 78 (docker run) (s)"] = round(time.monotonic() - started, 1)
    assert exit_code == 78
    assert b"vllm-deploy: VLLM_API_KEY is empty or unset; refusing to start" in stderr


def test_smoke_suite_passes_against_the_container(running):
    stack, _, _ = running
    options = plan_options(stack.plan, stack.endpoint, stack.docker.gateway(stack.container()))
    code, cases, output = run_suite(options, key=stack.key(), ready=stack.plan.health.start_period_seconds)
    assert code == 0, output[-6000:]
    assert {c.status for c in cases} == {"passed"}
    names = {c.name for c in cases}
    assert {"test_chat::test_image_by_url", "test_chat::test_image_as_base64_matches_url"} <= names
    assert "test_seed_snippets::test_seed_snippet_runs[image-url]" in names  # parametrized ids survive


def test_up_refuses_a_busy_port_before_building(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        profile = write_variant(
            "tiny-cpu", tmp_path / "busy.yaml", {"name": "busy-port-test", "server": {"port": busy.getsockname()[1]}}
        )
        with pytest.raises(UserError, match=r"port: 127.0.0.1:\d+ is already in use"):
            up(Stack(resolve(load_profile(str(profile))), tmp_path))
    assert not (tmp_path / "compose").exists()  # nothing rendered, nothing built


def test_stopped_daemon_is_a_clear_error_before_anything_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    with pytest.raises(UserError, match="docker daemon: the Docker daemon does not answer"):
        up(Stack(resolve(load_profile("tiny-cpu")), tmp_path))
    assert not (tmp_path / "compose").exists()


# ---------------------------------------------------------------------------------------------
# Secrets, load and faults against the running container


def test_key_appears_nowhere_but_the_env_file(running, measured):
    stack, _, profile = running
    key = stack.key()
    container = stack.container()
    state = stack.docker.inspect(container)
    places = {
        "docker inspect Cmd/Args/Entrypoint/Path": json.dumps(
            [state["Config"]["Cmd"], state["Config"]["Entrypoint"], state["Args"], state["Path"]]
        ),
        "/proc/*/cmdline in the container": subprocess.run(
            [docker_cli(), "exec", container, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\\\0' ' '"],
            capture_output=True,
            text=True,
        ).stdout,
        "image history": docker("history", "--no-trunc", stack.plan.image.reference),
        "image config": docker("image", "inspect", stack.plan.image.reference),
        "vLLM's log": stack.docker.logs(container, 100000),
        "rendered files": "\n".join(
            p.read_text(errors="replace")
            for p in stack.root.rglob("*")
            if p.is_file() and p.name != ".env" and p.suffix != ".whl"
        ),
        "show output": subprocess.run(
            [sys.executable, "-m", "deploy", "show", str(profile)], capture_output=True, text=True
        ).stdout,
        "files in git": subprocess.run(
            ["git", "grep", "-I", "-c", key], cwd=REPO, capture_output=True, text=True
        ).stdout,
    }
    cmdlines = places["/proc/*/cmdline in the container"]
    assert "[0-9]" not in cmdlines and "vllm" in cmdlines
    assert not [where for where, text in places.items() if key in text]
    measured["places checked for the API key"] = ", ".join(places) + ", every image layer (next test)"


def layer_directories(reference: str) -> list[str]:
    """The image's layers as the overlay2 driver keeps them on disk (each layer's own files), or [] elsewhere."""
    state = json.loads(docker("image", "inspect", reference))[0]["GraphDriver"]
    if state["Name"] != "overlay2":
        return []
    found = [d for key in ("LowerDir", "UpperDir") for d in state["Data"].get(key, "").split(":") if d]
    return found if all(Path(d).is_dir() for d in found) else []


def test_key_is_not_in_any_image_layer(running):
    """Every file of every layer is searched: the layer directories with grep where the daemon keeps them
    (overlay2, readable here: seconds), else the whole `docker save` stream (about 40 s for 2.7 GB)."""
    stack, _, _ = running
    key, reference = stack.key(), stack.plan.image.reference
    directories = layer_directories(reference)
    if directories:

        def grep(text: str) -> int:
            return subprocess.run(["grep", "-rqF", text, *directories], capture_output=True).returncode

        assert grep("class KeyOnEveryRoute") == 0  # the search sees the layers: our edge module is found
        assert grep(key) == 1  # 1: not found (2 would be an error)
        return
    saved = subprocess.Popen([docker_cli(), "save", reference], stdout=subprocess.PIPE)
    tail, found, total = b"", False, 0
    assert saved.stdout is not None
    stdout, needle = saved.stdout, key.encode()
    for chunk in iter(lambda: stdout.read(1 << 22), b""):
        total += len(chunk)
        found = found or needle in tail + chunk
        tail = chunk[-len(needle) :]
    assert saved.wait() == 0 and total > 10**8
    assert not found


def test_load_of_500_image_requests_at_concurrency_8(running, measured):
    """URL and base64 images mixed: no errors, /health 200 throughout, latency percentiles recorded."""
    import threading

    from smoke_tests.image_server import IMAGE_PATH, ImageServer

    stack, _, _ = running
    gateway = stack.docker.gateway(stack.container())
    health_failures, stop = [], threading.Event()

    def watch_health():
        while not stop.is_set():
            try:
                if requests.get(f"{stack.endpoint}/health", timeout=5).status_code != 200:
                    health_failures.append("status")
            except requests.RequestException as exc:
                health_failures.append(str(exc))
            stop.wait(0.5)

    watcher = threading.Thread(target=watch_health)
    watcher.start()
    try:
        with ImageServer(gateway, gateway, 0) as images_server:
            result = load(
                stack.endpoint,
                stack.key(),
                stack.plan.served_model_name,
                8,
                500,
                image_urls_for(images_server.url(IMAGE_PATH)),
            )
    finally:
        stop.set()
        watcher.join()
    assert result.errors == 0 and result.requests == 500
    assert not health_failures
    measured["500 image requests at concurrency 8 (container)"] = (
        f"{result.requests_per_second:.1f} req/s, p50 {result.p50_ms:.0f} ms, p95 {result.p95_ms:.0f} ms, "
        "0 errors, /health polled every 0.5 s: 0 failures"
    )


# ---------------------------------------------------------------------------------------------
# Lifecycle: these change the stack, so they come last


def test_a_hung_engine_is_noticed_and_replaced_with_no_command(running, measured):
    """SIGSTOP to vLLM's engine core and its workers: its API process stays up (vLLM's own /health would stay
    200), EngineWatch turns /health to 503 and the hung gauge to 1, then the server exits and compose's restart
    policy starts a fresh one, which serves: no command given. (The exit is what a crash is to compose: this is
    also the proof that a server that dies comes back by itself.)"""
    stack, _, _ = running
    container = stack.container() or ""
    restarts = stack.docker.state(container).restarts
    server = stack.plan.environment
    hung_metrics: list[str] = []

    def restarted() -> bool:
        state = stack.docker.state(container)
        return bool(state and state.restarts > restarts and state.health == "healthy")

    def watch_gauge() -> None:  # NB: /metrics answers while hung: the API process is up
        try:
            text = requests.get(f"{stack.endpoint}/metrics", timeout=2).text
            hung_metrics.extend(line for line in text.splitlines() if line.startswith("vllm_deploy_engine_hung "))
        except requests.RequestException:
            pass

    # Bound: the window and the probe's timeout, between two health checks; then the exit delay and a cold start.
    bound = sum(int(server[v]) for v in HANG_VARIABLES.values()) + stack.plan.health.start_period_seconds
    figures = hang_and_recover(stack.endpoint, container, restarted, timeout=bound, during=watch_gauge)
    measured["hung engine core: /health 503 after (s), serving again after (s)"] = (
        f"{figures['detected_after_s']}, {figures['serving_again_after_s']}"
    )
    assert "vllm_deploy_engine_hung 1.0" in hung_metrics, hung_metrics
    assert models(stack)["id"] == stack.plan.served_model_name
    reply = requests.post(
        f"{stack.endpoint}/v1/completions",
        headers={"Authorization": f"Bearer {stack.key()}"},
        json={"prompt": "ok", "max_tokens": 2},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text


def test_down_keeps_volumes_and_up_with_runtime_only_changes_rebuilds_nothing(running):
    """One down/up cycle: `down` keeps the project's volumes (the model and cache volumes of hub profiles);
    `up` with only runtime settings changed (max-model-len, dtype, gpu-memory-utilization, the key, the mounted
    generation config) reuses the image, every build step a cache hit, and the new settings are live."""
    stack, result, profile = running
    volume = f"{stack.plan.name}_model-cache"
    docker(
        "volume",
        "create",
        "--label",
        f"com.docker.compose.project={stack.plan.name}",
        "--label",
        "com.docker.compose.volume=model-cache",
        volume,
    )
    try:
        down(stack)
        assert stack.container() is None
        assert volume in docker("volume", "ls", "-q").split()
    finally:
        docker("volume", "rm", volume)
    write_variant(
        "tiny-cpu",
        profile,
        {
            "name": NAME,
            "server": {"port": stack.plan.port},
            "engine": {"max-model-len": 1024, "dtype": "float32", "gpu-memory-utilization": 0.5},
            "generation": {"max-tokens": 8},
        },
    )
    stack.env_file.write_text(stack.env_file.read_text().replace("VLLM_API_KEY=sk-", "VLLM_API_KEY=sk-changed-"))
    changed = Stack(resolve(load_profile(str(profile))), stack.root)
    assert changed.plan.image.reference == stack.plan.image.reference
    assert changed.plan.generation is not None
    assert compose_plan(changed.plan).generation_config != compose_plan(stack.plan).generation_config
    run, total = images.build(changed.plan, changed.compose, echo=False)
    assert run == 0 and total >= 3  # every RUN/COPY step a cache hit
    again = up(changed)
    assert again.build_steps_run == 0
    assert again.image == result.image
    assert models(changed)["max_model_len"] == 1024  # the new argv is live
    assert (changed.key() or "").startswith("sk-changed-")
    # The new generation config is live: a request without max_tokens gets the profile's 8.
    answer = requests.post(
        f"{changed.endpoint}/v1/chat/completions",
        headers={"Authorization": f"Bearer {changed.key()}"},
        json={
            "model": changed.plan.served_model_name,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 8


def test_up_twice_is_idempotent(running):
    stack, _, profile = running
    current = Stack(resolve(load_profile(str(profile))), stack.root)
    before = current.container()
    up(current)
    assert current.container() == before  # nothing recreated, nothing rebuilt
