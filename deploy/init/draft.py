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
from typing import Any, get_args

from pydantic import ValidationError

from deploy.errors import UserError
from deploy.facts import models_data, vllm_architectures
from deploy.init.source import MAX_STOP_IDS, ModelFiles, kind, token_name
from deploy.plan.memory import DTYPE_BYTES, encoder_cache_gib, estimate_gib, vision_weights_gib
from deploy.spec import default_storage
from deploy.spec.generation import Generation
from deploy.spec.model_facts import (
    architecture_facts,
    bounded_value,
    cost_bound,
    image_cost,
    served_by_vllm,
    smallest_cost,
)

AUTO_MAP_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "tokenizer_config.json")
# generation_config.json key -> profile key, the sampling defaults vLLM reads (config/model.py:1869-1888).
SAMPLING = {
    "max_new_tokens": "max-tokens",
    "temperature": "temperature",
    "top_p": "top-p",
    "top_k": "top-k",
    "min_p": "min-p",
    "repetition_penalty": "repetition-penalty",
}
ARCHITECTURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MAX_MODEL_LEN = 10_000_000  # the profile's bound (engine.max-model-len)
# The largest sizes init believes of a config.json (a 1T-parameter model stays well inside them).
SIZE_LIMITS = {
    "hidden_size": 1_000_000,
    "num_hidden_layers": 10_000,
    "num_attention_heads": 100_000,
    "num_key_value_heads": 100_000,
    "head_dim": 100_000,
    "vocab_size": 100_000_000,
    "intermediate_size": 10_000_000,
    "depth": 10_000,
    "out_hidden_size": 1_000_000,
}


