"""Plan derivations from the model's facts: the generation config the server applies, and the
worst-case image estimate (deploy/spec/model_facts.py) that doctor and the smoke suite use."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from deploy.plan.constants import GENERATION_DIR
from deploy.plan.model import GenerationPlan, VisionPlan
from deploy.spec import Profile
from deploy.spec.generation import Generation
from deploy.spec.model_facts import vision_estimate

GENERATION_FILE = "generation_config.json"
# The profile's keys as generation_config.json spells them, in the order they are written. Only these
# reach vLLM: eos_token_id (stop ids, SamplingParams.update_from_generation_config) and the sampling
# defaults ModelConfig.get_diff_sampling_param reads (config/model.py:1869-1888).
CONFIG_KEYS = {
    "stop_token_ids": "eos_token_id",
    "max_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p")


def generation_config(generation: Generation) -> dict[str, Any]:
    """generation_config.json as vLLM reads it: only what the profile sets."""
    config: dict[str, Any] = {}
    for field, key in CONFIG_KEYS.items():
        value = getattr(generation, field)
        if value is not None and value != []:
            config[key] = list(value) if isinstance(value, list) else value
    if any(key in config for key in SAMPLING_KEYS):
        # NB: transformers warns that sampling keys "may be ignored" without it; vLLM itself ignores do_sample.
        config["do_sample"] = True
    return config


def config_text(config: dict[str, Any]) -> str:
    """The file's bytes: the one spelling render and host runs write."""
    return json.dumps(config, indent=2) + "\n"


def generation_plan(profile: Profile) -> GenerationPlan | None:
    if profile.generation is None:
        return None
    config = generation_config(profile.generation)
    digest = hashlib.sha256(config_text(config).encode()).hexdigest()[:10]
    return GenerationPlan(
        config=config,
        file_name=GENERATION_FILE,
        directory=GENERATION_DIR,
        digest=digest,
    )


def vision_plan(profile: Profile) -> VisionPlan | None:
    estimate = vision_estimate(profile)
    if estimate is None:
        return None
    return VisionPlan(
        architecture=estimate.architecture,
        mm_processor_kwargs=estimate.kwargs,
        images=estimate.images,
        image_prompt_tokens=estimate.image.prompt_tokens,
        image_embeddings=estimate.image.embeddings,
        worst_case_tokens=estimate.worst_case_tokens,
    )
