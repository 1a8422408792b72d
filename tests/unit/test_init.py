"""`vllm-deploy init`: profiles drafted from a model's own files validate, render, and say where each value came from.

The fixtures are config files without weights (tests/fixtures/models/*/SOURCE.md): Qwen2.5-VL-7B's are copies of
the upstream files, MiniCPM-V 2.6's are reconstructions from cited facts (not byte copies), tiny-vlm's are the
project's own fabricated model's. tests/integration/test_engine.py runs init on a freshly fabricated tiny model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from deploy.errors import UserError
from deploy.init import init_profile
from deploy.plan import resolve
from deploy.render import render
from deploy.spec import parse_profile
from tests.conftest import REPO

MODELS = REPO / "tests" / "fixtures" / "models"


def drafted(source: str | Path, **options) -> tuple[str, dict]:
    text = init_profile(str(source), **options)
    return text, yaml.safe_load(text)


def renders(text: str) -> dict[str, str]:
    return render(resolve(parse_profile(text, "drafted.yaml")))


def test_minicpm_needs_remote_code_and_stops_at_the_guides_ids():
    text, data = drafted(MODELS / "minicpm-v-2_6")
    assert data["model"] == {"source": str(MODELS / "minicpm-v-2_6"), "architecture": "MiniCPMV"}
    assert data["engine"]["trust-remote-code"] is True
    assert "auto_map in config.json, preprocessor_config.json, tokenizer_config.json" in text
    assert data["generation"] == {"stop-token-ids": [151645, 151643]}  # the guide's ids, in the guide's order
    assert data["smoke"]["stop-token-ids"] == [151645, 151643]
    assert data["smoke"]["prompt"] == "请描述这张图片"
    assert (
        "# 151645: <|im_end|>: eos_token_id of generation_config.json; 151643: <|endoftext|>: the tokenizer's pad token"
    ) in text
    assert data["engine"]["mm-processor-kwargs"] == {"max_slice_nums": 9}  # the model's own preprocessor value
    assert data["engine"]["limit-mm-per-prompt"] == {"image": 2, "video": 0}
    assert data["kubernetes"]["node-selector"] == {"vllm-deploy/model": "minicpm-v-2_6"}
    files = renders(text)
    assert json.loads(files["compose/minicpm-v-2_6/generation_config.json"]) == {"eos_token_id": [151645, 151643]}


def test_qwen_restates_its_sampling_defaults_and_bounds_its_images():
    text, data = drafted(MODELS / "qwen2_5-vl-7b")
    assert data["model"]["architecture"] == "Qwen2_5_VLForConditionalGeneration"
    assert data["engine"]["trust-remote-code"] is False
    assert data["generation"] == {
        "stop-token-ids": [151645, 151643],
        "temperature": 0.1,
        "top-p": 0.001,
        "top-k": 1,
        "repetition-penalty": 1.05,
    }
    assert data["engine"]["mm-processor-kwargs"] == {"max_pixels": 1003520}
    assert "# the model's own max_pixels is 12845056; capped at 1003520." in text
    assert data["engine"]["max-model-len"] == 8192  # no card given: 8192 of its 128000
    assert "8192 of the model's 128000: pass --gpu-memory-gib" in text
    vision = resolve(parse_profile(text, "q.yaml")).vision
    assert vision is not None and vision.image_prompt_tokens == 1282 and vision.worst_case_tokens == 2564


def test_a_card_size_sets_max_model_len_and_utilization():
    """24 GiB: weights ~14.2 + vision tower ~1.2 + ~2 GiB overhead at 0.9 leave ~4.2 GiB, 56 KiB a token of KV."""
    text, data = drafted(MODELS / "qwen2_5-vl-7b", gpu_memory_gib=24, images=4)
    assert (data["engine"]["max-model-len"], data["engine"]["gpu-memory-utilization"]) == (79104, 0.9)
    assert data["engine"]["limit-mm-per-prompt"] == {"image": 4, "video": 0}
    assert "fits 0.9 x 24 GiB: weights ~15.4 GiB + KV 79104 x 56 KiB" in text
    # 19 GiB only fits at 0.95, and 16 images must shrink: max_pixels falls until 16 fit beside 1024 tokens of text.
    text, data = drafted(MODELS / "qwen2_5-vl-7b", gpu_memory_gib=19, images=16)
    engine = data["engine"]
    assert (engine["max-model-len"], engine["gpu-memory-utilization"]) == (12544, 0.95)
    assert engine["mm-processor-kwargs"] == {"max_pixels": 718 * 784}  # 718 tokens + 2 markers = (12544 - 1024) / 16
    assert "max_pixels lowered from 1003520 so that 16 images fit max-model-len 12544 beside 1024 tokens" in text
    vision = resolve(parse_profile(text, "q.yaml")).vision
    assert vision is not None and vision.worst_case_tokens == 16 * 720 == 12544 - 1024


def test_a_card_too_small_is_refused():
    with pytest.raises(
        UserError,
        match=r"does not fit a 16 GiB card: weights ~15.4 GiB, vision encoder cache ~0.01 "
        r"GiB and ~2.0 GiB of CUDA context and activations leave room for 0 tokens",
    ):
        init_profile(str(MODELS / "qwen2_5-vl-7b"), gpu_memory_gib=16)
    with pytest.raises(UserError, match="--gpu-memory-gib sizes a GPU profile"):
        init_profile(str(MODELS / "tiny-vlm"), gpu_memory_gib=16, device="cpu")


def test_the_tiny_model_gets_its_end_of_utterance_and_max_tokens():
    text, data = drafted(MODELS / "tiny-vlm", device="cpu")
    assert data["generation"] == {"stop-token-ids": [151645, 151643, 151648], "max-tokens": 32}
    assert "151648: <end_of_utterance>: the tokenizer defines it" in text
    engine = data["engine"]
    assert (engine["max-model-len"], engine["kv-cache-space-gib"], engine["enforce-eager"]) == (8192, 1, True)
    assert engine["mm-processor-kwargs"] == {"do_image_splitting": True}
    assert data["image"] == {"device": "cpu"} and "tolerations" not in data["kubernetes"]
    # A CPU draft is a laptop rehearsal: its built image is loaded onto the nodes by hand, never pulled.
    assert data["kubernetes"]["local-images"] is True
    assert "replace this with image.registry and `vllm-deploy push`" in text
    files = renders(text)
    deployment = yaml.safe_load(files["k8s/tiny-vlm/deployment.yaml"])
    assert deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"
    compose = yaml.safe_load(files["compose/tiny-vlm/compose.yaml"])
    assert "--generation-config" in compose["services"]["vllm"]["command"]


def hub_cache(root: Path, repo: str, fixture: str, commit: str = "a" * 40) -> Path:
    organisation, name = repo.split("/")
    snapshot = root / f"models--{organisation}--{name}" / "snapshots" / commit
    shutil.copytree(MODELS / fixture, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(commit)
    return snapshot


def test_a_hub_id_reads_the_local_cache_and_pins_its_snapshot(tmp_path):
    hub_cache(tmp_path / "hub", "openbmb/MiniCPM-V-2_6", "minicpm-v-2_6", commit="0123abcd" * 5)
    text, data = drafted("openbmb/MiniCPM-V-2_6", env={"HF_HOME": str(tmp_path)})
    assert data["name"] == "minicpm-v-2_6"
    # trust-remote-code runs the repository's code: the revision is the snapshot's commit, never "main".
    assert data["model"] == {"source": "openbmb/MiniCPM-V-2_6", "revision": "0123abcd" * 5, "architecture": "MiniCPMV"}
    assert "node-selector" not in data["kubernetes"] and "local-images" not in data["kubernetes"]
    plan = resolve(parse_profile(text, "m.yaml"))
    assert plan.storage.kind == "hub" and plan.warnings == []


def test_a_hub_id_without_local_files_says_how_to_get_them(tmp_path):
    with pytest.raises(UserError) as caught:
        init_profile("Qwen/Qwen2.5-VL-7B-Instruct", env={"HF_HOME": str(tmp_path)})
    assert f"Qwen/Qwen2.5-VL-7B-Instruct: its config files are not on this machine (looked in {tmp_path}/hub)" in str(
        caught.value
    )
    assert "huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct config.json" in str(caught.value)
    with pytest.raises(UserError, match="expected a model directory or a Hugging Face id"):
        init_profile("not a model", env={})


def copy_model(tmp_path: Path, fixture: str, **changes) -> Path:
    target = tmp_path / fixture
    shutil.copytree(MODELS / fixture, target)
    for name, edit in changes.items():
        data = json.loads((target / name).read_text())
        edit(data)
        (target / name).write_text(json.dumps(data))
    return target


def test_an_architecture_vllm_does_not_serve_is_refused(tmp_path):
    model = copy_model(
        tmp_path, "qwen2_5-vl-7b", **{"config.json": lambda c: c.update(architectures=["Qwen2_5_VLForConditionalGen"])}
    )
    with pytest.raises(
        UserError,
        match=r"vLLM 0.32.0 serves none of its architectures \['Qwen2_5_VLForConditionalGen'\] "
        r"\(closest: Qwen2_5_VLForConditionalGeneration\); see deploy/data/vllm-arch",
    ):
        init_profile(str(model))


def test_a_checkpoint_unlike_the_datas_gets_no_estimate(tmp_path):
    """Another Idefics3 (SmolVLM-like image_seq_len): the architecture is left out rather than estimated wrongly."""
    model = copy_model(tmp_path, "tiny-vlm", **{"processor_config.json": lambda c: c.update(image_seq_len=169)})
    text, data = drafted(model)
    assert "architecture" not in data["model"]
    assert (
        "# architecture: Idefics3ForConditionalGeneration   # left out, so no image-token estimate: the "
        "image-token facts of deploy/data/models.yaml are vllm-deploy tiny-vlm (deploy/assets/tiny_model.py)'s: "
        "image_seq_len is 169 here, 16 there"
    ) in text
    assert "mm-processor-kwargs" not in data["engine"]
    assert resolve(parse_profile(text, "t.yaml")).vision is None


def test_without_a_generation_config_the_eos_comes_from_config_json(tmp_path):
    model = copy_model(tmp_path, "qwen2_5-vl-7b")
    (model / "generation_config.json").unlink()
    _, data = drafted(model)
    assert data["generation"] == {"stop-token-ids": [151645, 151643]}  # config eos, then <|endoftext|>


def test_the_cli_prints_or_writes_and_never_overwrites(cli, tmp_path):
    printed = cli("init", str(MODELS / "minicpm-v-2_6"))
    assert printed.code == 0 and printed.out == init_profile(str(MODELS / "minicpm-v-2_6"))
    target = tmp_path / "p.yaml"
    written = cli("init", str(MODELS / "minicpm-v-2_6"), "-o", str(target))
    assert written.code == 0 and target.read_text() == printed.out
    assert f"wrote {target}" in written.err
    assert cli("validate", str(target)).code == 0
    assert cli("render", str(target), "--out", str(tmp_path / "out")).code == 0
    target.write_text("mine\n")
    again = cli("init", str(MODELS / "qwen2_5-vl-7b"), "-o", str(target))
    assert again.code == 2
    assert again.err == f"error: {target}: exists; nothing was written (pass --force to overwrite it)\n"
    assert target.read_text() == "mine\n"
    forced = cli("init", str(MODELS / "qwen2_5-vl-7b"), "-o", str(target), "--force", "--name", "qwen")
    assert forced.code == 0 and yaml.safe_load(target.read_text())["name"] == "qwen"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "p.yaml"]  # nothing staged is left behind
    missing = cli("init", str(MODELS / "qwen2_5-vl-7b"), "-o", str(tmp_path / "no" / "p.yaml"))
    assert missing.code == 2 and "no such directory" in missing.err


# ---------------------------------------------------------------------------------------------
# Model files are outside input (#17): checked values only, no free text, a cap on every file


def refused(cli, model: Path, *options: str) -> str:
    result = cli("init", str(model), *options)
    assert (result.code, result.out) == (2, ""), result.err
    return result.err


@pytest.mark.parametrize("separator", ["\n", "\u2028", "\r", "\x85"])
def test_a_token_text_with_a_line_break_adds_nothing_to_the_profile(tmp_path, separator):
    """Measured before: the token's text ended the comment and added max-tokens: 1, presence-penalty: 2."""
    hostile = f"<|im_end|>{separator}  max-tokens: 1{separator}  presence-penalty: 2{separator}#"
    model = copy_model(
        tmp_path,
        "tiny-vlm",
        **{
            "tokenizer_config.json": lambda c: c.update(added_tokens_decoder={"151645": {"content": hostile}}),
            "generation_config.json": lambda c: c.pop("max_new_tokens"),
        },
    )
    text, data = drafted(model, device="cpu")
    assert data["generation"] == {"stop-token-ids": [151645, 151643, 151648]}
    assert (
        "  # 151645: a token whose text is not shown (not a plain token name): eos_token_id of generation_config.json; "
    ) in text
    assert "max-tokens" not in text and "presence-penalty" not in text


