"""`make bench`: every figure of BENCHMARKS.md, measured on the tiny-cpu profile on this machine.

Runs under its own compose project (tiny-cpu-bench, a free port) so a developer's `make up` stack is
left alone. The baseline for ratios is a bare `vllm serve` host process from the engine venv with
the same flags, the same (deterministically fabricated) model and the same environment.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deploy.bench import load, replicas
from deploy.bench.baseline import HEALTH_DEADLINE_SECONDS, BareServer
from deploy.bench.cgroup import Cgroup, client_cgroup
from deploy.bench.hub_server import fetch_throughput, hub_from_an_empty_volume
from deploy.bench.report import REQUESTS_PER_LEVEL, report
from deploy.paths import ASSETS_DIR, BUILD_ASSETS
from deploy.plan import resolve
from deploy.render import render, write_files
from deploy.runtime import envfile, images
from deploy.runtime.docker import docker_cli
from deploy.runtime.net import free_port, wait_for_http
from deploy.runtime.smoke import plan_options, run_suite
from deploy.runtime.stack import Stack, down, prepare
from deploy.spec import load_profile
from deploy.spec.variant import write_variant

NAME = "tiny-cpu-bench"
REPEATS = 3
LEVELS = [1, 4, 8]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory_gib": f"{mem_kib / 2**20:.1f}",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }


def timed(command: list[str], repeat: int = 5) -> float:
    """Median wall seconds of a command."""
    runs = []
    for _ in range(repeat):
        started = time.monotonic()
        subprocess.run(command, check=True, capture_output=True)
        runs.append(time.monotonic() - started)
    return round(statistics.median(runs), 3)


def variant(work: Path, port: int, **engine_changes) -> Stack:
    profile = write_variant(
        "tiny-cpu", work / "profile.yaml", {"name": NAME, "server": {"port": port}, "engine": engine_changes}
    )
    return Stack(resolve(load_profile(str(profile))), work)


def start_container(stack: Stack) -> float:
    """`compose up` of the built image to /health answering, in seconds."""
    started = time.monotonic()
    stack.compose("up", "-d", "--no-build", "vllm").checked("docker compose up")
    wait_for_http(f"{stack.endpoint}/health", HEALTH_DEADLINE_SECONDS, interval=0.1)
    return time.monotonic() - started


def first_image_request(stack: Stack, key: str) -> float:
    started = time.monotonic()
    result = load.load(stack.endpoint, key, stack.plan.served_model_name, 1, 1, load.image_urls_for(None))
    if result.errors:
        raise RuntimeError("the first image request failed")
    return time.monotonic() - started


def image_breakdown(tag: str) -> dict:
    docker = docker_cli()
    size = int(
        subprocess.run(
            [docker, "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True, text=True, check=True
        ).stdout
    )
    history = subprocess.run(
        [docker, "history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    layers = []
    for line in history:
        layer_size, created_by = line.split("\t", 1)
        if int(layer_size) > 1_000_000:
            layers.append({"mb": round(int(layer_size) / 1e6), "step": " ".join(created_by.split())[:110]})
    du = subprocess.run(
        [
            docker,
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            tag,
            "-c",
            "du -sk /opt/venv/lib/python3*/site-packages/* | sort -rn | head -12",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    packages = [
        {"mb": round(int(kib) * 1024 / 1e6), "package": Path(path).name}
        for kib, path in (line.split("\t", 1) for line in du)
    ]
    return {"image_gb": round(size / 1e9, 2), "layers": layers, "packages": packages}


def plot(path: Path, arms: dict[str, tuple[list[load.LoadResult], list[load.LoadResult]]]) -> None:
    """p50 and p95 against concurrency, container and bare process; one panel per way the client ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(arms), figsize=(6 * len(arms), 4), dpi=120, sharey=True)
    for axis, (title, (container, bare)) in zip(axes, arms.items(), strict=True):
        for results, label, style in ((container, "container", "-"), (bare, "bare process", "--")):
            levels = [r.concurrency for r in results]
            axis.plot(levels, [r.p50_ms for r in results], style, marker="o", label=f"{label} p50")
            axis.plot(levels, [r.p95_ms for r in results], style, marker="^", label=f"{label} p95")
        axis.set_xlabel("concurrent clients")
        axis.set_xticks(LEVELS)
        axis.set_title(f"tiny-cpu, {title}")
        axis.grid(alpha=0.3)
        axis.legend()
    axes[0].set_ylabel("latency per image request (ms)")
    figure.tight_layout()
    figure.savefig(path)


