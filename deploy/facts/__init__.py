"""The data files and their loaders, one owner: each file in deploy/data/ is found, parsed and cached here.

devices.yaml (compatibility facts per device: base images, CUDA, the router's and Prometheus's pins) ·
models.yaml (image-token facts per architecture, end tokens, init's settings) · vllm-architectures.json
(vLLM's architecture registry, `make vllm-architectures`) · vllm-serve-options.json (vLLM's option table,
`make vllm-options`) · vllm-serve-classes.yaml (every option's destination classified by hand: allowed,
modelled, refused) · vllm-envs.json (the variables vLLM reads, `make vllm-envs`) · vllm-router-routes.json
(vLLM's router's route table, `make vllm-router-routes`) · vllm-official-image.json (what the official image
is, read from the pinned release's docker/Dockerfile, `make vllm-official-image`).

The generated files are written by scripts/ from the component itself; tests check they are current.
NB: the files are the toolkit's own: a malformed one is a bug here, raised as such, never a user error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from deploy.paths import DATA_DIR

DEVICES_FILE = DATA_DIR / "devices.yaml"
MODELS_FILE = DATA_DIR / "models.yaml"
ARCHITECTURES_FILE = DATA_DIR / "vllm-architectures.json"
OPTIONS_FILE = DATA_DIR / "vllm-serve-options.json"
CLASSES_FILE = DATA_DIR / "vllm-serve-classes.yaml"
ENVS_FILE = DATA_DIR / "vllm-envs.json"
ROUTES_FILE = DATA_DIR / "vllm-router-routes.json"
OFFICIAL_IMAGE_FILE = DATA_DIR / "vllm-official-image.json"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# NB: libyaml's parser where PyYAML has it, with the safe loader's constructors (the same values): the pure-Python
# parser took ~80 ms over these files, on every command that resolves a profile. These files are the toolkit's own;
# a user's profile is read by deploy/spec/yaml_lines.py.
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)


@cache
def device_facts() -> dict[str, Any]:
    """Compatibility facts per device (devices.yaml)."""
    return _yaml(DEVICES_FILE)


@cache
def models_data() -> dict[str, Any]:
    """Per architecture: what an image costs, its processor keys; end tokens; init's settings (models.yaml)."""
    return _yaml(MODELS_FILE)


@cache
def vllm_architectures() -> dict[str, Any]:
    """vLLM's registry: the multimodal and text generation architectures it serves, and its version."""
    return _json(ARCHITECTURES_FILE)


@cache
def option_table() -> dict[str, dict[str, Any]]:
    """vLLM's `vllm serve` options by flag: destination, choices, what argparse does with them."""
    return _json(OPTIONS_FILE)["options"]


@cache
def option_table_version() -> str:
    """The vLLM version the option table was generated from."""
    return str(_json(OPTIONS_FILE)["vllm_version"])


@cache
def vllm_variables() -> frozenset[str]:
    """The variables vLLM reads (its envs table and the names its getters read)."""
    return frozenset(_json(ENVS_FILE)["variables"])


@cache
def route_table() -> dict[str, Any]:
    """vLLM's router's own route table, by group (scripts/vllm_router_routes.py wrote it from the pinned sdist)."""
    return _json(ROUTES_FILE)


@cache
def official_image() -> dict[str, Any]:
    """What vLLM's official image is, per Dockerfile target (scripts/vllm_official_image.py wrote it from the
    pinned release's docker/Dockerfile): base, entrypoint, user, workdir, python, users, ownership, env."""
    return _json(OFFICIAL_IMAGE_FILE)


@dataclass(frozen=True)
class Allowed:
    values: tuple[str, ...] | None  # None: any value vLLM accepts
    why: str  # what the other values would do


@dataclass(frozen=True)
class Refused:
    reason: str  # completes "it ..."
    instead: str


@dataclass(frozen=True)
class Classes:
    vllm_version: str
    allowed: dict[str, Allowed]
    modelled: dict[str, str]  # destination -> the profile key that sets it
    refused: dict[str, Refused]


@cache
def option_classes() -> Classes:
    """The classification of vLLM's option destinations, checked for shape (vllm-serve-classes.yaml)."""
    raw = _yaml(CLASSES_FILE)
    allowed: dict[str, Allowed] = {}
    for dest, spec in (raw.get("allowed") or {}).items():
        if spec is None:
            allowed[dest] = Allowed(values=None, why="")
        elif isinstance(spec, dict) and set(spec) == {"values", "why"} and spec["values"]:
            allowed[dest] = Allowed(values=tuple(str(v).lower() for v in spec["values"]), why=str(spec["why"]))
        else:
            raise RuntimeError(f"{CLASSES_FILE.name}: allowed.{dest}: expected nothing or {{values, why}}")
    modelled = {str(k): str(v) for k, v in (raw.get("modelled") or {}).items()}
    refused: dict[str, Refused] = {}
    for dest, spec in (raw.get("refused") or {}).items():
        if not (isinstance(spec, dict) and set(spec) == {"reason", "instead"} and all(spec.values())):
            raise RuntimeError(f"{CLASSES_FILE.name}: refused.{dest}: expected {{reason, instead}}")
        refused[dest] = Refused(reason=str(spec["reason"]), instead=str(spec["instead"]))
    twice = (set(allowed) & set(modelled)) | (set(allowed) & set(refused)) | (set(modelled) & set(refused))
    if twice:
        raise RuntimeError(f"{CLASSES_FILE.name}: classified twice: {', '.join(sorted(twice))}")
    return Classes(vllm_version=str(raw["vllm_version"]), allowed=allowed, modelled=modelled, refused=refused)
