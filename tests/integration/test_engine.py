"""A real vLLM (CPU build) started with the argv of `resolve(tiny-cpu)` answers the whole smoke suite.

The server is a host process from the engine venv (ENGINE_PYTHON, set by `make test`; launched with the session
by tests/integration/conftest.py's `host_vllm`, so this module runs last and finds it loaded), serving the
tiny fabricated VLM (the session's `tiny_model`, tests/integration/conftest.py: built once, as the CPU image's
build step builds it) on a free 127.0.0.1 port with a random key, and the plan's generation config from
a scratch directory (the container mounts the same file). Its log is printed when a test fails.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.plan import Plan, resolve
from deploy.runtime.net import wait_for_http
from deploy.runtime.smoke import plan_options, run_suite
from deploy.spec import load_profile
from tests.conftest import REPO
from tests.integration.conftest import HostVllm
from tests.tools import routes

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
    plan: Plan


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
def server(host_vllm: HostVllm | None):
    """The session's host vLLM (tests/integration/conftest.py: launched with the session), once it answers."""
    assert host_vllm is not None
    assert host_vllm.plan.environment["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    try:
        wait_for_http(
            f"{host_vllm.base_url}/health", READY_DEADLINE_SECONDS, alive=lambda: host_vllm.process.poll() is None
        )
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"vLLM not ready ({exc}):\n{host_vllm.log.read_text()[-6000:]}")
    ready = host_vllm.ready_seconds or time.monotonic() - host_vllm.started
    return Server(
        host_vllm.base_url,
        host_vllm.key,
        host_vllm.plan.served_model_name,
        host_vllm.log,
        host_vllm.process.pid,
        ready,
        host_vllm.plan,
    )


def test_server_argv_carries_no_key(server):
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    assert server.api_key.encode() not in b" ".join(cmdline)
    assert b"--api-key" not in cmdline
    assert server.api_key not in server.log.read_text(errors="replace")


def test_every_route_of_the_servers_own_table_needs_the_key(server, measured):
    """vLLM checks its key on /v1… only; with the middleware, every route of its own table but /health and
    /metrics answers 401 without the key or with a wrong one, and not 401 with the right one."""
    from deploy.assets.edge.vllm_deploy_edge import PUBLIC

    found = routes.report(server.base_url, server.api_key)
    measured["engine routes in vLLM's own table (called without, with a wrong and with the right key)"] = found[
        "routes"
    ]
    assert found["routes"] >= 20, found
    assert {"/invocations", "/tokenize"} <= {row["path"] for row in found["rows"]}
    assert routes.lock_problems(found, PUBLIC) == []


def test_smoke_suite_passes_against_the_real_server(server, measured):
    """The whole suite against the real server: every case passes, none skipped; figures recorded."""
    started = time.monotonic()
    # NB: the options `vllm-deploy smoke` derives from the plan (stop ids, image limit, server-side stop ids, the
    # image-token estimate), with the local image server on loopback.
    options = plan_options(server.plan, server.base_url, "127.0.0.1")
    code, cases, output = run_suite(
        [*options, "--redirect-host", "localhost", "--server-log", str(server.log)],
        key=server.api_key,
        ready=server.plan.health.start_period_seconds,
    )
    wall = time.monotonic() - started
    assert code == 0, output[-6000:] + server.log.read_text(errors="replace")[-6000:]
    assert {c.status for c in cases} == {"passed"}
    names = " ".join(c.name for c in cases)
    for expected in (
        "health",
        "models",
        "url",
        "base64",
        "stream",
        "stop",
        "key",
        "seed_snippet",
        "model",
        "redirect_off_the_media_allowlist",
        "server_stop_ids_apply_without_extra_body",
        "large_image_is_served_within_its_token_bound",
        "image_limit_of_large_images",
    ):
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


