"""Tests for deploy/assets/tiny_model.py, the offline random-weight Idefics3 VLM.

Building the model needs torch, transformers and tokenizers, which live in the engine
venv (scripts/engine-venv.sh), not necessarily in the interpreter running pytest. So the
builds and every check that needs transformers run in a subprocess: with the running
interpreter when it can import transformers, else with $ENGINE_PYTHON. The module is
loaded by file path so that deploy/__init__.py (and whatever it imports) stays out of it.

Two builds in all: the session's (`tiny_model_build`, tests/integration/conftest.py: the script run on
its own, as an image build runs it; test_engine.py serves the same folder) and the `builder` fixture's
(build_tiny_model over stale files, in one engine process with the interrupted build and the read-back).
Comparing the two proves determinism across processes and that the script writes build_tiny_model's bytes.
"""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.conftest import digests

# The session's build (tests/integration/conftest.py) and one engine process for the builder's checks.
pytestmark = [pytest.mark.engine, pytest.mark.slow]

MODULE = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "assets" / "tiny_model.py"
MAX_BYTES = 30 * 1024 * 1024
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# The builder fixture's one engine process: each part reports its result or its error, so only its tests fail.
BUILDER = """
import traceback


def part(work):
    try:
        return {"result": work()}
    except BaseException:
        return {"error": traceback.format_exc()}


def rebuild():
    return str(mod.build_tiny_model(pathlib.Path(argv[0]), seed=0))


def interrupt():
    def boom(*args, **kwargs):
        raise KeyboardInterrupt("simulated interruption")

    real, mod._build_model = mod._build_model, boom
    try:
        mod.build_tiny_model(pathlib.Path(argv[1]))
    except KeyboardInterrupt:
        pass
    finally:
        mod._build_model = real
    return sorted(p.name for p in pathlib.Path(argv[1]).parent.iterdir())


def read_back():  # the session model (argv[2]) as transformers loads it
    from PIL import Image
    from transformers import AutoConfig, AutoProcessor
    path = argv[2]
    processor = AutoProcessor.from_pretrained(path)
    tok = processor.tokenizer
    names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<fake_token_around_image>",
             "<global-img>", "<end_of_utterance>", "<row_1_col_1>", "<row_6_col_6>"]
    ids = {n: tok.convert_tokens_to_ids(n) for n in names}
    # A special token written in a prompt must map to its single id.
    encoded = tok("<|im_start|>user\\nhello<|im_end|>", add_special_tokens=False)["input_ids"]
    two_images = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.jpg"}},
        {"type": "text", "text": "请描述这张图片"},
        {"type": "image"}]}]
    text_only = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    render = lambda m: processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
    # Images are first resized to 224 px (2x2 tiles of 112) and get a global tile too.
    batch = processor(text=[render([{"role": "user", "content": [{"type": "image"}]}])],
                      images=[[Image.new("RGB", (112, 112), (255, 0, 0))]])
    config = AutoConfig.from_pretrained(path)
    return {
        "ids": ids, "eos": tok.eos_token, "eos_id": tok.eos_token_id, "len": len(tok),
        "encoded": encoded, "two_images": render(two_images), "text_only": render(text_only),
        "image_tokens": batch["input_ids"][0].count(ids["<image>"]),
        "image_token_id": config.image_token_id,
        "image_processor": type(processor.image_processor).__name__,
    }


print(json.dumps({"rebuild": part(rebuild), "interrupt": part(interrupt), "read_back": part(read_back)}))
"""


def _engine_python() -> str:
    probe = "import torch, transformers, tokenizers"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
        return sys.executable
    engine = os.environ.get("ENGINE_PYTHON")
    if not engine:
        pytest.fail(
            "transformers is not importable here and ENGINE_PYTHON is not set "
            "(point it at the python of a venv made by scripts/engine-venv.sh)"
        )
    return engine