def shown(value: Any) -> str:
    """A model file's value in a comment: a number as written, anything else only as what kind it is."""
    return kind(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else f"({kind(value)})"


def same_number(value: Any, expected: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == expected


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
        return default_storage(self.source)


def profile_name(source: str) -> str:
    """A profile name from the model's: its last path part, lowercase, '.' and other marks as '-'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", source.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-_")
    return name[:40].strip("-_") or "model"


def _architecture(files: ModelFiles, draft: Draft) -> None:
    listed = files.get("config.json")["architectures"]
    # NB: a name is repeated (in the profile, in a message) only when it is one: a Python class name.
    names = [a for a in listed if isinstance(a, str) and ARCHITECTURE_NAME.fullmatch(a)]
    served = next((a for a in names if served_by_vllm(a)), None)
    if served is None:
        table = vllm_architectures()
        close = difflib.get_close_matches(names[0] if names else "", table["multimodal"] + table["text"], n=1)
        hint = f" (closest: {close[0]})" if close else ""
        others = len(listed) - len(names)
        unnamed = f" (and {others} not shown: not a class name)" if others else ""
        raise UserError(
            f"{files.directory / 'config.json'}: vLLM {table['vllm_version']} serves none of its "
            f"architectures {names}{unnamed}{hint}; see deploy/data/vllm-architectures.json"
        )
    draft.architecture = served
    facts = architecture_facts(served)
    kind = "multimodal" if served in vllm_architectures()["multimodal"] else "text-only"
    draft.notes["architecture"] = (
        f"config.json; a {kind} architecture vLLM {vllm_architectures()['vllm_version']} serves"
    )
    if facts is None:
        draft.notes["architecture"] += "; deploy/data/models.yaml has no image-token facts on it: no estimate"
        return
    differ = [
        f"{spec['key']} is {shown(files.value(spec['file'], spec['key']))} here, {spec['value']!r} there"
        for spec in facts["image-tokens"]["fixed"].values()
        if files.value(spec["file"], spec["key"]) is not None
        and not same_number(files.value(spec["file"], spec["key"]), spec["value"])
    ]
    if differ:
        # NB: the estimate's fixed values are another checkpoint's: without the architecture, no wrong estimate.
        draft.notes["architecture-left-out"] = (
            f"the image-token facts of deploy/data/models.yaml are {facts['checkpoint']}'s: {'; '.join(differ)}"
        )


def _trust_remote_code(files: ModelFiles, draft: Draft) -> None:
    mapped = [name for name in AUTO_MAP_FILES if files.get(name).get("auto_map")]
    draft.trust_remote_code = bool(mapped)
    draft.notes["trust-remote-code"] = (
        f"auto_map in {', '.join(mapped)}: transformers needs the repository's own code"
        if mapped
        else "no auto_map: the model's code ships with transformers and vLLM"
    )


def _stop_ids(files: ModelFiles, draft: Draft) -> None:
    found: dict[int, str] = {}
    has_generation = "generation_config.json" in files.files
    origin = "generation_config.json" if has_generation else "config.json (no generation_config.json)"
    eos = (
        files.token_ids("generation_config.json", "eos_token_id")
        if has_generation
        else files.token_ids("config.json", f"{files.text_prefix()}eos_token_id")
    )
    for token_id in eos:
        found.setdefault(token_id, f"eos_token_id of {origin}")
    added = files.added_tokens
    eos_token, pad_token = files.special_token("eos_token"), files.special_token("pad_token")
    for token in models_data()["end-tokens"]:
        if token in added:  # NB: only a token the tokenizer defines has an id to stop at
            role = (
                "its chat template ends turns with it"
                if token in (files.chat_template or "")
                else "the tokenizer's eos token"
                if token == eos_token
                else "the tokenizer's pad token"
                if token == pad_token
                else "the tokenizer defines it"
            )
            found.setdefault(added[token], f"{token}: {role}")
    for token_id, why in found.items():
        text = next((t for t, i in added.items() if i == token_id), None)
        # NB: a token's text is the model's free text: repeated in the comment only as a plain token name.
        if text and token_name(text) is None:
            found[token_id] = f"a token whose text is not shown (not a plain token name): {why}"
        elif text and not why.startswith(text):
            found[token_id] = f"{text}: {why}"
    if len(found) > MAX_STOP_IDS:
        files.problem(
            origin.split(" ")[0],
            "eos_token_id",
            f"with the tokenizer's end tokens, {len(found)} stop ids: a profile takes at most {MAX_STOP_IDS}",
        )
    draft.stop_token_ids = list(found)[:MAX_STOP_IDS]
    draft.notes["stop-token-ids"] = "; ".join(f"{i}: {why}" for i, why in found.items()) or "none found"


def _sampling(files: ModelFiles, draft: Draft) -> None:
    """The model's sampling defaults, each checked against the profile's own bounds for it."""
    for name, key in SAMPLING.items():
        value = files.value("generation_config.json", name)
        if value is None:
            continue
        try:
            Generation.model_validate({key: value})
        except ValidationError:
            files.problem("generation_config.json", name, f"expected {_expected(key)}, got {kind(value)}")
            continue
        draft.sampling[key] = value


def _expected(key: str) -> str:
    """What the profile's generation section takes for `key`, in words, from the model's own bounds."""
    field = Generation.model_fields[key.replace("-", "_")]
    noun = "an integer" if int in get_args(field.annotation) else "a number"
    bound = {
        attr: getattr(m, attr)
        for m in field.metadata
        for attr in ("gt", "ge", "le")
        if getattr(m, attr, None) is not None
    }
    if "ge" in bound and "le" in bound:
        return f"{noun} from {bound['ge']} to {bound['le']}"
    words = {"gt": "greater than", "ge": "at least", "le": "at most"}
    return f"{noun} " + " and ".join(f"{words[attr]} {value}" for attr, value in bound.items())


def _processor_kwargs(files: ModelFiles, draft: Draft) -> dict[str, Any]:
    """The model's own value of the setting that bounds an image, capped for init (models.yaml `init-cap`)."""
    bound = cost_bound(draft.architecture) if "architecture-left-out" not in draft.notes else None
    if bound is None:
        return {}
    key, spec = bound
    own: bool | int | None
    if spec["type"] == "bool":
        own = files.boolean(spec["file"], spec["key"])
    else:
        own = files.integer(spec["file"], spec["key"], spec.get("minimum", 0), spec.get("maximum", 10**9))
    value = own if own is not None else spec["default"]
    if spec.get("init-cap") is not None and value > spec["init-cap"]:
        whose = "the model's own" if own is not None else "the checkpoint's default"
        draft.notes["mm-processor-kwargs"] = f"{whose} {key} is {value}; capped at {spec['init-cap']}"
        value = spec["init-cap"]
    return {key: value}


def _model_config(files: ModelFiles) -> dict[str, Any]:
    """The settings of config.json the memory estimate reads (to size a profile to --gpu-memory-gib), each
    checked; the text model's under text_config, as deploy/plan/memory.py reads them."""
    prefix = files.text_prefix()
    text: dict[str, Any] = {}
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "intermediate_size",
    ):
        value = files.integer("config.json", prefix + key, 0 if key == "vocab_size" else 1, SIZE_LIMITS[key])
        if value is not None:
            text[key] = value
        elif (
            key in ("hidden_size", "num_hidden_layers", "num_attention_heads")
            and files.value("config.json", prefix + key) is None
        ):
            files.problem("config.json", prefix + key, "missing; --gpu-memory-gib sizes the KV cache from it")
    vision: dict[str, Any] = {}
    if files.mapping("config.json", "vision_config"):
        for key in ("hidden_size", "num_hidden_layers", "depth", "intermediate_size", "out_hidden_size"):
            value = files.integer("config.json", f"vision_config.{key}", 1, SIZE_LIMITS.get(key, 100_000_000))
            if value is not None:
                vision[key] = value
    dtype = files.value("config.json", "torch_dtype") or files.value("config.json", "dtype")
    return {
        "text_config": text,
        "vision_config": vision,
        "torch_dtype": dtype if isinstance(dtype, str) and dtype in DTYPE_BYTES else None,
    }


def size(files: ModelFiles, draft: Draft, gpu_memory_gib: float | None, images: int) -> None:
    """max-model-len, utilization, images and the bounding setting, fitted to the card when its size is given."""
    setup = models_data()["init"]
    sizing = gpu_memory_gib is not None and draft.device != "cpu"
    config = _model_config(files) if sizing else {}
    prefix = files.text_prefix()
    longest = (
        files.integer("config.json", f"{prefix}max_position_embeddings", 1, 2**31)
        or (files.integer("config.json", "max_position_embeddings", 1, 2**31) if prefix else None)
        or 8192
    )
    longest_allowed = min(longest, MAX_MODEL_LEN)
    multimodal = draft.architecture in vllm_architectures()["multimodal"]
    if multimodal and images == 0:
        # NB: the template writes limit-mm-per-prompt only for one image or more; left out, vLLM takes 999.
        raise UserError(
            "init: --images 0 is not drafted for a multimodal model; draft with --images 1, then set "
            "engine.limit-mm-per-prompt.image to 0"
        )
    draft.images = images if multimodal else 0
    estimated = draft.architecture if "architecture-left-out" not in draft.notes else None
    kwargs = _processor_kwargs(files, draft) if draft.images else {}
    files.raise_problems()  # NB: nothing below computes with a value of the wrong kind
    cost = image_cost(estimated, kwargs)
    bound = cost_bound(estimated) if estimated else None
    smallest = smallest_cost(estimated, kwargs) if bound else cost
    need = setup["text-tokens"] + draft.images * (smallest.prompt_tokens if smallest else 0)
    step = setup["context-step"]
    if not sizing:
        draft.max_model_len = min(longest, setup["context-without-memory"])
        draft.notes["max-model-len"] = (
            f"the model's {longest}"
            if longest <= setup["context-without-memory"]
            else f"{setup['context-without-memory']} of the model's {longest}: pass "
            "--gpu-memory-gib to size it to a card"
        )
        if draft.images and draft.max_model_len < need:
            raise UserError(
                f"{files.source}: the model's context of {longest} tokens cannot hold {draft.images} "
                f"image{'s' if draft.images > 1 else ''} of at least {need - setup['text-tokens']} tokens "
                f"beside {setup['text-tokens']} tokens of text; pass fewer --images"
            )
    else:
        weights = estimate_gib(config, "auto", 1, 1)[0] + vision_weights_gib(config, "auto")
        per_token = estimate_gib(config, "auto", 2**20, 1)[1] / 2**20
        encoder = encoder_cache_gib(config, "auto", cost.embeddings, gpu_memory_gib) if cost else 0.0
        for utilization in setup["gpu-memory-utilization"]:
            room = utilization * gpu_memory_gib - weights - encoder - setup["overhead-gib"]
            fits = min(longest_allowed, max(int(room / per_token), 0) // step * step)
            if fits >= need:
                break
        else:
            raise UserError(
                f"{files.source}: does not fit a {gpu_memory_gib:g} GiB card: weights ~{weights:.1f} GiB, "
                f"vision encoder cache ~{encoder:.2f} GiB and ~{setup['overhead-gib']} GiB of CUDA context "
                f"and activations leave room for {fits} tokens of KV cache at gpu-memory-utilization "
                f"{utilization}, fewer than the {need} a request with {draft.images} images needs; use a "
                "larger card, tensor parallelism, or fewer --images"
            )
        draft.max_model_len, draft.gpu_memory_utilization = fits, utilization
        draft.notes["max-model-len"] = (
            f"fits {utilization} x {gpu_memory_gib:g} GiB: weights ~{weights:.1f} GiB + KV {fits} x "
            f"{per_token * 2**20:.0f} KiB + vision encoder cache ~{encoder:.2f} GiB + ~{setup['overhead-gib']} GiB "
            f"overhead" + (f" (the model's own {longest})" if fits == longest else "")
        )
    if draft.images and cost is not None and bound is not None:
        per_image = (draft.max_model_len - setup["text-tokens"]) // draft.images
        if cost.prompt_tokens > per_image:
            value = bounded_value(estimated, kwargs, per_image)
            if value is None:
                assert smallest is not None  # NB: a bounding key means the data knows the architecture
                draft.images = max((draft.max_model_len - setup["text-tokens"]) // smallest.prompt_tokens, 1)
                value = bounded_value(estimated, kwargs, (draft.max_model_len - setup["text-tokens"]) // draft.images)
            draft.notes["mm-processor-kwargs"] = (
                f"{bound[0]} lowered from {kwargs[bound[0]]} so that {draft.images} "
                f"images fit max-model-len {draft.max_model_len} beside "
                f"{setup['text-tokens']} tokens of text"
            )
            kwargs = {bound[0]: value}
        cost = image_cost(estimated, kwargs)
    draft.mm_processor_kwargs = kwargs
    draft.image_prompt_tokens = cost.prompt_tokens if cost and draft.images else None


def draft_profile(
    files: ModelFiles, *, name: str | None, device: str, gpu_memory_gib: float | None, images: int | None
) -> Draft:
    draft = Draft(name=name or profile_name(files.source), source=files.source, device=device, revision=files.revision)
    _architecture(files, draft)
    _trust_remote_code(files, draft)
    _stop_ids(files, draft)
    _sampling(files, draft)
    size(files, draft, gpu_memory_gib, models_data()["init"]["images"] if images is None else images)
    if draft.revision is None and draft.storage == "hub":
        draft.notes["revision"] = "no snapshot commit found: pin one with trust-remote-code"
    files.raise_problems()
    return draft
