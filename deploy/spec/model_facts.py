"""What one image costs a model, from data (deploy/data/models.yaml) and the profile's processor settings,
and the profile checks that follow: a known architecture, known processor keys, and a worst-case request
whose images fit max-model-len.

NB: vLLM 0.32 does not check at start-up that its largest image fits max-model-len: it clamps the
items it profiles to at least one and answers each too-long request with a 400 instead
(multimodal/encoder_budget.py:142-182, v1/engine/input_processor.py:557-601). So the check is here,
in the profile, where the error can name the file, the line and both numbers.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.facts import models_data, vllm_architectures
from deploy.spec.flags import resolve
from deploy.spec.schema import Profile

# vLLM's per-prompt limit of a modality that --limit-mm-per-prompt leaves out (config/multimodal.py:215).
DEFAULT_ITEMS = 999


def served_by_vllm(architecture: str) -> bool:
    table = vllm_architectures()
    return architecture in table["multimodal"] or architecture in table["text"]


def architecture_facts(architecture: str | None) -> dict[str, Any] | None:
    return models_data()["architectures"].get(architecture) if architecture else None


@dataclass(frozen=True)
class ImageCost:
    prompt_tokens: int  # what max-model-len must hold: embeddings plus the markers around them
    embeddings: int  # what the vision encoder outputs and its cache holds


def _minicpmv_slices(kwargs: dict[str, Any], fixed: dict[str, int]) -> ImageCost:
    slices = kwargs["max_slice_nums"] if kwargs["max_slice_nums"] >= 2 else 0
    embeddings = (slices + 1) * fixed["tokens-per-slice"]
    markers = (3 if kwargs["use_image_id"] else 0) + 2 + (3 * slices - 1 if slices else 0)
    return ImageCost(embeddings + markers, embeddings)


def _qwen_vl_pixels(kwargs: dict[str, Any], fixed: dict[str, int]) -> ImageCost:
    embeddings = max(kwargs["max_pixels"] // (fixed["patch-size"] * fixed["merge-size"]) ** 2, 1)
    return ImageCost(embeddings + 2, embeddings)


def _idefics3_tiles(kwargs: dict[str, Any], fixed: dict[str, int]) -> ImageCost:
    side = -(-fixed["longest-edge"] // fixed["tile-edge"]) if kwargs["do_image_splitting"] else 0
    tile = fixed["tile-tokens"]
    embeddings = (side * side + 1) * tile
    markers = (side * side * 2 + side + 1 if side else 0) + 3
    return ImageCost(embeddings + markers, embeddings)


FORMULAS: dict[str, Callable[[dict[str, Any], dict[str, int]], ImageCost]] = {
    "minicpmv-slices": _minicpmv_slices,
    "qwen-vl-pixels": _qwen_vl_pixels,
    "idefics3-tiles": _idefics3_tiles,
}


def effective_kwargs(facts: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The processor settings an estimate uses: the profile's over the checkpoint's defaults."""
    return {**{k: spec["default"] for k, spec in facts["mm-processor-kwargs"].items()}, **kwargs}


def image_cost(architecture: str | None, kwargs: dict[str, Any]) -> ImageCost | None:
    """One image's worst case for this architecture and these settings; None for an architecture without facts."""
    facts = architecture_facts(architecture)
    if facts is None:
        return None
    fixed = {k: v["value"] for k, v in facts["image-tokens"]["fixed"].items()}
    return FORMULAS[facts["image-tokens"]["formula"]](effective_kwargs(facts, kwargs), fixed)


def cost_bound(architecture: str | None) -> tuple[str, dict[str, Any]] | None:
    """The processor key that bounds an image's cost (`bounds-cost` in the data) and its spec."""
    facts = architecture_facts(architecture) or {"mm-processor-kwargs": {}}
    return next(((k, s) for k, s in facts["mm-processor-kwargs"].items() if s.get("bounds-cost")), None)


def bounded_value(architecture: str | None, kwargs: dict[str, Any], per_image: int, cap: Any = None) -> Any:
    """The largest value of the bounding key (at most `cap`, else its current value) with which one image
    costs at most `per_image` prompt tokens; None when even the smallest does not."""
    bound = cost_bound(architecture)
    if bound is None:
        return None
    key, spec = bound
    facts = architecture_facts(architecture)
    assert facts is not None  # NB: cost_bound found the key in them
    current = effective_kwargs(facts, kwargs)[key]
    top = current if cap is None else min(current, cap)

    def fits(value: Any) -> bool:
        cost = image_cost(architecture, {**kwargs, key: value})
        return cost is not None and cost.prompt_tokens <= per_image

    if spec["type"] == "bool":
        return next((v for v in (top, False) if fits(v)), None)
    low, high, step = spec.get("minimum", 1), top, spec.get("step", 1)
    if not fits(low):
        return None
    while low < high:  # NB: cost grows with the value; the largest that fits
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    rounded = low // step * step  # NB: a round value still fits: the cost never grows as the value falls
    return rounded if rounded >= spec.get("minimum", 1) else low


def smallest_cost(architecture: str | None, kwargs: dict[str, Any]) -> ImageCost | None:
    """One image's cost with the bounding key at its smallest (its minimum, or false)."""
    bound = cost_bound(architecture)
    if bound is None:
        return image_cost(architecture, kwargs)
    key, spec = bound
    return image_cost(architecture, {**kwargs, key: False if spec["type"] == "bool" else spec.get("minimum", 1)})