def test_values_of_the_wrong_kind_are_all_named_with_their_file_and_key(cli, tmp_path):
    model = copy_model(
        tmp_path,
        "qwen2_5-vl-7b",
        **{
            "generation_config.json": lambda c: c.update(
                temperature=float("nan"), top_k="1", max_new_tokens=[1], top_p=True, eos_token_id=[[151645, 151643]]
            ),
            "config.json": lambda c: c.update(max_position_embeddings=float("inf")),
            "preprocessor_config.json": lambda c: c.update(max_pixels="12845056"),
        },
    )
    assert refused(cli, model) == (
        "error: init: 7 values in the model's files cannot be used; nothing was drafted (fix the files, or write "
        "the profile by hand):\n"
        f"  - {model}/config.json: max_position_embeddings: expected an integer from 1 to 2147483648, got Infinity\n"
        f"  - {model}/generation_config.json: eos_token_id: expected a token id or a list of at most 32 token ids "
        "(integers from 0 to 10000000), got a list holding a list\n"
        f"  - {model}/generation_config.json: max_new_tokens: expected an integer from 1 to 10000000, got a list\n"
        f"  - {model}/generation_config.json: temperature: expected a number from 0 to 100, got NaN\n"
        f"  - {model}/generation_config.json: top_k: expected an integer from -1 to 1000000, got a string\n"
        f"  - {model}/generation_config.json: top_p: expected a number greater than 0 and at most 1, got true\n"
        f"  - {model}/preprocessor_config.json: max_pixels: expected an integer from 784 to 1000000000, got a string\n"
    )