def cold(stack: Stack, repo: Path) -> dict:
    """Cold `make up` by step: tool venv, base image, image build with an empty build cache, start, first answer."""
    docker = docker_cli()
    log("cold: tool venv")
    with tempfile.TemporaryDirectory() as scratch:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", f"{scratch}/v"], check=True)
        # As `make venv` does: uv (this venv's, the Makefile's pin), here with no cache of earlier downloads.
        uv = [str(Path(sys.executable).parent / "uv"), "pip", "install", "-q", "--no-cache"]
        subprocess.run([*uv, "--python", f"{scratch}/v/bin/python", str(repo)], check=True, capture_output=True)
        venv_seconds = time.monotonic() - started
    log("cold: base image from Debian packages")
    cold_base = "localhost/vllm-deploy/debian-python:bench-cold"
    subprocess.run([docker, "image", "rm", cold_base], capture_output=True)
    started = time.monotonic()
    subprocess.run(
        ["bash", str(ASSETS_DIR / "base-image.sh"), cold_base],
        check=True,
        capture_output=True,
        env={**os.environ, "WORK_DIR": str(stack.root)},
    )
    base_seconds = time.monotonic() - started
    subprocess.run([docker, "image", "rm", cold_base], capture_output=True)
    log("cold: image build, every step run (--no-cache: the machine's build cache is kept for the next build)")
    subprocess.run([docker, "image", "rm", stack.plan.image.reference], capture_output=True)
    started = time.monotonic()
    steps = prepare(stack, echo=False, no_cache=True)
    build_seconds = time.monotonic() - started
    log("cold: start and first image request")
    healthy = start_container(stack)
    first = first_image_request(stack, stack.key() or "")
    figures = {
        "tool_venv_s": round(venv_seconds, 1),
        "base_image_s": round(base_seconds, 1),
        "image_build_s": round(build_seconds, 1),
        "start_to_healthy_s": round(healthy, 1),
        "first_image_request_s": round(first, 2),
        "build_steps_run": steps,
    }
    figures["total_s"] = round(venv_seconds + base_seconds + build_seconds + healthy + first, 1)
    return figures


def tiny_model(engine_python: Path, work: Path) -> Path:
    """The tiny model on the host (deterministic: the same as in the image), for the bare process and
    as `vllm bench serve`'s tokenizer."""
    model_dir = work / "tiny-vlm"
    subprocess.run(
        [str(engine_python), str(BUILD_ASSETS["tiny_model.py"]), str(model_dir), "--warm-vllm-cache"],
        check=True,
        capture_output=True,
        env={**os.environ, "VLLM_CACHE_ROOT": str(work / "bare-vllm-cache"), "HF_HUB_OFFLINE": "1"},
    )
    return model_dir


CLIENTS = {"host": "load client on the host", "isolated": "load client in its own cgroup"}


def load_summary(container_rounds: list[list[load.LoadResult]], bare_rounds: list[list[load.LoadResult]]) -> dict:
    through_container, through_bare = load.median_results(container_rounds), load.median_results(bare_rounds)
    return {
        "rounds": len(container_rounds),
        "container": load.results_json(through_container),
        "bare": load.results_json(through_bare),
        "rps_ratio": {
            str(c.concurrency): round(c.requests_per_second / b.requests_per_second, 3)
            for c, b in zip(through_container, through_bare, strict=True)
        },
        "rps_by_round": {
            "container": [[r.requests_per_second for r in levels] for levels in container_rounds],
            "bare": [[r.requests_per_second for r in levels] for levels in bare_rounds],
        },
    }


def rounds(stack: Stack, engine_python: Path, figures: dict, repo: Path, cgroup: Cgroup) -> None:
    """Rounds alternating container (image cached) and bare process: time-to-healthy, then load at every
    concurrency level, once with the load client in the root cgroup (on the host, as before) and once in
    a cgroup of its own. Medians over rounds: this machine is noisy."""
    work, plan, key = stack.root, stack.plan, stack.key() or ""
    bare = BareServer(engine_python, plan, tiny_model(engine_python, work), work, key)
    container_starts, bare_starts = [], []
    loads: dict[str, dict[str, list]] = {client: {"container": [], "bare": []} for client in CLIENTS}

    def measure(arm: str, url: str, image_host: str | None) -> None:
        for client, wrap in (("host", list), ("isolated", cgroup.wrap)):
            loads[client][arm].append(
                load.load_levels_apart(
                    url,
                    key,
                    plan.served_model_name,
                    LEVELS,
                    REQUESTS_PER_LEVEL,
                    image_host,
                    work / "load.json",
                    wrap=wrap,
                )
            )

    for number in range(1, REPEATS + 1):
        log(f"round {number}/{REPEATS}: container start and load")
        container_starts.append(start_container(stack))
        gateway = stack.docker.gateway(stack.container() or "")
        measure("container", stack.endpoint, gateway)
        if number == 1:
            log("smoke suite against the warm container")
            started = time.monotonic()
            code, cases, _ = run_suite(plan_options(plan, stack.endpoint, gateway), key=key)
            figures["smoke"] = {
                "wall_s": round(time.monotonic() - started, 2),
                "cases": len(cases),
                "passed": sum(c.status == "passed" for c in cases),
                "exit": code,
            }
        stack.compose("down").checked("docker compose down")
        log(f"round {number}/{REPEATS}: bare process start and load")
        bare_starts.append(bare.start())
        try:
            measure("bare", bare.url, "127.0.0.1")
        finally:
            bare.stop()
    figures["warm_start"] = {
        "container_s": [round(x, 2) for x in container_starts],
        "bare_s": [round(x, 2) for x in bare_starts],
        "ratio": round(statistics.median(container_starts) / statistics.median(bare_starts), 3),
    }
    figures["load"] = load_summary(loads["host"]["container"], loads["host"]["bare"])
    figures["load_isolated"] = load_summary(loads["isolated"]["container"], loads["isolated"]["bare"])
    plot(
        repo / "BENCHMARKS-latency.png",
        {
            CLIENTS[client]: (
                load.median_results(loads[client]["container"]),
                load.median_results(loads[client]["bare"]),
            )
            for client in CLIENTS
        },
    )


