"""GPU memory a model needs, from its config.json: weights, KV cache, and the vision encoder's cache.

Pure arithmetic, shared by `doctor` (deploy/runtime/preflight.py) and `init` (which sizes max-model-len
to a card). Estimates, not measurements: vLLM's own profiling at start-up has the last word.
"""

from __future__ import annotations

from deploy.spec.model_facts import batched_tokens

DTYPE_BYTES = {"float16": 2, "half": 2, "bfloat16": 2, "float32": 4, "float": 4}


def text_config(config: dict) -> dict:
    return config.get("text_config") or config.get("llm_config") or config


def dtype_bytes(config: dict, dtype: str) -> int:
    return DTYPE_BYTES.get(dtype, DTYPE_BYTES.get(str(config.get("torch_dtype") or config.get("dtype")), 2))


def estimate_gib(config: dict, dtype: str, max_model_len: int, max_num_seqs: int) -> tuple[float, float]:
    """Weights and full-context KV cache in GiB, from a Hugging Face config.json (text model part)."""
    text = text_config(config)
    hidden = text["hidden_size"]
    layers = text["num_hidden_layers"]
    heads = text["num_attention_heads"]
    kv_heads = text.get("num_key_value_heads", heads)
    head_dim = text.get("head_dim") or hidden // heads
    vocab = text.get("vocab_size", config.get("vocab_size", 0))
    intermediate = text.get("intermediate_size", 4 * hidden)
    width = dtype_bytes(config, dtype)
    # Attention (q, k, v, o) and a gated MLP per layer, plus embeddings and the LM head.
    per_layer = hidden * (heads * head_dim) * 2 + hidden * (kv_heads * head_dim) * 2 + 3 * hidden * intermediate
    params = layers * per_layer + 2 * vocab * hidden
    kv_per_token = 2 * layers * kv_heads * head_dim * width
    return params * width / 2**30, kv_per_token * max_model_len * max_num_seqs / 2**30


def vision_weights_gib(config: dict, dtype: str) -> float:
    """The vision tower's weights in GiB (0 without a vision_config): attention and a gated MLP per layer.
    NB: rough and on the high side (SigLIP's MLP is not gated); projectors and resamplers are left out."""
    vision = config.get("vision_config") or {}
    hidden, layers = vision.get("hidden_size"), vision.get("num_hidden_layers") or vision.get("depth")
    if not (isinstance(hidden, int) and isinstance(layers, int)):
        return 0.0
    intermediate = vision.get("intermediate_size") or 4 * hidden
    return layers * (4 * hidden * hidden + 3 * hidden * intermediate) * dtype_bytes(config, dtype) / 2**30


def encoder_cache_tokens(image_embeddings: int, card_gib: float | None) -> int:
    """Embedding tokens vLLM's encoder cache holds: max(max-num-batched-tokens, the largest item)
    (v1/core/encoder_cache_manager.py:316-365). Without a card, the smallest default (2048)."""
    return max(batched_tokens(card_gib or 0.0), image_embeddings)


def encoder_cache_gib(config: dict, dtype: str, image_embeddings: int, card_gib: float | None) -> float:
    """The encoder cache in GiB: its tokens × the width of the embeddings the language model takes × dtype bytes."""
    # NB: the embeddings are the language model's width (Qwen2.5-VL's merger out_hidden_size, MiniCPM-V's resampler).
    width = (config.get("vision_config") or {}).get("out_hidden_size") or text_config(config)["hidden_size"]
    return encoder_cache_tokens(image_embeddings, card_gib) * width * dtype_bytes(config, dtype) / 2**30
