"""The guard on engine.extra-args: every flag resolved against vLLM's own option table, as argparse would.

vLLM's parser (FlexibleArgumentParser) turns `_` into `-` in flag names, reads `--flag.key value` as
a JSON field of `--flag`, and accepts any unambiguous prefix (`--api-ke` is `--api-key`). A flag the
profile models, or one that would break a promise the toolkit makes, is refused under any of these
spellings. The table (deploy/data/vllm-serve-options.json) is generated from the pinned vLLM.
"""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from pathlib import Path

from deploy.spec.redact import looks_secret

OPTIONS_FILE = Path(__file__).resolve().parent.parent / "data" / "vllm-serve-options.json"

# vLLM destination -> the profile key that sets it (two sources of truth would disagree silently).
MODELLED = {
    "model": "model.source", "model_tag": "model.source", "served_model_name": "model.served-name",
    "revision": "model.revision", "host": "server.bind-address", "port": "server.port", "api_key": "api-key.env",
    "dtype": "engine.dtype", "max_model_len": "engine.max-model-len",
    "gpu_memory_utilization": "engine.gpu-memory-utilization", "trust_remote_code": "engine.trust-remote-code",
    "tensor_parallel_size": "engine.tensor-parallel-size", "max_num_seqs": "engine.max-num-seqs",
    "enforce_eager": "engine.enforce-eager", "limit_mm_per_prompt": "engine.limit-mm-per-prompt",
    "kv_cache_memory_bytes": "engine.kv-cache-space-gib", "allowed_media_domains": "media.allowed-domains",
    "shutdown_timeout": "engine.shutdown-timeout-seconds",
    "mm_processor_kwargs": "engine.mm-processor-kwargs", "generation_config": "generation",
}
# vLLM destination -> why a profile may not set it at all.
REFUSED = {
    "config": "reads more flags from a file the guard cannot see",
    "uds": "serves on a socket instead of the port the health checks and the Service use",
    "allowed_local_media_path": "lets clients read files inside the container (the key among them, via /proc)",
}
NUMBER = re.compile(r"^-\d")


@cache
def option_table() -> dict[str, dict]:
    return json.loads(OPTIONS_FILE.read_text(encoding="utf-8"))["options"]


def _flag_name(item: str) -> str:
    """`--gpu_memory_utilization=1` -> `--gpu-memory-utilization`; `--limit-mm-per-prompt.image` -> its base."""
    name = item.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].split(".", 1)[0].replace("_", "-")
    elif name.startswith("-O"):
        name = "--optimization-level"  # vLLM's parser rewrites -O3 / -O=3 / -O 3 this way
    else:
        name = name.split(".", 1)[0]
    return name.removesuffix("+")


def resolve(item: str) -> tuple[str | None, list[str]]:
    """The option a flag item means to vLLM's parser, and the candidates when it is unknown or ambiguous."""
    table = option_table()
    name = _flag_name(item)
    if name in table:
        return name, []
    if name.startswith("--"):  # NB: argparse expands unambiguous prefixes of long options only
        matches = sorted(option for option in table if option.startswith(name) and option.startswith("--"))
        if len(matches) == 1:
            return matches[0], []
        if matches:
            return None, matches
    return None, difflib.get_close_matches(name, list(table), n=1)


def extra_args_problems(args: list[str]) -> list[str]:
    """Every problem with an extra-args list, as sentences that never repeat a value."""
    problems = []
    for index, item in enumerate(args):
        if not item.startswith("-") or NUMBER.match(item):
            continue  # a value of the flag before it
        if any(ch.isspace() for ch in item.split("=", 1)[0]) or "\n" in item:
            problems.append(f"item {index}: one flag per item (a flag name holds no spaces or newlines)")
            continue
        option, candidates = resolve(item)
        written = item.split("=", 1)[0]
        # NB: a flag vLLM knows is shown as written; an unknown one might be a pasted key.
        shown = written if option or not looks_secret(written) else "(a flag that may hold a secret)"
        if option is None:
            if len(candidates) > 1:
                problems.append(f"item {index}: {shown!r} is ambiguous in vLLM 0.32 (could be "
                                f"{', '.join(candidates[:4])}{', …' if len(candidates) > 4 else ''}); write it in full")
            else:
                hint = f" (did you mean {candidates[0]!r}?)" if candidates else ""
                problems.append(f"item {index}: {shown!r} is not a `vllm serve` flag{hint}")
            continue
        dest = option_table()[option]["dest"]
        spelled = f"{shown!r}" + (f" (read by vLLM as {option})" if option != shown else "")
        if dest in MODELLED:
            problems.append(f"item {index}: {spelled} duplicates {MODELLED[dest]}: set the profile field instead")
        elif dest in REFUSED:
            problems.append(f"item {index}: {spelled} is refused: it {REFUSED[dest]}")
    return problems
