"""Property: `init` on model files with any JSON in any field it reads drafts a profile that validates and says
only what init meant, or exits 2 with a clean message; never another exception, never a raw control character.

Hypothesis takes the three fixture models and puts random JSON values (hostile strings with newlines, U+2028,
ESC and bidi controls, NaN and Infinity, huge integers, lists, nested objects, booleans) into the fields init
reads, replaces or deletes whole files, and runs `vllm-deploy init` in-process. Derandomized: CI sees the same
cases every run.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.cli import main
from deploy.errors import is_unsafe
from deploy.paths import TEMPLATE_DIR
from deploy.plan import resolve
from deploy.spec import parse_profile
from tests.conftest import REPO

MODELS = REPO / "tests" / "fixtures" / "models"
FIXTURES = sorted(p.name for p in MODELS.iterdir() if p.is_dir())
# Characters init may write: printable ASCII, and what its template itself holds (the guide's Chinese prompt).
PLACED = set(string.printable) | set((TEMPLATE_DIR / "init" / "profile.yaml.j2").read_text(encoding="utf-8"))
INJECTION = "<|im_end|>\n  max-tokens: 1\n  presence-penalty: 2\n#"

# (file, dotted key) for every value init reads; "" is the whole file.
READ = {
    "config.json": [
        "",
        "architectures",
        "architectures.0",
        "auto_map",
        "text_config",
        "llm_config",
        "torch_dtype",
        "dtype",
        "max_position_embeddings",
        "eos_token_id",
        "query_num",
        "vision_config",
        "vision_config.hidden_size",
        "vision_config.num_hidden_layers",
        "vision_config.depth",
        "vision_config.intermediate_size",
        "vision_config.out_hidden_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "vocab_size",
    ]
    + [
        f"text_config.{k}"
        for k in (
            "max_position_embeddings",
            "eos_token_id",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "vocab_size",
            "intermediate_size",
        )
    ],
    "generation_config.json": [
        "",
        "eos_token_id",
        "max_new_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repetition_penalty",
    ],
    "preprocessor_config.json": [
        "",
        "auto_map",
        "max_slice_nums",
        "use_image_id",
        "patch_size",
        "merge_size",
        "max_pixels",
        "min_pixels",
    ],
    "processor_config.json": [
        "",
        "auto_map",
        "image_seq_len",
        "image_processor",
        "image_processor.size.longest_edge",
        "image_processor.max_image_size.longest_edge",
        "image_processor.do_image_splitting",
    ],
    "tokenizer_config.json": [
        "",
        "chat_template",
        "added_tokens_decoder",
        "added_tokens_decoder.151645",
        "added_tokens_decoder.151645.content",
        "added_tokens_decoder.151643.content",
        "eos_token",
        "pad_token",
        "auto_map",
    ],
    "tokenizer.json": ["", "added_tokens", "added_tokens.0", "added_tokens.0.content", "added_tokens.0.id"],
    "chat_template.json": ["", "chat_template"],
}
HOSTILE_STRINGS = [
    "",
    "x",
    INJECTION,
    "a\u2028max-tokens: 1",
    "\x1b[2J\x1b]0;owned\x07",
    "evil\u202etxt",
    "\u2066x\u2069",
    "\u200e\u200f",
    "\x85next",
    "\r\nkey: 1",
    "# comment",
    "'\"",
    "bfloat16",
    "MiniCPMV",
    "Qwen2VLForConditionalGeneration",
    "<|im_end|>",
    "<|endoftext|>",
    "151645",
    "NaN",
    "1e999",
    "é" * 70,
    "\ud800",
    "\U0010ffff",
]
scalars = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=12),
    st.integers(-2, 2),
    st.sampled_from([0, 1, 2, 14, 16, 64, 112, 224, 784, 8192, 151643, 151645, 10**7, 10**7 + 1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.1, 1.0, 1e-7, 1e16, 0.5]),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["content", "id", "name", "template", "151645", "x"]), inner, max_size=3),
    ),
    max_leaves=8,
)


DELETE = object()  # a value that removes the key (or, for "", the whole file)


def edit(data: Any, dotted: str, value: Any) -> Any:
    """`data` with the value at `dotted` set or deleted (parents made objects as needed)."""
    if not dotted:
        return None if value is DELETE else value
    if not isinstance(data, dict):
        return data
    node: Any = data
    *parents, last = dotted.split(".")
    for part in parents:
        if isinstance(node, list):
            node = node[0] if node else {}
            continue
        if not isinstance(node.get(part), (dict, list)):
            node[part] = {}
        node = node[part]
    if isinstance(node, list):
        node = node[0] if node and isinstance(node[0], dict) else {}
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return data


@st.composite
def model_case(draw) -> tuple[str, dict[str, Any], list[str]]:
    fixture = draw(st.sampled_from(FIXTURES))
    changes: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(sorted(READ)))
        changes.setdefault(name, [])
        changes[name].append((draw(st.sampled_from(READ[name])), draw(st.one_of(values, st.just(DELETE)))))
    options: list[str] = []
    device = draw(st.sampled_from(["cuda", "cpu"]))
    options += ["--device", device]
    if device == "cuda" and draw(st.booleans()):
        options += ["--gpu-memory-gib", str(draw(st.sampled_from([8, 24, 80, 0.5, 1e6])))]
    if draw(st.booleans()):
        options += ["--images", str(draw(st.integers(0, 16)))]
    return fixture, changes, options


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=model_case())
def test_init_drafts_a_valid_profile_or_refuses_cleanly(case):
    fixture, changes, options = case
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "model"
        shutil.copytree(MODELS / fixture, model)
        for name, edits in changes.items():
            path = model / name
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            for dotted, value in edits:
                data = edit(data, dotted, value)
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(json.dumps(data), encoding="utf-8")  # NB: NaN and Infinity as Python writes them
        code, out, err = run("init", str(model), *options)
    assert code in (0, 2), err
    for line in (out + err).splitlines():
        assert not any(is_unsafe(c) for c in line), line
    if code == 2:
        assert out == "" and err.startswith("error: ") and "Traceback" not in err, err
        return
    assert err == ""
    assert set(out) <= PLACED, set(out) - PLACED
    assert "max-tokens: 1\n" not in out and "presence-penalty" not in out
    profile = parse_profile(out, "drafted.yaml")  # validates
    resolve(profile)
    document = yaml.safe_load(out)
    generation = document["generation"]
    assert set(generation) <= {
        "stop-token-ids",
        "max-tokens",
        "temperature",
        "top-p",
        "top-k",
        "min-p",
        "repetition-penalty",
    }
    for key, value in generation.items():
        assert isinstance(value, list) or (not isinstance(value, bool) and math.isfinite(value)), (key, value)
    assert document["smoke"]["stop-token-ids"] == generation["stop-token-ids"]