@dataclass(frozen=True)
class VisionEstimate:
    architecture: str
    images: int  # per prompt: limit-mm-per-prompt.image, or vLLM's default
    image: ImageCost
    kwargs: dict[str, Any]  # the settings the estimate used, defaults included

    @property
    def worst_case_tokens(self) -> int:
        return self.images * self.image.prompt_tokens


def vision_estimate(p: Profile) -> VisionEstimate | None:
    """The worst-case image tokens of one request; None without an architecture the data knows, or without images."""
    facts = architecture_facts(p.model.architecture)
    images = p.engine.limit_mm_per_prompt.get("image", DEFAULT_ITEMS)
    # NB: the settings are checked before any arithmetic: a string where a number belongs is a problem
    # _kwarg_problems reports, not a TypeError in a formula.
    if facts is None or images == 0 or _kwarg_problems(p, facts):
        return None
    cost = image_cost(p.model.architecture, dict(p.engine.mm_processor_kwargs))
    if cost is None:
        return None
    return VisionEstimate(
        p.model.architecture or "", images, cost, effective_kwargs(facts, dict(p.engine.mm_processor_kwargs))
    )


def _kwarg_problems(p: Profile, facts: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    found: list[tuple[tuple[str, ...], str]] = []
    known = facts["mm-processor-kwargs"]
    for key, value in p.engine.mm_processor_kwargs.items():
        where = ("engine", "mm-processor-kwargs", key)
        spec = known.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            found.append(
                (
                    where,
                    f"not a setting vllm-deploy knows for {p.model.architecture}{hint}; expected one "
                    f"of: {', '.join(known)}",
                )
            )
        elif spec["type"] == "bool" and not isinstance(value, bool):
            found.append((where, "expected true or false"))
        elif spec["type"] == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            found.append((where, "expected an integer"))
        elif spec["type"] == "int" and not spec.get("minimum", value) <= value <= spec.get("maximum", value):
            found.append((where, f"expected an integer from {spec['minimum']} to {spec['maximum']}, got {value}"))
    return found


def _fit_hint(p: Profile, estimate: VisionEstimate) -> str:
    """What would make the worst case fit: fewer images, smaller ones, or a longer context."""
    room = p.engine.max_model_len - 1  # NB: at least one token for the answer
    fixes = []
    if estimate.images > 1 and room // estimate.image.prompt_tokens >= 1:
        verb = "lower" if "image" in p.engine.limit_mm_per_prompt else "set"
        fixes.append(f"{verb} engine.limit-mm-per-prompt.image to at most {room // estimate.image.prompt_tokens}")
    key, _ = cost_bound(estimate.architecture) or (None, None)
    if key is not None:
        value = bounded_value(estimate.architecture, dict(p.engine.mm_processor_kwargs), room // estimate.images)
        cost = (
            image_cost(estimate.architecture, {**p.engine.mm_processor_kwargs, key: value})
            if value is not None
            else None
        )
        if cost is not None and value != estimate.kwargs[key]:
            fixes.append(
                f"bound each image with engine.mm-processor-kwargs.{key}: {json.dumps(value)} "
                f"({cost.prompt_tokens} tokens an image)"
            )
    fixes.append(f"raise max-model-len above {estimate.worst_case_tokens}")
    return "; ".join(fixes)


def model_problems(p: Profile) -> list[tuple[tuple[str, ...], str]]:
    """Cross-field checks of the model facts: architecture, processor settings, worst-case image tokens."""
    found: list[tuple[tuple[str, ...], str]] = []
    architecture = p.model.architecture
    if architecture is not None and not served_by_vllm(architecture):
        table = vllm_architectures()
        close = difflib.get_close_matches(architecture, table["multimodal"] + table["text"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        found.append(
            (
                ("model", "architecture"),
                f"{architecture!r} is not an architecture vLLM "
                f"{table['vllm_version']} serves{hint}; see deploy/data/vllm-architectures.json",
            )
        )
    facts = architecture_facts(architecture)
    if facts is not None:
        found += _kwarg_problems(p, facts)
    if p.generation is not None:
        for index, item in enumerate(p.engine.extra_args):
            option, _ = resolve(item) if item.startswith("--") else (None, [])
            if option == "--override-generation-config":
                found.append(
                    (
                        ("engine", "extra-args"),
                        f"item {index}: --override-generation-config duplicates the "
                        "generation section: set the value there",
                    )
                )
    estimate = vision_estimate(p)
    if estimate is not None and estimate.worst_case_tokens >= p.engine.max_model_len:
        where = (
            "engine.limit-mm-per-prompt.image"
            if "image" in p.engine.limit_mm_per_prompt
            else "vLLM's default: engine.limit-mm-per-prompt sets no image count"
        )
        settings = ", ".join(f"{k} {json.dumps(v)}" for k, v in estimate.kwargs.items())
        found.append(
            (
                ("engine", "max-model-len"),
                f"{estimate.images} images ({where}) × up to {estimate.image.prompt_tokens} tokens each "
                f"({architecture}: {settings}) = {estimate.worst_case_tokens} image tokens, more than "
                f"max-model-len {p.engine.max_model_len} holds beside the text and the answer: vLLM would "
                f"refuse such requests (400). Fix: {_fit_hint(p, estimate)}",
            )
        )
    return found


def batched_tokens(card_gib: float) -> int:
    """vLLM's default --max-num-batched-tokens for a card of this size (models.yaml)."""
    return next(row["tokens"] for row in models_data()["max-num-batched-tokens"] if card_gib >= row["min-card-gib"])
