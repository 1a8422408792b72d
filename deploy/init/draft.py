"""What a profile for a model should say, derived from the model's own files, each value with its reason.

The derivations: the architecture against vLLM 0.32's registry; trust-remote-code from `auto_map`; stop
ids from generation_config.json and the end tokens the tokenizer defines; sampling defaults restated
(the profile's generation config replaces the model's); the image limit and the processor setting that
bounds one image; max-model-len and gpu-memory-utilization that fit a card of --gpu-memory-gib.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from deploy.errors import UserError
from deploy.init.source import ModelFiles
from deploy.plan.memory import encoder_cache_gib, estimate_gib, text_config, vision_weights_gib
from deploy.spec.model_facts import (
    architecture_facts,
    bounded_value,
    cost_bound,
    image_cost,
    models_data,
    served_by_vllm,
    smallest_cost,
    vllm_architectures,
)

AUTO_MAP_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "tokenizer_config.json")
# generation_config.json key -> profile key, the sampling defaults vLLM reads (config/model.py:1869-1888).
SAMPLING = {"max_new_tokens": "max-tokens", "temperature": "temperature", "top_p": "top-p", "top_k": "top-k",
            "min_p": "min-p", "repetition_penalty": "repetition-penalty"}


@dataclass
class Draft:
    name: str
    source: str
    device: str
    revision: str | None = None
    architecture: str | None = None
    notes: dict[str, str] = field(default_factory=dict)  # profile key -> why it has its value
    trust_remote_code: bool = False
    max_model_len: int = 0
    gpu_memory_utilization: float = 0.9
    images: int = 0
    mm_processor_kwargs: dict[str, Any] = field(default_factory=dict)
    stop_token_ids: list[int] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)  # profile key -> value
    image_prompt_tokens: int | None = None

    @property
    def storage(self) -> str:
        return "host" if self.source.startswith("/") else "hub"


def profile_name(source: str) -> str:
    """A profile name from the model's: its last path part, lowercase, '.' and other marks as '-'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", source.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-_")
    return name[:40].strip("-_") or "model"


def _architecture(files: ModelFiles, draft: Draft) -> None:
    names = [a for a in files.get("config.json")["architectures"] if isinstance(a, str)]
    served = next((a for a in names if served_by_vllm(a)), None)
    if served is None:
        table = vllm_architectures()
        close = difflib.get_close_matches(names[0] if names else "", table["multimodal"] + table["text"], n=1)
        hint = f" (closest: {close[0]})" if close else ""
        raise UserError(f"{files.directory / 'config.json'}: vLLM {table['vllm_version']} serves none of its "
                        f"architectures {names}{hint}; see deploy/data/vllm-architectures.json")
    draft.architecture = served
    facts = architecture_facts(served)
    kind = "multimodal" if served in vllm_architectures()["multimodal"] else "text-only"
    draft.notes["architecture"] = f"config.json; a {kind} architecture vLLM {vllm_architectures()['vllm_version']} serves"
    if facts is None:
        draft.notes["architecture"] += "; deploy/data/models.yaml has no image-token facts on it: no estimate"
        return
    differ = [f"{spec['key']} is {files.value(spec['file'], spec['key'])!r} here, {spec['value']!r} there"
              for spec in facts["image-tokens"]["fixed"].values()
              if files.value(spec["file"], spec["key"]) not in (None, spec["value"])]
    if differ:
        # NB: the estimate's fixed values are another checkpoint's: without the architecture, no wrong estimate.
        draft.notes["architecture-left-out"] = (f"the image-token facts of deploy/data/models.yaml are "
                                                f"{facts['checkpoint']}'s: {'; '.join(differ)}")


def _trust_remote_code(files: ModelFiles, draft: Draft) -> None:
    mapped = [name for name in AUTO_MAP_FILES if files.get(name).get("auto_map")]
    draft.trust_remote_code = bool(mapped)
    draft.notes["trust-remote-code"] = (f"auto_map in {', '.join(mapped)}: transformers needs the repository's own code"
                                        if mapped else "no auto_map: the model's code ships with transformers and vLLM")


def _stop_ids(files: ModelFiles, draft: Draft) -> None:
    found: dict[int, str] = {}
    generation = files.files.get("generation_config.json")
    origin = "generation_config.json" if generation is not None else "config.json (no generation_config.json)"
    eos = (generation if generation is not None else text_config(files.get("config.json"))).get("eos_token_id")
    for token_id in eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else []:
        found.setdefault(int(token_id), f"eos_token_id of {origin}")
    tokenizer = files.get("tokenizer_config.json")
    added = files.added_tokens
    for token in models_data()["end-tokens"]:
        if token in added:  # NB: only a token the tokenizer defines has an id to stop at
            role = ("its chat template ends turns with it" if token in (files.chat_template or "") else
                    "the tokenizer's eos token" if token == tokenizer.get("eos_token") else
                    "the tokenizer's pad token" if token == tokenizer.get("pad_token") else "the tokenizer defines it")
            found.setdefault(added[token], f"{token}: {role}")
    for token_id, why in found.items():
        text = next((t for t, i in added.items() if i == token_id), None)
        if text and not why.startswith(text):
            found[token_id] = f"{text}: {why}"
    draft.stop_token_ids = list(found)
    draft.notes["stop-token-ids"] = "; ".join(f"{i}: {why}" for i, why in found.items()) or "none found"