def test_sizing_to_a_card_needs_the_models_sizes(cli, tmp_path):
    model = copy_model(
        tmp_path,
        "qwen2_5-vl-7b",
        **{"config.json": lambda c: c.update(hidden_size="3584", num_hidden_layers=None, vision_config=[1])},
    )
    assert refused(cli, model, "--gpu-memory-gib", "24").splitlines()[1:] == [
        f"  - {model}/config.json: hidden_size: expected an integer from 1 to 1000000, got a string",
        f"  - {model}/config.json: num_hidden_layers: missing; --gpu-memory-gib sizes the KV cache from it",
        f"  - {model}/config.json: vision_config: expected an object, got a list",
    ]
    assert cli("init", str(model)).code == 0  # without a card size those values are not read


def write(model: Path, name: str, text: str | bytes) -> Path:
    path = model / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("config.json", "[1, 2]", "expected a JSON object at the top level, got a list"),
        ("tokenizer_config.json", '"text"', "expected a JSON object at the top level, got a string"),
        ("config.json", "[" * 100_000 + "]" * 100_000, "is nested too deeply to be a model's config file"),
        (
            "config.json",
            '{"architectures": ["MiniCPMV"], "n": ' + "1" * 5000 + "}",
            "holds a number too long to read (more than 4300 digits)",
        ),
        ("generation_config.json", b'{"x": "\xff"}', "is not UTF-8 text (bad byte at offset 7)"),
        ("generation_config.json", '{"x": ', "is not valid JSON (Expecting value: line 1 column 7)"),
        ("chat_template.jinja", b"{{ messages }}\xc3", "is not UTF-8 text (bad byte at offset 14)"),
    ],
)
def test_a_file_of_the_wrong_shape_is_refused_by_name(cli, tmp_path, name, content, message):
    model = copy_model(tmp_path, "tiny-vlm")
    path = write(model, name, content)
    assert refused(cli, model, "--device", "cpu") == f"error: {path}: {message}\n"


