"""A real vLLM (CPU build) started with the argv of `resolve(tiny-cpu)` answers the whole smoke suite.

The server is a host process from the engine venv (ENGINE_PYTHON, set by `make test`), serving the
tiny fabricated VLM on a free 127.0.0.1 port with a random key. Its log is printed when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.plan import host_command, host_environment, resolve
from deploy.spec import load_profile
from deploy.spec.variant import write_variant
from deploy.runtime.smoke import run_suite
from deploy.runtime.net import free_port, wait_for_http
from tests.conftest import REPO

pytestmark = [pytest.mark.engine, pytest.mark.slow]
READY_DEADLINE_SECONDS = 300
FIGURES = REPO / ".work" / "engine-figures.json"


def engine_python() -> Path:
    value = os.environ.get("ENGINE_PYTHON")
    if not value or not Path(value).exists():
        pytest.fail("ENGINE_PYTHON must name the engine venv's python: run `make test`, which creates .venv-engine")
    return Path(value)


@dataclass
class Server:
    base_url: str
    api_key: str
    model: str
    log: Path
    pid: int
    ready_seconds: float


def process_tree_peak_rss_mib(pid: int) -> float:
    """Sum of VmHWM (peak resident memory) over the server and its children (vLLM's engine core)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pending = children.read_text().split()
        while pending:
            child = int(pending.pop())
            pids.append(child)
            grand = Path(f"/proc/{child}/task/{child}/children")
            pending += grand.read_text().split() if grand.exists() else []
    total_kib = 0
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kib += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total_kib / 1024


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny-vlm"
    # The same invocation as the CPU image's build step.
    subprocess.run([str(engine_python()), str(REPO / "deploy" / "assets" / "tiny_model.py"), str(out)], check=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("vllm")
    # tiny-cpu with a media allowlist (the local image server's address): redirects are then off.
    variant = write_variant("tiny-cpu", scratch / "profile.yaml", {"media": {"allowed-domains": ["127.0.0.1"]}})
    plan = resolve(load_profile(str(variant)))
    assert plan.environment["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    port = free_port()
    log = scratch / "vllm.log"
    key = "sk-" + secrets.token_hex(16)
    # NB: the plan's engine flags with the host's model path, host and port; nothing else changes.
    command = host_command(plan, str(engine_python().parent / "vllm"), str(tiny_model), "127.0.0.1", port)
    env = {
        "PATH": f"{engine_python().parent}:/usr/bin:/bin",
        **host_environment(plan, str(scratch)),
        "VLLM_API_KEY": key,
    }
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_http(f"{base_url}/health", READY_DEADLINE_SECONDS, alive=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"vLLM not ready ({exc}):\n{log.read_text()[-6000:]}")
        yield Server(base_url, key, plan.served_model_name, log, process.pid, time.monotonic() - started)
    finally:
        process.terminate()  # only the process we started, by its handle
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_server_argv_carries_no_key(server):
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    assert server.api_key.encode() not in b" ".join(cmdline)
    assert b"--api-key" not in cmdline
    assert server.api_key not in server.log.read_text(errors="replace")


def test_smoke_suite_passes_against_the_real_server(server, measured):
    """The whole suite against the real server: every case passes, none skipped; figures recorded."""
    started = time.monotonic()
    code, cases, output = run_suite(["--base-url", server.base_url, "--api-key", server.api_key, "--redirect-host",
                                     "localhost",
                                     "--local-image-server", "--server-log", str(server.log)])
    wall = time.monotonic() - started
    assert code == 0, output[-6000:] + server.log.read_text(errors="replace")[-6000:]
    assert {c.status for c in cases} == {"passed"}
    names = " ".join(c.name for c in cases)
    for expected in ("health", "models", "url", "base64", "stream", "stop", "key", "seed_snippet", "model",
                     "redirect_off_the_media_allowlist"):
        assert expected in names, expected
    figures = {
        "time_to_ready_seconds": round(server.ready_seconds, 2),
        "suite_wall_seconds": round(wall, 2),
        "peak_rss_mib": round(process_tree_peak_rss_mib(server.pid), 1),
        "cases": {c.name: round(c.seconds, 3) for c in cases},
    }
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=2))
    measured["host vLLM time-to-ready (s)"] = figures["time_to_ready_seconds"]
    measured["host vLLM peak RSS, server + engine core (MiB)"] = figures["peak_rss_mib"]
    measured["smoke suite wall against the host vLLM (s)"] = figures["suite_wall_seconds"]
    measured["smoke case latencies (s)"] = json.dumps(figures["cases"])


def test_smoke_command_prints_a_table(server, cli):
    """`vllm-deploy smoke --base-url … --api-key …` against the running server."""
    # NB: --local-image-server: without it the suite fetches the guide's internet image.
    result = cli("smoke", "--base-url", server.base_url, "--api-key", server.api_key, "--local-image-server",
                 "--", "-k", "health or models")
    assert result.code == 0, result.err
    assert "test_health" in result.out and "passed" in result.out and "failed" not in result.out
    wrong = cli("smoke", "--base-url", server.base_url, "--api-key", "wrong-key", "--local-image-server",
                "--", "-k", "models")
    assert wrong.code == 1