def runtime_changes(stack: Stack) -> dict:
    """Layers rebuilt and `up` time after each runtime-only change: none may rebuild."""
    changes: dict[str, dict[str, Any]] = {
        "max-model-len": {"max-model-len": 1024},
        "dtype": {"dtype": "float32"},
        "gpu-memory-utilization": {"gpu-memory-utilization": 0.5},
    }
    rebuilds = {}
    for label, change in [*changes.items(), ("api key", {})]:
        changed = variant(stack.root, stack.plan.port, **change)
        if label == "api key":
            stack.env_file.write_text(f"VLLM_API_KEY=sk-{secrets.token_urlsafe(24)}\n")
        started = time.monotonic()
        write_files(render(changed.plan), stack.root)
        run_steps, total_steps = images.build(changed.plan, changed.compose, echo=False)
        stack.compose("up", "-d", "--no-build", "vllm").checked("docker compose up")
        wait_for_http(f"{stack.endpoint}/health", HEALTH_DEADLINE_SECONDS, interval=0.1)
        rebuilds[label] = {
            "layers_rebuilt": run_steps,
            "steps": total_steps,
            "same_tag": changed.plan.image.reference == stack.plan.image.reference,
            "up_s": round(time.monotonic() - started, 1),
        }
    return rebuilds


class Sections:
    """Runs the sections in order and keeps how long each took (the whole run is long)."""

    def __init__(self, figures: dict):
        self.seconds = figures.setdefault("duration_s", {})

    def __call__(self, name: str, measure, *args):
        started = time.monotonic()
        try:
            return measure(*args)
        finally:
            self.seconds[name] = round(time.monotonic() - started)


def run(engine_python: Path, repo: Path) -> dict:
    work = repo / "bench-out"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    started = time.monotonic()
    figures: dict = {"machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    section = Sections(figures)
    stack = variant(work, free_port())
    subprocess.run([docker_cli(), "volume", "rm", "-f", f"{NAME}_cache"], capture_output=True)
    envfile.ensure_key(stack.plan.api_key_source, stack.env_file)
    cgroup = client_cgroup()
    try:
        try:
            figures["cold"] = section("cold make up", cold, stack, repo)
            figures["image"] = section("image size", image_breakdown, stack.plan.image.reference)
            stack.compose("down").checked("docker compose down")
            section("container and bare rounds", rounds, stack, engine_python, figures, repo, cgroup)
            log("runtime-only changes")
            figures["runtime_changes"] = section("runtime-only changes", runtime_changes, stack)
        finally:
            down(stack, remove_volumes=True)
        figures.update(replicas.measure(work, engine_python.parent / "vllm", work / "tiny-vlm", cgroup, log, section))
    finally:
        cgroup.remove()
    log("fetch throughput against the loopback hub")
    figures["fetch"] = section("fetch", fetch_throughput, work)
    log("hub storage from an empty volume: fetch step, then healthy")
    figures["hub_up"] = section("hub storage from an empty volume", hub_from_an_empty_volume, work)
    log("CLI timings")
    with tempfile.TemporaryDirectory() as scratch:
        figures["cli"] = section(
            "CLI",
            lambda: {
                "startup_s": timed([sys.executable, "-m", "deploy", "--help"]),
                "render_all_s": timed([sys.executable, "-m", "deploy", "render", "--all", "--out", scratch]),
            },
        )
    figures["duration_s"]["total"] = round(time.monotonic() - started)
    return figures


def main(engine_python: Path, repo: Path) -> int:
    figures = run(engine_python, repo)
    (repo / "BENCHMARKS.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (repo / "BENCHMARKS.md").write_text(report(figures), encoding="utf-8")
    log("wrote BENCHMARKS.md, BENCHMARKS.json and BENCHMARKS-latency.png")
    return 0
