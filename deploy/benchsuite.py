"""`make bench`: every figure of BENCHMARKS.md, measured on the tiny-cpu profile on this machine.

Runs under its own compose project (tiny-cpu-bench, a free port) so a developer's `make up` stack is
left alone. The baseline for ratios is a bare `vllm serve` host process from the engine venv with
the same flags, the same (deterministically fabricated) model and the same environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from deploy import bench, stack
from deploy.paths import BUILD_ASSETS
from deploy.plan import Plan, host_command, host_environment, resolve
from deploy.spec import load_profile
from deploy.spec.variant import write_variant
from deploy.render import render, write_files
from deploy.smoke import run_suite, stack_defaults

NAME = "tiny-cpu-bench"
REPEATS = 3
LEVELS = [1, 4, 8]
REQUESTS_PER_LEVEL = 100
HEALTH_DEADLINE = 600


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_profile(work: Path, port: int, **engine_changes) -> Path:
    changes = {"name": NAME, "server": {"port": port}, "engine": engine_changes}
    return write_variant("tiny-cpu", work / "profile.yaml", changes)


def wait_health(base_url: str, started: float, alive=lambda: True) -> float:
    while time.monotonic() - started < HEALTH_DEADLINE:
        if not alive():
            raise RuntimeError(f"server behind {base_url} exited while starting")
        try:
            if requests.get(f"{base_url}/health", timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base_url} not healthy in {HEALTH_DEADLINE} s")


def first_image_request(base_url: str, key: str, model: str) -> float:
    started = time.monotonic()
    result = bench.load(base_url, key, model, 1, 1, bench.image_urls_for(None))
    if result.errors:
        raise RuntimeError("the first image request failed")
    return time.monotonic() - started


class BareServer:
    """`vllm serve` on the host with the plan's flags: the baseline."""

    def __init__(self, engine_python: Path, plan: Plan, model_dir: Path, work: Path, key: str):
        self.port = stack.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = host_command(plan, str(engine_python.parent / "vllm"), str(model_dir), "127.0.0.1", self.port)
        self.env = {"PATH": f"{engine_python.parent}:/usr/bin:/bin", **host_environment(plan, str(work)),
                    "VLLM_API_KEY": key, "VLLM_CACHE_ROOT": str(work / "bare-vllm-cache")}
        self.log = work / "bare.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        started = time.monotonic()
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=sink, stderr=subprocess.STDOUT)
        return wait_health(self.url, started, lambda: self.process.poll() is None)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def container_start(s: stack.Stack) -> float:
    started = time.monotonic()
    stack.run_command(s.compose("up", "-d", "--no-build", "vllm"))
    return wait_health(s.endpoint, started)


