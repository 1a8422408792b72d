"""Model facts: what one image costs (deploy/data/models.yaml), the profile checks that follow, and the
server-side generation config. The numbers are those of FACTS (vLLM 0.32's own code, run on the fixtures)."""

from __future__ import annotations

import json

import pytest
import yaml

from deploy.errors import UserError
from deploy.facts import models_data
from deploy.plan import resolve
from deploy.render import render
from deploy.spec import load_profile, parse_profile
from deploy.spec.model_facts import (
    DEFAULT_ITEMS,
    FORMULAS,
    ImageCost,
    bounded_value,
    image_cost,
    served_by_vllm,
)
from deploy.spec.variant import write_variant
from deploy.targets import compose_plan, kubernetes_plan
from tests.conftest import FIXTURE_PROFILES

QWEN = "Qwen2_5_VLForConditionalGeneration"
TINY = "Idefics3ForConditionalGeneration"


def known_cost(architecture: str, kwargs: dict) -> ImageCost:
    cost = image_cost(architecture, kwargs)
    assert cost is not None, f"no image cost for {architecture}"
    return cost


@pytest.mark.parametrize(
    ("slices", "embeddings", "prompt"),
    [
        (1, 64, 69),
        (2, 192, 202),
        (4, 320, 336),
        (6, 448, 470),
        (9, 640, 671),
        (12, 832, 872),  # NB: vLLM profiles 640 here (its dummy image stops at 9 slices); a real image reaches 832
    ],
)
def test_minicpmv_image_cost_follows_max_slice_nums(slices, embeddings, prompt):
    cost = known_cost("MiniCPMV", {"max_slice_nums": slices})
    assert (cost.embeddings, cost.prompt_tokens) == (embeddings, prompt)


def test_minicpmv_without_image_ids_saves_their_three_markers():
    assert known_cost("MiniCPMV", {"use_image_id": False}).prompt_tokens == 668
    assert known_cost("MiniCPMV", {}).prompt_tokens == 671  # the checkpoint's defaults: 9 slices, image ids on


@pytest.mark.parametrize(
    ("max_pixels", "embeddings"), [(12845056, 16384), (1003520, 1280), (802816, 1024), (401408, 512), (784, 1)]
)
def test_qwen_vl_image_cost_follows_max_pixels(max_pixels, embeddings):
    cost = known_cost(QWEN, {"max_pixels": max_pixels})
    assert (cost.embeddings, cost.prompt_tokens) == (embeddings, embeddings + 2)  # <|vision_start|>, <|vision_end|>
    assert image_cost("Qwen2VLForConditionalGeneration", {"max_pixels": max_pixels}) == cost


def test_the_tiny_model_costs_at_most_94_tokens_an_image():
    """2 x 2 tiles and a global one of 16 tokens, with their markers (93 measured: its tokenizer merges "\\n\\n")."""
    assert known_cost(TINY, {}).prompt_tokens == 94 and known_cost(TINY, {}).embeddings == 80
    assert known_cost(TINY, {"do_image_splitting": False}).prompt_tokens == 19


def test_an_architecture_without_facts_has_no_cost():
    assert image_cost("LlavaForConditionalGeneration", {}) is None
    assert image_cost(None, {}) is None


def test_the_data_is_consistent():
    data = models_data()
    for name, facts in data["architectures"].items():
        assert served_by_vllm(name), name
        assert facts["image-tokens"]["formula"] in FORMULAS, name
        assert sum(bool(s.get("bounds-cost")) for s in facts["mm-processor-kwargs"].values()) == 1, name
        assert image_cost(name, {}) is not None
    assert [row["min-card-gib"] for row in data["max-num-batched-tokens"]] == sorted(
        (row["min-card-gib"] for row in data["max-num-batched-tokens"]), reverse=True
    )


def test_bounded_value_is_the_largest_setting_that_fits():
    assert bounded_value(QWEN, {}, 4095) == 4093 * 784  # a multiple of 784 px, one token each
    assert known_cost(QWEN, {"max_pixels": 4093 * 784}).prompt_tokens == 4095
    assert bounded_value(QWEN, {}, 10**6, cap=1003520) == 1003520
    assert bounded_value("MiniCPMV", {}, 604) == 8 and bounded_value("MiniCPMV", {}, 603) == 7
    assert bounded_value("MiniCPMV", {}, 68) is None  # one slice costs 69
    assert bounded_value(TINY, {}, 50) is False and bounded_value(TINY, {}, 10) is None


