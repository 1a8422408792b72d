"""`vllm-deploy init`: profiles drafted from a model's own files validate, render, and say where each value came from.

The fixtures are config files without weights (tests/fixtures/models/*/SOURCE.md): Qwen2.5-VL-7B's are copies of
the upstream files, MiniCPM-V 2.6's are reconstructions from cited facts (not byte copies), tiny-vlm's are the
project's own fabricated model's. tests/integration/test_engine.py runs init on a freshly fabricated tiny model.
"""

from __future__ import annotations

import json
import shutil
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
    assert ("# 151645: <|im_end|>: eos_token_id of generation_config.json; 151643: <|endoftext|>: the tokenizer's pad "
            "token") in text
    assert data["engine"]["mm-processor-kwargs"] == {"max_slice_nums": 9}  # the model's own preprocessor value
    assert data["engine"]["limit-mm-per-prompt"] == {"image": 2, "video": 0}
    assert data["kubernetes"]["node-selector"] == {"vllm-deploy/model": "minicpm-v-2_6"}
    files = renders(text)
    assert json.loads(files["compose/minicpm-v-2_6/generation_config.json"]) == {"eos_token_id": [151645, 151643]}


def test_qwen_restates_its_sampling_defaults_and_bounds_its_images():
    text, data = drafted(MODELS / "qwen2_5-vl-7b")
    assert data["model"]["architecture"] == "Qwen2_5_VLForConditionalGeneration"
    assert data["engine"]["trust-remote-code"] is False
    assert data["generation"] == {"stop-token-ids": [151645, 151643], "temperature": 0.1, "top-p": 0.001, "top-k": 1,
                                  "repetition-penalty": 1.05}
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
    with pytest.raises(UserError, match=r"does not fit a 16 GiB card: weights ~15.4 GiB, vision encoder cache ~0.01 "
                                        r"GiB and ~2.0 GiB of CUDA context and activations leave room for 0 tokens"):
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
    files = renders(text)
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
    assert "node-selector" not in data["kubernetes"]
    plan = resolve(parse_profile(text, "m.yaml"))
    assert plan.storage.kind == "hub" and plan.warnings == []


def test_a_hub_id_without_local_files_says_how_to_get_them(tmp_path):
    with pytest.raises(UserError) as caught:
        init_profile("Qwen/Qwen2.5-VL-7B-Instruct", env={"HF_HOME": str(tmp_path)})
    assert f"Qwen/Qwen2.5-VL-7B-Instruct: its config files are not on this machine (looked in {tmp_path}/hub)" in str(
        caught.value)
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
    model = copy_model(tmp_path, "qwen2_5-vl-7b", **{"config.json": lambda c: c.update(
        architectures=["Qwen2_5_VLForConditionalGen"])})
    with pytest.raises(UserError, match=r"vLLM 0.32.0 serves none of its architectures \['Qwen2_5_VLForConditionalGen'\] "
                                        r"\(closest: Qwen2_5_VLForConditionalGeneration\); see deploy/data/vllm-arch"):
        init_profile(str(model))


def test_a_checkpoint_unlike_the_datas_gets_no_estimate(tmp_path):
    """Another Idefics3 (SmolVLM-like image_seq_len): the architecture is left out rather than estimated wrongly."""
    model = copy_model(tmp_path, "tiny-vlm", **{"processor_config.json": lambda c: c.update(image_seq_len=169)})
    text, data = drafted(model)
    assert "architecture" not in data["model"]
    assert ("# architecture: Idefics3ForConditionalGeneration   # left out, so no image-token estimate: the "
            "image-token facts of deploy/data/models.yaml are vllm-deploy tiny-vlm (deploy/assets/tiny_model.py)'s: "
            "image_seq_len is 169 here, 16 there") in text
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