def image_breakdown(tag: str) -> dict:
    docker = stack.docker_cli()
    size = int(subprocess.run([docker, "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True,
                              text=True, check=True).stdout)
    history = subprocess.run([docker, "history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}",
                              tag], capture_output=True, text=True, check=True).stdout.splitlines()
    layers = []
    for line in history:
        layer_size, created_by = line.split("\t", 1)
        if int(layer_size) > 1_000_000:
            layers.append({"mb": round(int(layer_size) / 1e6), "step": " ".join(created_by.split())[:110]})
    du = subprocess.run([docker, "run", "--rm", "--entrypoint", "sh", tag, "-c",
                         "du -sk /opt/venv/lib/python3*/site-packages/* | sort -rn | head -12"],
                        capture_output=True, text=True, check=True).stdout.splitlines()
    packages = [{"mb": round(int(kib) * 1024 / 1e6), "package": Path(path).name}
                for kib, path in (line.split("\t", 1) for line in du)]
    return {"image_gb": round(size / 1e9, 2), "layers": layers, "packages": packages}


def plot(path: Path, container: list[bench.LoadResult], bare: list[bench.LoadResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for results, label, style in ((container, "container", "-"), (bare, "bare process", "--")):
        levels = [r.concurrency for r in results]
        axis.plot(levels, [r.p50_ms for r in results], style, marker="o", label=f"{label} p50")
        axis.plot(levels, [r.p95_ms for r in results], style, marker="^", label=f"{label} p95")
    axis.set_xlabel("concurrent clients")
    axis.set_ylabel("latency per image request (ms)")
    axis.set_xticks(LEVELS)
    axis.set_title("tiny-cpu: latency against concurrency")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)


def run(engine_python: Path, repo: Path) -> dict:
    work = repo / "bench-out"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    figures: dict = {"machine": bench.machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    profile = write_profile(work, stack.free_port())
    plan = resolve(load_profile(str(profile)))
    s = stack.stack_for(plan, work)
    docker = stack.docker_cli()

    # 0 + 6. Cold: tool venv, base image, image build without any cache, start, first image request.
    log("cold: tool venv")
    with tempfile.TemporaryDirectory() as scratch:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", f"{scratch}/v"], check=True)
        subprocess.run([f"{scratch}/v/bin/pip", "install", "-q", str(repo)], check=True, capture_output=True)
        venv_seconds = time.monotonic() - started
    log("cold: base image from Debian packages")
    cold_base = "vllm-deploy/debian-python:bench-cold"
    subprocess.run([docker, "image", "rm", cold_base], capture_output=True)
    started = time.monotonic()
    subprocess.run(["bash", str(Path(stack.ASSETS) / "base-image.sh"), cold_base], check=True, capture_output=True,
                   env={**os.environ, "WORK_DIR": str(work)})
    base_seconds = time.monotonic() - started
    subprocess.run([docker, "image", "rm", cold_base], capture_output=True)
    log("cold: image build with an empty build cache")
    subprocess.run([docker, "image", "rm", plan.image.reference], capture_output=True)
    subprocess.run([docker, "builder", "prune", "-af"], check=True, capture_output=True)
    started = time.monotonic()
    write_files(render(plan), work)
    stack.ensure_key(s)
    stack.ensure_base_image(plan)
    stack.fill_wheelhouse(s)
    cold_log = stack.build_log(s)
    build_seconds = time.monotonic() - started
    log("cold: start and first image request")
    key = stack.read_key(s)
    healthy = container_start(s)
    first = first_image_request(s.endpoint, key, plan.served_model_name)
    figures["cold"] = {
        "tool_venv_s": round(venv_seconds, 1), "base_image_s": round(base_seconds, 1),
        "image_build_s": round(build_seconds, 1), "start_to_healthy_s": round(healthy, 1),
        "first_image_request_s": round(first, 2), "build_steps_run": stack.executed_steps(cold_log)[0],
    }
    figures["cold"]["total_s"] = round(venv_seconds + base_seconds + build_seconds + healthy + first, 1)
    figures["image"] = image_breakdown(plan.image.reference)

    # 1 + 4 (+ 3). Rounds alternating container (image cached) and bare process: each round measures
    # time-to-healthy, then load at every concurrency level. Medians over rounds: this machine is noisy.
    stack.down(plan, work)
    model_dir = work / "tiny-vlm"
    subprocess.run([str(engine_python), str(BUILD_ASSETS["tiny_model.py"]), str(model_dir), "--warm-vllm-cache"],
                   check=True, capture_output=True,
                   env={**os.environ, "VLLM_CACHE_ROOT": str(work / "bare-vllm-cache"), "HF_HUB_OFFLINE": "1"})
    bare = BareServer(engine_python, plan, model_dir, work, key)
    container_starts, bare_starts = [], []
    container_rounds, bare_rounds = [], []
    for round_number in range(1, REPEATS + 1):
        log(f"round {round_number}/{REPEATS}: container start and load")
        container_starts.append(container_start(s))
        with bench.image_server(stack.compose_gateway(s)) as url:
            container_rounds.append(bench.load_levels(s.endpoint, key, plan.served_model_name, LEVELS,
                                                      REQUESTS_PER_LEVEL, bench.image_urls_for(url)))
        if round_number == 1:
            log("smoke suite against the warm container")
            started = time.monotonic()
            code, cases, _ = run_suite(stack_defaults(str(profile), work, with_key=True))
            figures["smoke"] = {"wall_s": round(time.monotonic() - started, 2), "cases": len(cases),
                                "passed": sum(c.status == "passed" for c in cases), "exit": code}
        stack.run_command(s.compose("down"))
        log(f"round {round_number}/{REPEATS}: bare process start and load")
        bare_starts.append(bare.start())
        with bench.image_server("127.0.0.1") as url:
            bare_rounds.append(bench.load_levels(bare.url, key, plan.served_model_name, LEVELS, REQUESTS_PER_LEVEL,
                                                 bench.image_urls_for(url)))
        bare.stop()
    figures["warm_start"] = {
        "container_s": [round(x, 2) for x in container_starts], "bare_s": [round(x, 2) for x in bare_starts],
        "ratio": round(bench.median(container_starts) / bench.median(bare_starts), 3),
    }
    through_container, through_bare = bench.median_results(container_rounds), bench.median_results(bare_rounds)
    figures["load"] = {
        "rounds": REPEATS,
        "container": bench.results_json(through_container), "bare": bench.results_json(through_bare),
        "rps_ratio": {str(c.concurrency): round(c.requests_per_second / b.requests_per_second, 3)
                      for c, b in zip(through_container, through_bare)},
        "rps_by_round": {
            "container": [[r.requests_per_second for r in levels] for levels in container_rounds],
            "bare": [[r.requests_per_second for r in levels] for levels in bare_rounds],
        },
    }
    plot(repo / "BENCHMARKS-latency.png", through_container, through_bare)

    # 2. Runtime-only changes: layers rebuilt and `up` time after each.
    log("runtime-only changes")
    changes = {"max-model-len": {"max-model-len": 1024}, "dtype": {"dtype": "float32"},
               "gpu-memory-utilization": {"gpu-memory-utilization": 0.5}}
    rebuilds = {}
    for label, change in [*changes.items(), ("api key", {})]:
        profile = write_profile(work, plan.port, **change)
        changed = resolve(load_profile(str(profile)))
        if label == "api key":
            s.env_file.write_text(f"VLLM_API_KEY=sk-{secrets.token_urlsafe(24)}\n")
        started = time.monotonic()
        write_files(render(changed), work)
        run_steps, total_steps = stack.executed_steps(stack.build_log(s))
        stack.run_command(s.compose("up", "-d", "--no-build", "vllm"))
        wait_health(s.endpoint, started)
        rebuilds[label] = {"layers_rebuilt": run_steps, "steps": total_steps, "same_tag": changed.image.reference == plan.image.reference,
                           "up_s": round(time.monotonic() - started, 1)}
    figures["runtime_changes"] = rebuilds
    stack.run_command(s.compose("down", "--volumes"))

    # 5. CLI start-up and render --all.
    log("CLI timings")
    with tempfile.TemporaryDirectory() as scratch:
        figures["cli"] = {
            "startup_s": bench.timed([sys.executable, "-m", "deploy", "--help"]),
            "render_all_s": bench.timed([sys.executable, "-m", "deploy", "render", "--all", "--out", scratch]),
        }
    return figures


TARGETS = {
    "cold make up to first answer": ("cold", "total_s", "≤ 480 s", lambda v: v <= 480),
    "warm time-to-healthy container ÷ bare": ("warm_start", "ratio", "≤ 1.05", lambda v: v <= 1.05),
    "smoke suite wall, warm server": ("smoke", "wall_s", "≤ 10 s", lambda v: v <= 10),
    "CLI start-up": ("cli", "startup_s", "≤ 0.5 s", lambda v: v <= 0.5),
    "render --all": ("cli", "render_all_s", "≤ 0.5 s", lambda v: v <= 0.5),
    "CPU image size": ("image", "image_gb", "≤ 3.0 GB", lambda v: v <= 3.0),
}


def report(f: dict) -> str:
    m = f["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {f['date']} by `make bench` on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"kernel {m['kernel']}, Python {m['python']}. Profile: tiny-cpu (vLLM 0.32.0 CPU build, the tiny "
        "fabricated Idefics3 VLM). Raw figures: `BENCHMARKS.json`.",
        "",
        "## Targets",
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
    ]
    for label, (section, key, target, met) in TARGETS.items():
        value = f[section][key]
        lines.append(f"| {label} | {value} | {target} | {'yes' if met(value) else 'no'} |")
    layers_ok = all(r["layers_rebuilt"] == 0 for r in f["runtime_changes"].values())
    lines.append(f"| layers rebuilt after runtime-only changes | "
                 f"{sum(r['layers_rebuilt'] for r in f['runtime_changes'].values())} | 0 | {'yes' if layers_ok else 'no'} |")
    worst = min(f["load"]["rps_ratio"].values())
    lines.append(f"| req/s container ÷ bare (worst level) | {worst} | ≥ 0.95 | {'yes' if worst >= 0.95 else 'no'} |")
    c = f["cold"]
    lines += [
        "",
        "## 0. Cold `make up` to the first answered image request, by step",
        "",
        "| step | seconds |", "|---|---|",
        f"| tool venv (`pip install .`) | {c['tool_venv_s']} |",
        f"| base image from Debian packages (debootstrap + import) | {c['base_image_s']} |",
        f"| image build, empty build cache ({c['build_steps_run']} RUN/COPY steps run) | {c['image_build_s']} |",
        f"| container start to healthy | {c['start_to_healthy_s']} |",
        f"| first image request | {c['first_image_request_s']} |",
        f"| **total** | **{c['total_s']}** |",
        "",
        "Not included: installing Docker itself (`apt-get install docker.io`, ~11 s where missing).",
        "",
        "## 1. Warm time-to-healthy: container ÷ bare process",
        "",
        "Alternating runs (the rounds of section 4); the container's image is cached; both poll `/health` every 0.1 s.",
        "",
        f"- container: {f['warm_start']['container_s']} s",
        f"- bare `vllm serve`: {f['warm_start']['bare_s']} s",
        f"- ratio of medians: **{f['warm_start']['ratio']}**",
        "",
        "## 2. Runtime-only profile changes",
        "",
        "| change | RUN/COPY steps rebuilt | image tag unchanged | `up` to healthy (s) |", "|---|---|---|---|",
    ]
    for label, r in f["runtime_changes"].items():
        lines.append(f"| {label} | {r['layers_rebuilt']} of {r['steps']} | {r['same_tag']} | {r['up_s']} |")
    sm = f["smoke"]
    lines += [
        "",
        "## 3. Smoke suite against a warm server",
        "",
        f"{sm['passed']} of {sm['cases']} cases passed in **{sm['wall_s']} s** (wall, including pytest start-up).",
        "",
        f"## 4. Load: one image per request, URL and base64 alternating, {REQUESTS_PER_LEVEL} requests per level",
        "",
        f"Medians over {f['load']['rounds']} rounds; each round starts the container, loads it, stops it, then does "
        "the same with the bare process. Requests/s by round (levels 1, 4, 8): container "
        f"{f['load']['rps_by_round']['container']}, bare {f['load']['rps_by_round']['bare']}.",
        "",
        "| concurrency | container req/s | bare req/s | ratio | container p50 / p95 ms | bare p50 / p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for cr, br in zip(f["load"]["container"], f["load"]["bare"]):
        ratio = f["load"]["rps_ratio"][str(cr["concurrency"])]
        lines.append(f"| {cr['concurrency']} | {cr['requests_per_second']} | {br['requests_per_second']} | {ratio} | "
                     f"{cr['p50_ms']:.0f} / {cr['p95_ms']:.0f} | {br['p50_ms']:.0f} / {br['p95_ms']:.0f} |")
    errors = sum(r["errors"] for r in f["load"]["container"] + f["load"]["bare"])
    lines += ["", f"Errors: {errors}.", "", "![latency against concurrency](BENCHMARKS-latency.png)", "",
              "## 5. CLI", "",
              f"- `vllm-deploy --help` start-up: {f['cli']['startup_s']} s (median of 5)",
              f"- `vllm-deploy render --all`: {f['cli']['render_all_s']} s (median of 5)", "",
              "## 6. CPU image size", "",
              f"Image: **{f['image']['image_gb']} GB**.", "", "| layer | MB |", "|---|---|"]
    lines += [f"| `{layer['step']}` | {layer['mb']} |" for layer in f["image"]["layers"]]
    lines += ["", "Largest packages in the engine venv:", "", "| package | MB |", "|---|---|"]
    lines += [f"| {p['package']} | {p['mb']} |" for p in f["image"]["packages"]]
    return "\n".join(lines) + "\n"


def main(engine_python: Path, repo: Path) -> int:
    figures = run(engine_python, repo)
    bench.dump(repo / "BENCHMARKS.json", figures)
    (repo / "BENCHMARKS.md").write_text(report(figures), encoding="utf-8")
    log("wrote BENCHMARKS.md, BENCHMARKS.json and BENCHMARKS-latency.png")
    return 0