def test_built_in_profiles_fit_their_worst_case():
    expected = {
        "minicpm-v-2_6": ("MiniCPMV", 2, 671, 640),
        "qwen2_5-vl-7b": (QWEN, 4, 1282, 1280),
        "tiny-cpu": (TINY, 2, 94, 80),
    }
    for name, (architecture, images, prompt, embeddings) in expected.items():
        plan = resolve(load_profile(name))
        v = plan.vision
        assert v is not None, name
        assert (v.architecture, v.images, v.image_prompt_tokens, v.image_embeddings) == (
            architecture,
            images,
            prompt,
            embeddings,
        )
        assert v.worst_case_tokens == images * prompt < plan.engine.max_model_len
        assert plan.smoke.image_tokens == prompt


def profile_text(name: str, **edits: str) -> str:
    from deploy.spec.load import BUILTIN_DIR

    text = (BUILTIN_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def problems(text: str) -> list[str]:
    with pytest.raises(UserError) as caught:
        parse_profile(text, "p.yaml")
    return [p.format("p.yaml") for p in caught.value.problems]


def test_a_worst_case_over_max_model_len_names_both_numbers():
    """Qwen's own max_pixels lets one image cost 16386 tokens: four cannot fit 16384."""
    text = profile_text("qwen2_5-vl-7b", **{"  mm-processor-kwargs:\n    max_pixels: 1003520\n": ""})
    assert problems(text) == [
        "p.yaml:13: engine.max-model-len: 4 images (engine.limit-mm-per-prompt.image) × up to 16386 tokens each "
        "(Qwen2_5_VLForConditionalGeneration: max_pixels 12845056, min_pixels 3136) = 65544 image tokens, more than "
        "max-model-len 16384 holds beside the text and the answer: vLLM would refuse such requests (400). Fix: bound "
        "each image with engine.mm-processor-kwargs.max_pixels: 3208912 (4095 tokens an image); raise max-model-len "
        "above 65544"
    ]


def test_the_cli_exits_2_naming_both_numbers(cli, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        profile_text(
            "minicpm-v-2_6", **{"    image: 2\n": "    image: 3\n", "max-model-len: 2048": "max-model-len: 2000"}
        )
    )
    result = cli("validate", str(path))
    assert result.code == 2
    assert "3 images (engine.limit-mm-per-prompt.image) × up to 671 tokens each" in result.err
    assert "= 2013 image tokens, more than max-model-len 2000" in result.err
    assert (
        "Fix: lower engine.limit-mm-per-prompt.image to at most 2; bound each image with "
        "engine.mm-processor-kwargs.max_slice_nums: 8 (604 tokens an image); raise max-model-len above 2013"
    ) in result.err


def test_without_an_image_limit_vllm_takes_999_images():
    text = profile_text("minicpm-v-2_6", **{"    image: 2\n": ""})
    assert DEFAULT_ITEMS == 999
    (problem,) = problems(text)
    assert (
        "999 images (vLLM's default: engine.limit-mm-per-prompt sets no image count) × up to 671 tokens each" in problem
    )
    assert problem.endswith("Fix: set engine.limit-mm-per-prompt.image to at most 3; raise max-model-len above 670329")


def test_no_images_no_unknown_architecture_no_estimate(tmp_path):
    no_images = write_variant("minicpm-v-2_6", tmp_path / "a.yaml", {"engine": {"limit-mm-per-prompt": {"image": 0}}})
    assert resolve(load_profile(str(no_images))).vision is None
    # vLLM serves Llava, but the data has no facts on it: no estimate, and any processor key goes through.
    llava = write_variant(
        "minicpm-v-2_6",
        tmp_path / "b.yaml",
        {
            "model": {"architecture": "LlavaForConditionalGeneration"},
            "engine": {"mm-processor-kwargs": {"anything": "x"}},
        },
    )
    plan = resolve(load_profile(str(llava)))
    assert plan.vision is None and plan.smoke.image_tokens is None
    assert (
        plan.engine_flags[plan.engine_flags.index("--mm-processor-kwargs") + 1] == '{"anything":"x","max_slice_nums":9}'
    )


def test_architecture_and_processor_keys_are_checked():
    text = profile_text(
        "minicpm-v-2_6",
        **{
            "architecture: MiniCPMV ": "architecture: MiniCPM_V ",
            "    max_slice_nums: 9\n": "    max_slice_nums: 0\n    max_slices: 2\n",
        },
    )
    assert problems(text) == [
        "p.yaml:13: model.architecture: 'MiniCPM_V' is not an architecture vLLM 0.32.0 serves (did you mean "
        "'MiniCPMV'?); see deploy/data/vllm-architectures.json",
    ]
    text = profile_text(
        "minicpm-v-2_6",
        **{"    max_slice_nums: 9\n": "    max_slice_nums: 0\n    max_slices: 2\n    use_image_id: 1\n"},
    )
    assert problems(text) == [
        "p.yaml:28: engine.mm-processor-kwargs.max_slice_nums: expected an integer from 1 to 100, got 0",
        "p.yaml:29: engine.mm-processor-kwargs.max_slices: not a setting vllm-deploy knows for MiniCPMV (did you mean "
        "'max_slice_nums'?); expected one of: max_slice_nums, use_image_id",
        "p.yaml:30: engine.mm-processor-kwargs.use_image_id: expected true or false",
    ]


def test_processor_settings_are_plain_values():
    text = profile_text(
        "tiny-cpu",
        **{
            "  limit-mm-per-prompt:\n": "  mm-processor-kwargs: {size: {longest_edge: 1}, "
            '"a b": 1}\n  limit-mm-per-prompt:\n'
        },
    )
    assert problems(text) == [
        "p.yaml:21: engine.mm-processor-kwargs.a b: expected a processor keyword like max_pixels (letters, digits and '_')",
        "p.yaml:21: engine.mm-processor-kwargs.size: expected a number, true/false or a short string (nested settings "
        "are not supported)",
    ]


def test_generation_flags_are_the_profiles_to_set():
    modelled = profile_text(
        "tiny-cpu",
        **{
            "  kv-cache-space-gib: 1\n": "  kv-cache-space-gib: 1\n  extra-args: "
            "[--generation-config, /x, --mm-processor-kwargs, '{}']\n"
        },
    )
    assert problems(modelled) == [
        "p.yaml:21: engine.extra-args: item 0: '--generation-config' duplicates generation: set the profile field "
        "instead; item 2: '--mm-processor-kwargs' duplicates engine.mm-processor-kwargs: set the profile field instead"
    ]
    override = profile_text(
        "tiny-cpu",
        **{
            "  kv-cache-space-gib: 1\n": "  kv-cache-space-gib: 1\n  extra-args: [--override-generation-config, '{}']\n"
        },
    )
    assert problems(override) == [
        "p.yaml:21: engine.extra-args: item 0: --override-generation-config duplicates the generation section: set "
        "the value there"
    ]
    # Without a generation section the override stays an escape hatch over the model's own file.
    assert parse_profile(override.split("\n# Server-side defaults")[0], "p.yaml").generation is None


def test_the_generation_config_holds_only_what_the_profile_sets():
    tiny, qwen = (resolve(load_profile(name)).generation for name in ("tiny-cpu", "qwen2_5-vl-7b"))
    assert tiny is not None and qwen is not None
    assert tiny.config == {"eos_token_id": [151645, 151643, 151648], "max_new_tokens": 32}
    # The model's own sampling defaults, restated (this file replaces the model's); do_sample keeps transformers quiet.
    assert qwen.config == {
        "eos_token_id": [151645, 151643],
        "temperature": 0.1,
        "top_p": 0.001,
        "top_k": 1,
        "repetition_penalty": 1.05,
        "do_sample": True,
    }
    assert resolve(load_profile(str(FIXTURE_PROFILES / "minimal-cpu.yaml"))).generation is None


def test_the_generation_config_is_mounted_where_vllm_is_pointed(tmp_path):
    plan = resolve(load_profile("tiny-cpu"))
    generation = plan.generation
    assert generation is not None
    files = render(plan)
    assert json.loads(files["compose/tiny-cpu/generation_config.json"]) == generation.config
    assert files["k8s/tiny-cpu/generation_config.json"] == files["compose/tiny-cpu/generation_config.json"]
    compose = yaml.safe_load(files["compose/tiny-cpu/compose.yaml"])
    service = compose["services"]["vllm"]
    (edge, mount) = service["configs"]  # the key-check module first, then the generation config
    assert edge["target"] == f"{plan.edge.directory}/{plan.edge.file_name}"
    assert compose["configs"][mount["source"]] == {"file": "./generation_config.json"}
    assert mount["target"] == f"{generation.directory}/generation_config.json"
    assert service["command"][service["command"].index("--generation-config") + 1] == generation.directory
    kustomization = yaml.safe_load(files["k8s/tiny-cpu/kustomization.yaml"])
    assert kustomization["configMapGenerator"] == [
        {"name": "tiny-cpu-edge", "files": ["vllm_deploy_edge.py"]},
        {"name": "tiny-cpu-generation", "files": ["generation_config.json"]},
    ]
    # A new file content, a new compose config name: `docker compose up` then recreates the container.
    changed = write_variant("tiny-cpu", tmp_path / "p.yaml", {"generation": {"max-tokens": 16}})
    changed_generation = resolve(load_profile(str(changed))).generation
    assert changed_generation is not None
    assert changed_generation.digest != generation.digest
    changed_plan = resolve(load_profile(str(changed)))
    assert compose_plan(changed_plan).generation_config != compose_plan(plan).generation_config
    assert kubernetes_plan(changed_plan).generation_configmap == kubernetes_plan(plan).generation_configmap