def _run(code: str, *args: str) -> Any:
    """Run CODE with the engine interpreter; it gets `mod` (deploy/assets/tiny_model.py) and
    `argv`, and must print one JSON document as its last line of output."""
    prelude = textwrap.dedent(f"""
        import importlib.util, json, pathlib, sys
        spec = importlib.util.spec_from_file_location("tiny_model", {str(MODULE)!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        argv = sys.argv[1:]
    """)
    proc = subprocess.run(
        [_engine_python(), "-c", prelude + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **OFFLINE_ENV},
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def builder(tiny_model_build, tmp_path_factory) -> dict[str, Any]:
    """The builder's own checks, all in one engine process (one torch and transformers import): a build with
    build_tiny_model into a folder that holds stale files, an interrupted build, and the session model read back
    with transformers. Each part reports an error of its own, so only its tests fail."""
    root = tmp_path_factory.mktemp("tiny")
    rebuilt, interrupted = root / "rebuilt" / "tiny-vlm", root / "interrupted" / "tiny-vlm"
    # The target already exists with stale content: the build must replace it.
    rebuilt.mkdir(parents=True)
    (rebuilt / "stale.txt").write_text("left over")
    return _run(BUILDER, str(rebuilt), str(interrupted), str(tiny_model_build.path)) | {"rebuilt": rebuilt}


def _part(builder: dict[str, Any], name: str) -> Any:
    assert "error" not in builder[name], builder[name]["error"]
    return builder[name]["result"]


def test_build_returns_out_dir_and_replaces_old_content(tiny_model_build, builder):
    rebuilt = builder["rebuilt"]
    assert _part(builder, "rebuild") == str(rebuilt)
    assert not (rebuilt / "stale.txt").exists()
    built = tiny_model_build.path
    assert (built / "config.json").is_file() and (built / "model.safetensors").is_file()
    # Nothing of the temporary build folders is left beside the model.
    assert tiny_model_build.beside == ["tiny-vlm"]
    assert [p.name for p in rebuilt.parent.iterdir()] == ["tiny-vlm"]


def test_size_is_small(tiny_model):
    a = tiny_model
    total = sum(p.stat().st_size for p in a.rglob("*") if p.is_file())
    assert total <= MAX_BYTES, f"{total / 2**20:.1f} MiB"


def test_deterministic(tiny_model_build, builder):
    """Two builds with the same seed, in two processes (the session's and the builder's), give the same bytes."""
    _part(builder, "rebuild")
    da, db = tiny_model_build.digests, digests(builder["rebuilt"])
    assert set(da) >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
        "chat_template.jinja",
        "generation_config.json",
    }
    assert da == db


def test_default_answer_length_is_bounded(tiny_model):
    # Requests without max_tokens (the guide's snippets) get 32 tokens, not up to max-model-len.
    a = tiny_model
    generation = json.loads((a / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 32
    assert generation["eos_token_id"] == [151645, 151643]


def test_script_entry_point_builds_the_same_files(tiny_model_build, builder):
    # Image builds run the file on its own, in a fresh process (the session's build is made so): it prints the
    # folder, and its bytes are build_tiny_model's.
    _part(builder, "rebuild")
    assert tiny_model_build.printed == str(tiny_model_build.path)
    assert tiny_model_build.digests == digests(builder["rebuilt"])


def test_world_readable(tiny_model):
    a = tiny_model
    for p in [a, *a.rglob("*")]:
        mode = p.stat().st_mode
        assert mode & stat.S_IROTH, f"{p} is not world-readable ({oct(mode)})"
        if p.is_dir():
            assert mode & stat.S_IXOTH, f"{p} is not world-searchable ({oct(mode)})"


def test_config(tiny_model):
    a = tiny_model
    config = json.loads((a / "config.json").read_text())
    assert config["architectures"] == ["Idefics3ForConditionalGeneration"]
    text = config["text_config"]
    assert text["vocab_size"] == 151936
    assert text["hidden_size"] // text["num_attention_heads"] >= 32  # vLLM CPU attention
    assert text["head_dim"] >= 32
    assert config["vision_config"]["image_size"] == 112
    assert config["vision_config"]["patch_size"] == 14
    assert config["scale_factor"] == 2
    assert config["dtype"] == "bfloat16"
    processor = json.loads((a / "processor_config.json").read_text())
    assert processor["image_seq_len"] == 16
    # PIL backend: the engine venv has no torchvision.
    assert processor["image_processor"]["image_processor_type"] == "Idefics3ImageProcessorPil"


def test_tokenizer_and_chat_template(builder):
    got = _part(builder, "read_back")
    ids = got["ids"]
    assert ids["<|endoftext|>"] == 151643
    assert ids["<|im_start|>"] == 151644
    assert ids["<|im_end|>"] == 151645
    assert len(set(ids.values())) == len(ids) and all(151643 <= i < 151936 for i in ids.values())
    assert got["eos"] == "<|im_end|>" and got["eos_id"] == 151645
    assert got["len"] <= 151936
    assert got["encoded"][0] == 151644 and got["encoded"][-1] == 151645
    assert got["image_token_id"] == ids["<image>"]
    assert got["image_processor"] == "Idefics3ImageProcessorPil"

    assert got["two_images"].count("<image>") == 2
    assert "请描述这张图片" in got["two_images"]
    assert got["two_images"].startswith("<|im_start|>user\n")
    assert got["two_images"].endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "<image>" not in got["text_only"]
    assert got["text_only"].count("<|im_start|>") == 3
    assert got["image_tokens"] == (2 * 2 + 1) * 16  # tiles x image_seq_len


def test_interrupted_build_leaves_nothing(builder):
    assert _part(builder, "interrupt") == []


def test_module_imports_no_heavy_packages():
    # The rest of the deploy package imports this module; it must not pull torch in.
    code = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("tiny_model", {str(MODULE)!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        heavy = sorted(m for m in ("torch", "transformers", "tokenizers", "PIL", "numpy") if m in sys.modules)
        assert not heavy, heavy
        assert callable(mod.build_tiny_model)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