def _sampling(files: ModelFiles, draft: Draft) -> None:
    generation = files.get("generation_config.json")
    draft.sampling = {key: generation[name] for name, key in SAMPLING.items()
                      if isinstance(generation.get(name), (int, float)) and not isinstance(generation.get(name), bool)}


def _processor_kwargs(files: ModelFiles, draft: Draft) -> dict[str, Any]:
    """The model's own value of the setting that bounds an image, capped for init (models.yaml `init-cap`)."""
    bound = cost_bound(draft.architecture) if "architecture-left-out" not in draft.notes else None
    if bound is None:
        return {}
    key, spec = bound
    own = files.value(spec["file"], spec["key"])
    value = own if own is not None else spec["default"]
    if spec.get("init-cap") is not None and value > spec["init-cap"]:
        draft.notes["mm-processor-kwargs"] = f"the model's own {key} is {value}; capped at {spec['init-cap']}"
        value = spec["init-cap"]
    return {key: value}


def size(files: ModelFiles, draft: Draft, gpu_memory_gib: float | None, images: int) -> None:
    """max-model-len, utilization, images and the bounding setting, fitted to the card when its size is given."""
    setup = models_data()["init"]
    config = files.get("config.json")
    text = text_config(config)
    longest = int(text.get("max_position_embeddings") or config.get("max_position_embeddings") or 8192)
    multimodal = draft.architecture in vllm_architectures()["multimodal"]
    draft.images = images if multimodal else 0
    estimated = draft.architecture if "architecture-left-out" not in draft.notes else None
    kwargs = _processor_kwargs(files, draft) if draft.images else {}
    cost = image_cost(estimated, kwargs)
    bound = cost_bound(estimated) if estimated else None
    smallest = smallest_cost(estimated, kwargs) if bound else cost
    need = setup["text-tokens"] + draft.images * (smallest.prompt_tokens if smallest else 0)
    step = setup["context-step"]
    if gpu_memory_gib is None or draft.device == "cpu":
        draft.max_model_len = min(longest, setup["context-without-memory"])
        draft.notes["max-model-len"] = (f"the model's {longest}" if longest <= setup["context-without-memory"] else
                                        f"{setup['context-without-memory']} of the model's {longest}: pass "
                                        "--gpu-memory-gib to size it to a card")
    else:
        weights = estimate_gib(config, "auto", 1, 1)[0] + vision_weights_gib(config, "auto")
        per_token = estimate_gib(config, "auto", 2**20, 1)[1] / 2**20
        encoder = encoder_cache_gib(config, "auto", cost.embeddings, gpu_memory_gib) if cost else 0.0
        for utilization in setup["gpu-memory-utilization"]:
            room = utilization * gpu_memory_gib - weights - encoder - setup["overhead-gib"]
            fits = min(longest, max(int(room / per_token), 0) // step * step)
            if fits >= need:
                break
        else:
            raise UserError(f"{files.source}: does not fit a {gpu_memory_gib:g} GiB card: weights ~{weights:.1f} GiB, "
                            f"vision encoder cache ~{encoder:.2f} GiB and ~{setup['overhead-gib']} GiB of CUDA context "
                            f"and activations leave room for {fits} tokens of KV cache at gpu-memory-utilization "
                            f"{utilization}, fewer than the {need} a request with {draft.images} images needs; use a "
                            "larger card, tensor parallelism, or fewer --images")
        draft.max_model_len, draft.gpu_memory_utilization = fits, utilization
        draft.notes["max-model-len"] = (
            f"fits {utilization} x {gpu_memory_gib:g} GiB: weights ~{weights:.1f} GiB + KV {fits} x "
            f"{per_token * 2**20:.0f} KiB + vision encoder cache ~{encoder:.2f} GiB + ~{setup['overhead-gib']} GiB "
            f"overhead" + (f" (the model's own {longest})" if fits == longest else ""))
    if draft.images and cost is not None and bound is not None:
        per_image = (draft.max_model_len - setup["text-tokens"]) // draft.images
        if cost.prompt_tokens > per_image:
            value = bounded_value(estimated, kwargs, per_image)
            if value is None:
                assert smallest is not None  # NB: a bounding key means the data knows the architecture
                draft.images = max((draft.max_model_len - setup["text-tokens"]) // smallest.prompt_tokens, 1)
                value = bounded_value(estimated, kwargs, (draft.max_model_len - setup["text-tokens"]) // draft.images)
            draft.notes["mm-processor-kwargs"] = (f"{bound[0]} lowered from {kwargs[bound[0]]} so that {draft.images} "
                                                  f"images fit max-model-len {draft.max_model_len} beside "
                                                  f"{setup['text-tokens']} tokens of text")
            kwargs = {bound[0]: value}
        cost = image_cost(estimated, kwargs)
    draft.mm_processor_kwargs = kwargs
    draft.image_prompt_tokens = cost.prompt_tokens if cost and draft.images else None


def draft_profile(files: ModelFiles, *, name: str | None, device: str, gpu_memory_gib: float | None,
                  images: int | None) -> Draft:
    draft = Draft(name=name or profile_name(files.source), source=files.source, device=device,
                  revision=files.revision)
    _architecture(files, draft)
    _trust_remote_code(files, draft)
    _stop_ids(files, draft)
    _sampling(files, draft)
    size(files, draft, gpu_memory_gib, models_data()["init"]["images"] if images is None else images)
    if draft.revision is None and draft.storage == "hub":
        draft.notes["revision"] = "no snapshot commit found: pin one with trust-remote-code"
    return draft