@pytest.mark.parametrize(
    "name, cap", [("chat_template.jinja", 4), ("config.json", 4), ("generation_config.json", 1), ("tokenizer.json", 64)]
)
def test_every_file_init_reads_has_a_cap(cli, tmp_path, name, cap):
    model = copy_model(tmp_path, "tiny-vlm")
    with open(model / name, "ab") as handle:
        handle.truncate(1536 * 2**20)  # 1.5 GB, sparse: nothing is written, nothing may be read
    assert refused(cli, model, "--device", "cpu") == (
        f"error: {model / name}: is 1610612736 bytes; init reads at most {cap} MiB of it ({cap * 2**20} bytes)\n"
    )


def test_a_fifo_among_the_model_files_does_not_block(cli, tmp_path):
    model = copy_model(tmp_path, "tiny-vlm")
    (model / "chat_template.jinja").unlink()
    os.mkfifo(model / "chat_template.jinja")
    (model / "generation_config.json").unlink()
    os.mkfifo(model / "generation_config.json")
    assert cli("init", str(model), "--device", "cpu").code == 0  # neither is a file: both are left out


def test_names_that_are_not_names_are_never_repeated(cli, tmp_path):
    model = copy_model(
        tmp_path,
        "qwen2_5-vl-7b",
        **{"config.json": lambda c: c.update(architectures=["Evil\n  x: 1", 3, "Qwen2_5_VLForConditionalGen"])},
    )
    assert refused(cli, model) == (
        f"error: {model}/config.json: vLLM 0.32.0 serves none of its architectures ['Qwen2_5_VLForConditionalGen'] "
        "(and 2 not shown: not a class name) (closest: Qwen2_5_VLForConditionalGeneration); see "
        "deploy/data/vllm-architectures.json\n"
    )


