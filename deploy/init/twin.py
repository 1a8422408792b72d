"""`vllm-deploy twin PROFILE`: the CPU twin of a GPU profile, to rehearse its deployment on a machine
without a GPU.

The twin keeps everything that decides whether the deployment starts on first contact: its name (so the
same Services, Deployments and compose project), the model's served name and its path inside the container,
the user, the read-only root, the mounts, the router, monitoring and generation defaults. What it changes is
the device, the image base and the weights (the tiny random-weight test VLM in a directory of this host),
and what those force (the tiny model's architecture and context, a CPU KV cache, no CUDA graphs, shorter
load budgets); every change is listed in the file's header with the GPU profile's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.assets.tiny_model import ARCHITECTURE as TINY_MODEL_ARCHITECTURE
from deploy.assets.tiny_model import MAX_MODEL_LEN as TINY_MODEL_MAX_LEN
from deploy.errors import UserError

TWIN_LOAD_BUDGET_SECONDS = 300  # the tiny model loads in well under a minute on 2 cores
TWIN_HEALTH_INTERVAL_SECONDS = 2
TWIN_KV_CACHE_GIB = 1
TWIN_MAX_TOKENS = 32  # the tiny model's own max_new_tokens
CA_BUNDLE = (
    "/etc/ssl/certs/ca-certificates.crt"  # pip inside the CPU build trusts the host's (TLS-intercepting proxies)
)


def default_model_dir(root: Path, name: str) -> Path:
    return (root / ".work" / "twins" / name / "model").resolve()


def _drop(section: dict[str, Any], path: str, key: str, changes: list[str], why: str) -> None:
    if key in section:
        changes.append(f"{path}.{key}: {_shown(section.pop(key))} -> unset ({why})")


def _set(section: dict[str, Any], path: str, key: str, value: Any, changes: list[str], why: str) -> None:
    before = section.get(key)
    if before != value:
        was = "unset" if before is None else _shown(before)
        changes.append(f"{path}.{key}: {was} -> {_shown(value)} ({why})")
    section[key] = value


def _shown(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def twin_document(original: dict[str, Any], storage: str, served_name: str, model_dir: Path) -> tuple[dict, list[str]]:
    """The twin's profile document and its changes, one line each, from the GPU profile's own document."""
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in original.items()}
    changes: list[str] = []
    name = doc["name"]
    out: dict[str, Any] = {"name": name, "twin-of": name}
    doc["description"] = f"CPU twin of {name}: {doc.get('description', '')}".strip()

    model = doc.setdefault("model", {})
    if storage == "host":
        _set(model, "model", "source", str(model_dir), changes, "the tiny test VLM, put there by `up`")
        _drop(model, "model", "revision", changes, "a directory has no revision")
    else:
        changes.append(
            "model.source: the same hub id, its cache volume filled with the tiny test VLM by its fetch step "
            "and the engine offline (HF_HUB_OFFLINE=1): nothing is downloaded"
        )
    _set(model, "model", "served-name", served_name, changes, "clients keep the GPU profile's model name")
    _set(model, "model", "architecture", TINY_MODEL_ARCHITECTURE, changes, "the tiny model's")

    engine = doc.setdefault("engine", {})
    if engine.get("max-model-len", 0) > TINY_MODEL_MAX_LEN:
        _set(engine, "engine", "max-model-len", TINY_MODEL_MAX_LEN, changes, "the tiny model's context")
    _set(engine, "engine", "kv-cache-space-gib", TWIN_KV_CACHE_GIB, changes, "vLLM's CPU KV cache")
    _set(engine, "engine", "enforce-eager", True, changes, "compiling gains nothing for the tiny model on a CPU")
    if engine.get("tensor-parallel-size", 1) != 1:
        _set(engine, "engine", "tensor-parallel-size", 1, changes, "one CPU process")
    _drop(engine, "engine", "mm-processor-kwargs", changes, "the GPU model's image processor's")

    image = doc.setdefault("image", {})
    _set(image, "image", "device", "cpu", changes, "no GPU")
    _drop(image, "image", "base", changes, "a CUDA base")
    _drop(image, "image", "extra-pip", changes, "packages for the CUDA image")
    _set(image, "image", "ca-bundle", CA_BUNDLE, changes, "pip in the CPU build trusts the host's CA bundle")

    resources = doc.setdefault("resources", {})
    _drop(resources, "resources", "gpus", changes, "no GPU")
    if isinstance(replicas := doc.get("replicas", 1), int) and replicas > 1 and "cpus" not in resources:
        _set(resources, "resources", "cpus", 1, changes, "CPU replicas each get their own core")

    kubernetes = doc.setdefault("kubernetes", {})
    budget = min(kubernetes.get("load-budget-seconds", TWIN_LOAD_BUDGET_SECONDS), TWIN_LOAD_BUDGET_SECONDS)
    _set(kubernetes, "kubernetes", "load-budget-seconds", budget, changes, "the tiny model loads in seconds")
    _drop(kubernetes, "kubernetes", "runtime-class-name", changes, "NVIDIA's runtime")
    if not image.get("registry"):
        _set(kubernetes, "kubernetes", "local-images", True, changes, "its image is built here and loaded by hand")

    # NB: random weights rarely emit an end token: without a cap every request runs to the context's end.
    generation = doc.setdefault("generation", {})
    if "max-tokens" not in generation:
        _set(
            generation, "generation", "max-tokens", TWIN_MAX_TOKENS, changes, "random weights never stop by themselves"
        )

    server = doc.setdefault("server", {})
    _set(server, "server", "health-interval-seconds", TWIN_HEALTH_INTERVAL_SECONDS, changes, "quick to see healthy")

    out.update({k: v for k, v in doc.items() if k not in out})
    return {k: v for k, v in out.items() if v != {}}, changes


def twin_profile(ref: str, model_dir: Path | None, root: Path) -> str:
    """The twin's profile text for a GPU profile (a built-in name or a file); a UserError if it cannot have one.
    `model_dir`: the host directory for the tiny model; default: .work/twins/NAME/model under `root`."""
    from deploy.plan import resolve
    from deploy.spec import load_profile, locate, model_storage, parse_profile

    profile = load_profile(ref)
    model_dir = model_dir or default_model_dir(root, profile.name)
    if profile.image.device != "cuda":
        raise UserError(
            f"twin: {ref} already runs on the CPU (image.device {profile.image.device}); it is its own twin"
        )
    if not model_dir.is_absolute():
        raise UserError(f"twin: --model-dir: expected an absolute path, got {model_dir}")
    original = yaml.safe_load(locate(ref).read_text(encoding="utf-8"))
    served = profile.model.served_name or profile.model.source
    document, changes = twin_document(original, model_storage(profile), served, model_dir)
    header = [
        f"# CPU twin of {ref}, written by `vllm-deploy twin`: the same deployment shape on a machine without a GPU.",
        "# Kept: names, the served model name and its path in the container, the user, the read-only root, mounts,",
        "# probes, router, monitoring and generation defaults. Changed (GPU profile's value -> the twin's):",
        *(f"#   {line}" for line in changes),
        "# Run it: make up PROFILE=<this file> (renders under .work/twins/, fills the model directory once).",
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)
    try:
        resolve(parse_profile(text, f"the twin of {ref}"))
    except UserError as exc:
        raise UserError(f"twin: the twin drafted for {ref} does not validate; nothing was written\n{exc}") from None
    return text