def chat(server: Server, body: dict) -> dict:
    import requests

    resp = requests.post(
        f"{server.base_url}/v1/chat/completions",
        json={"model": server.model, "temperature": 0, **body},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_the_server_stops_at_the_profiles_stop_id_that_the_model_does_not_know(server, tiny_model):
    """<end_of_utterance> (151648) is a stop id of the tiny-cpu profile only: the tiny model's own generation config
    and tokenizer end elsewhere. Forced with logit_bias in a request that sends no stop ids, it ends the answer."""
    from smoke_tests.image_server import generated_jpeg
    from smoke_tests.support import data_url, user_message

    own = json.loads((tiny_model / "generation_config.json").read_text())["eos_token_id"]
    tokenizer = json.loads((tiny_model / "tokenizer_config.json").read_text())
    added = {t["id"]: t["content"] for t in json.loads((tiny_model / "tokenizer.json").read_text())["added_tokens"]}
    assert added[151648] == "<end_of_utterance>"
    assert 151648 not in own and tokenizer["eos_token"] != "<end_of_utterance>", (own, tokenizer["eos_token"])
    assert 151648 in server.plan.smoke.server_stop_token_ids
    body = {"messages": user_message(data_url(generated_jpeg())), "max_tokens": 16, "logit_bias": {"151648": 100}}
    stopped = chat(server, body)["choices"][0]
    assert (stopped["finish_reason"], stopped["stop_reason"]) == ("stop", 151648), stopped
    # The same request with ignore_eos: vLLM then leaves the generation config's ids out, and nothing stops it.
    control = chat(server, {**body, "ignore_eos": True})
    assert (control["choices"][0]["finish_reason"], control["usage"]["completion_tokens"]) == ("length", 16), control
    # The profile's max-tokens is the server's default: a request that sets none (like the guide's) gets 32.
    default = chat(server, {"messages": user_message(data_url(generated_jpeg())), "ignore_eos": True})
    assert default["usage"]["completion_tokens"] == 32, default


def test_a_4000x3000_image_costs_at_most_the_plans_estimate(server, measured):
    from smoke_tests.image_server import large_jpeg
    from smoke_tests.support import data_url, user_message

    with_image = chat(server, {"messages": user_message(data_url(large_jpeg(4000, 3000))), "max_tokens": 1})
    text_only = chat(server, {"messages": user_message(), "max_tokens": 1})
    cost = with_image["usage"]["prompt_tokens"] - text_only["usage"]["prompt_tokens"]
    estimate = server.plan.vision.image_prompt_tokens
    measured["tiny-cpu: prompt tokens of one 4000x3000 image (measured / estimated)"] = f"{cost} / {estimate}"
    assert 0 < cost <= estimate
    assert cost >= estimate - 2, "the estimate should be tight: markers merged by the tokenizer at most"


def test_smoke_command_prints_a_table(server, cli):
    """`vllm-deploy smoke --base-url … --api-key …` against the running server."""
    # NB: --local-image-server: without it the suite fetches the guide's internet image.
    result = cli(
        "smoke",
        "--base-url",
        server.base_url,
        "--api-key",
        server.api_key,
        "--local-image-server",
        "--",
        "-k",
        "health or models",
    )
    assert result.code == 0, result.err
    assert "test_health" in result.out and "passed" in result.out and "failed" not in result.out
    wrong = cli(
        "smoke", "--base-url", server.base_url, "--api-key", "wrong-key", "--local-image-server", "--", "-k", "models"
    )
    assert wrong.code == 1


def test_init_on_the_fabricated_tiny_model_drafts_a_profile_that_renders(tiny_model, tmp_path, cli):
    """`vllm-deploy init` on the model the engine serves (not the trimmed fixture): tiny-cpu's stop ids and max-tokens."""
    import yaml

    target = tmp_path / "tiny.yaml"
    result = cli("init", str(tiny_model), "--device", "cpu", "-o", str(target))
    assert result.code == 0, result.err
    data = yaml.safe_load(target.read_text())
    tiny_cpu = resolve(load_profile("tiny-cpu"))
    assert tiny_cpu.generation is not None
    assert data["generation"]["stop-token-ids"] == tiny_cpu.smoke.server_stop_token_ids == [151645, 151643, 151648]
    assert data["generation"]["max-tokens"] == tiny_cpu.generation.config["max_new_tokens"] == 32
    assert data["model"]["architecture"] == "Idefics3ForConditionalGeneration"
    assert data["engine"]["trust-remote-code"] is False
    assert cli("render", str(target), "--out", str(tmp_path / "out")).code == 0