def test_a_checkpoint_value_that_is_not_a_number_is_described_not_copied(tmp_path):
    model = copy_model(
        tmp_path, "tiny-vlm", **{"processor_config.json": lambda c: c.update(image_seq_len="16\narchitecture: X")}
    )
    text, data = drafted(model, device="cpu")
    assert "architecture" not in data["model"]
    assert "image_seq_len is (a string) here, 16 there" in text and "architecture: X" not in text


def test_a_snapshot_name_becomes_the_revision_only_when_it_is_a_commit(tmp_path):
    snapshot = hub_cache(tmp_path / "hub", "openbmb/MiniCPM-V-2_6", "minicpm-v-2_6", commit="main\nx")
    (snapshot.parent.parent / "refs" / "main").write_bytes(b"\xff" * 10)
    text, data = drafted("openbmb/MiniCPM-V-2_6", env={"HF_HOME": str(tmp_path)})
    assert "revision" not in data["model"]
    assert "  # revision: COMMIT   # no snapshot commit found: pin one with trust-remote-code\n" in text


def test_tiny_floats_read_back_as_numbers(tmp_path):
    model = copy_model(
        tmp_path, "qwen2_5-vl-7b", **{"generation_config.json": lambda c: c.update(temperature=1e-07, top_p=1e-05)}
    )
    text, data = drafted(model)
    assert "  temperature: 1.0e-07   # the model's own generation_config.json\n" in text
    assert (data["generation"]["temperature"], data["generation"]["top-p"]) == (1e-07, 1e-05)


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--gpu-memory-gib", "nan"],
            "init: --gpu-memory-gib sizes a GPU profile (a number of GiB above 0, at most "
            "10000); a CPU profile sizes its KV cache with engine.kv-cache-space-gib",
        ),
        (
            ["--gpu-memory-gib", "inf"],
            "init: --gpu-memory-gib sizes a GPU profile (a number of GiB above 0, at most "
            "10000); a CPU profile sizes its KV cache with engine.kv-cache-space-gib",
        ),
        (
            ["--name", "x\n  max-tokens: 1"],
            "init: --name: expected lowercase letters, digits, '-' and '_', starting and "
            "ending with a letter or digit, at most 40 characters",
        ),
        (
            ["--images", "0"],
            "init: --images 0 is not drafted for a multimodal model; draft with --images 1, then set "
            "engine.limit-mm-per-prompt.image to 0",
        ),
    ],
)
def test_options_are_checked_before_anything_is_read(cli, options, message):
    assert refused(cli, MODELS / "qwen2_5-vl-7b", *options) == f"error: {message}\n"


def test_a_model_path_a_profile_cannot_hold_is_refused(cli, tmp_path):
    model = tmp_path / "my model"
    shutil.copytree(MODELS / "qwen2_5-vl-7b", model)
    assert refused(cli, model) == (
        f"error: {model}: a profile's model.source takes an absolute path of letters, "
        "digits and '.', '_', '+', '-', e.g. /models/minicpm-v-2_6; move or link the model "
        "directory to such a path\n"
    )


def test_init_o_where_it_cannot_write_is_one_line(cli, tmp_path, monkeypatch):
    source = str(MODELS / "qwen2_5-vl-7b")
    assert cli("init", source, "-o", str(tmp_path)).err == (
        f"error: {tmp_path}: is a directory; expected a file name for the profile\n"
    )
    assert (
        cli("init", source, "-o", str(tmp_path / "no" / "p.yaml")).err == f"error: {tmp_path}/no: no such directory\n"
    )
    (tmp_path / "file").write_text("x")
    assert cli("init", source, "-o", str(tmp_path / "file" / "p.yaml")).err == (
        f"error: {tmp_path}/file: no such directory\n"
    )

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    result = cli("init", source, "-o", str(tmp_path / "p.yaml"))
    assert (result.code, result.err) == (
        2,
        f"error: {tmp_path}/p.yaml: cannot be written (Permission denied); nothing was written\n",
    )
    monkeypatch.undo()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    result = cli("init", source, "-o", str(tmp_path / "p.yaml"))
    assert (result.code, result.err) == (
        2,
        f"error: {tmp_path}/p.yaml: cannot be written (No space left on device); nothing was written\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing staged is left behind
