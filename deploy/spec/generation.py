"""Profile sections about what the model is and how it answers: server-side generation defaults, and
the multimodal processor settings that bound what one image costs.

`generation` becomes the generation_config.json vLLM is pointed at (`--generation-config DIR`): vLLM
adds every `eos_token_id` there to each request's stop ids (SamplingParams.update_from_generation_config)
and takes the sampling keys below as the server's defaults (ModelConfig.get_diff_sampling_param). That
file replaces the model's own, so what the model's file said and should stay must be restated here
(`vllm-deploy init` copies it).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, WithJsonSchema

from deploy.spec.base import Section, empty_list

TokenId = Annotated[int, Field(ge=0, le=10_000_000)]


def _kwarg_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", name):
        raise ValueError("expected a processor keyword like max_pixels (letters, digits and '_')")
    return name


def _scalar(value: Any) -> Any:
    # NB: one sentence instead of pydantic's one error per member of a union.
    if isinstance(value, str) and len(value) <= 200 and value.isprintable():
        return value
    if isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise ValueError("expected a number, true/false or a short string (nested settings are not supported)")


KwargName = Annotated[str, AfterValidator(_kwarg_name)]
KwargValue = Annotated[
    Any, AfterValidator(_scalar), WithJsonSchema({"type": ["boolean", "integer", "number", "string"]})
]
MmProcessorKwargs = Annotated[
    dict[KwargName, KwargValue],
    Field(
        max_length=32,
        description="Multimodal processor settings (--mm-processor-kwargs) that bound what one "
        "image costs, e.g. {max_slice_nums: 9} for MiniCPM-V or {max_pixels: 1003520} for Qwen2.5-VL. For an "
        "architecture in deploy/data/models.yaml only the keys listed there.",
    ),
]
Architecture = Annotated[
    Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$", max_length=100)] | None,
    Field(
        description="The model's architecture as its config.json names it, e.g. MiniCPMV; checked against vLLM "
        "0.32's registry (deploy/data/vllm-architectures.json). Those in deploy/data/models.yaml get a worst-case "
        "image-token estimate, and a profile whose worst case cannot fit max-model-len is refused."
    ),
]


class Generation(Section):
    """Defaults the server applies to every request that does not set them itself."""

    stop_token_ids: Annotated[list[TokenId], Field(max_length=32)] = Field(
        default_factory=empty_list,
        description="Token ids that end every answer, e.g. [151645, 151643] (<|im_end|>, <|endoftext|>): written as "
        "eos_token_id, which vLLM adds to each request's stop ids, so clients need not send stop_token_ids.",
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Default max_tokens of a request that sets none (max_new_tokens). Default: up to max-model-len.",
    )
    temperature: float | None = Field(None, ge=0, le=100)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1, le=1_000_000, description="-1 or 0: off.")
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=100)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)


GenerationSection = Annotated[
    Generation | None,
    Field(
        description="Server-side defaults for every request (stop ids, max tokens, sampling), mounted into the "
        "container as the generation_config.json vLLM reads (--generation-config). It replaces the model's own "
        "file. Default: none, vLLM reads the model's own file."
    ),
]
