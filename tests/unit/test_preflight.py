"""Preflight without Docker or a GPU: `judge` over facts handed in (nvidia-smi's CSV, a daemon's info),
the verdicts following vLLM's own rules."""

from __future__ import annotations

import json

from deploy.plan import resolve
from deploy.plan.memory import encoder_cache_gib
from deploy.runtime.preflight import (
    HostFacts,
    driver_check,
    failures,
    free_memory_check,
    judge,
    memory_check,
    parse_gpus,
)
from deploy.spec import load_profile
from deploy.spec.variant import write_variant
from tests.conftest import REPO


def read_gpus(csv: str):
    return parse_gpus(csv)


def smi(*rows: str) -> str:
    """The CSV nvidia-smi would print."""
    return "\n".join(rows) + "\n"


H200_IDLE = "0, 143771, 143240, 580.159.04"  # free/total 0.9963, measured on an idle H200


def test_nvidia_smi_csv_is_parsed_per_gpu():
    gpus = read_gpus(smi(H200_IDLE, "1, 81559, 1024, 580.159.04", "garbage line"))
    assert [(g.index, g.total_mib, g.free_mib, g.driver) for g in gpus] == [
        (0, 143771, 143240, "580.159.04"),
        (1, 81559, 1024, "580.159.04"),
    ]


def test_the_builtin_utilization_fits_an_idle_gpu_and_the_guides_1_would_not():
    plan = resolve(load_profile("minicpm-v-2_6"))
    check = free_memory_check(plan, read_gpus(smi(H200_IDLE)))
    assert check.verdict == "ok", check
    # The guide's value, as vLLM's request_memory sees it: 1.0 × total > free.
    guide = plan.model_copy(update={"engine": plan.engine.model_copy(update={"gpu_memory_utilization": 1.0})})
    check = free_memory_check(guide, read_gpus(smi(H200_IDLE)))
    assert check.verdict == "fail"
    assert check.detail == (
        "vLLM would refuse to start: gpu-memory-utilization 1.0 × 140.4 GiB = 140.4 GiB, but "
        "GPU 0 has 139.9 GiB free (0.5 GiB in use by other processes)"
    )
    assert check.fix == "stop what uses GPU 0, or lower engine.gpu-memory-utilization to 0.98"


def test_a_shared_gpu_fails_before_anything_is_built():
    plan = resolve(load_profile("minicpm-v-2_6"))
    check = free_memory_check(plan, read_gpus(smi("0, 24576, 12288, 580.65.06")))  # half taken by someone else
    assert check.verdict == "fail" and "GPU 0 has 12.0 GiB free" in check.detail
    assert check.fix.endswith("to 0.49")


def test_driver_new_enough_for_the_default_cuda_13_tag():
    plan = resolve(load_profile("minicpm-v-2_6"))
    check = driver_check(plan, read_gpus(smi(H200_IDLE)))
    assert (check.verdict, check.detail) == (
        "ok",
        "driver 580.159.04 runs vllm/vllm-openai:v0.32.0 (CUDA 13.0 needs ≥ 580.65.06)",
    )


def test_an_older_driver_is_told_which_tag_fits():
    plan = resolve(load_profile("minicpm-v-2_6"))
    check = driver_check(plan, read_gpus(smi("0, 81559, 80000, 575.57.08")))
    assert check.verdict == "fail"
    assert check.detail == "driver 575.57.08 is older than 580.65.06, which vllm/vllm-openai:v0.32.0 (CUDA 13.0) needs"
    assert check.fix == "set image.base: vllm/vllm-openai:v0.32.0-cu129 (CUDA 12.9, driver ≥ 575.51.03) in the profile"
    check = driver_check(plan, read_gpus(smi("0, 81559, 80000, 535.161.08")))
    assert check.fix == "upgrade the NVIDIA driver to 580.65.06 or newer"


def test_the_cu129_tag_runs_on_a_575_driver(tmp_path):
    profile = write_variant("minicpm-v-2_6", tmp_path / "p.yaml", {"image": {"base": "vllm/vllm-openai:v0.32.0-cu129"}})
    plan = resolve(load_profile(str(profile)))
    assert plan.image.build is False and plan.image.reference == "vllm/vllm-openai:v0.32.0-cu129"
    assert driver_check(plan, read_gpus(smi("0, 81559, 80000, 575.57.08"))).verdict == "ok"


def test_an_unknown_base_image_is_a_warning_not_a_guess(tmp_path):
    profile = write_variant(
        "minicpm-v-2_6",
        tmp_path / "p.yaml",
        {"image": {"base": "example.com/my/vllm:1.0", "registry": "registry.example.com/ml"}},
    )
    plan = resolve(load_profile(str(profile)))
    assert plan.image.build is True  # someone else's base: built on top, named ours
    assert driver_check(plan, read_gpus(smi(H200_IDLE))).verdict == "warn"


DAEMON = {"ServerVersion": "20.10.24", "Runtimes": {"runc": {}}}


def test_a_healthy_cpu_host_passes():
    plan = resolve(load_profile("tiny-cpu"))
    found = judge(plan, HostFacts(docker_info=DAEMON, compose_version="2.40.3"))
    assert [(c.name, c.verdict) for c in found] == [("docker daemon", "ok"), ("compose v2", "ok"), ("port", "ok")]


def test_no_daemon_no_compose_busy_port_missing_model_are_each_named_with_a_fix():
    plan = resolve(load_profile("minicpm-v-2_6"))
    found = judge(plan, HostFacts(docker_info=None, port_busy=True, model_dir_exists=False))
    assert failures(found) == [
        "docker daemon: the Docker daemon does not answer (fix: start it: `sudo systemctl start docker`, or "
        "`sudo dockerd &` without systemd (`make up` does))",
        "port: 127.0.0.1:8000 is already in use (fix: stop what listens there, or set server.port in the profile)",
        "model path: /root/ld/ld_model_pretrained/Minicpmv2_6 does not exist on this host (fix: copy the model there, "
        "or point model.source at it)",
    ]
    found = judge(plan, HostFacts(docker_info=DAEMON, compose_version="1.29.2"))
    assert "compose v2: `docker compose` (v2) is missing" in failures(found)[0]
    assert any(f.startswith("nvidia runtime: no NVIDIA container runtime") for f in failures(found))


def test_a_busy_port_held_by_this_stack_is_fine():
    plan = resolve(load_profile("tiny-cpu"))
    found = judge(plan, HostFacts(docker_info=DAEMON, compose_version="2.40.3", port_busy=True, serves_this_stack=True))
    assert ("port", "ok", "127.0.0.1:8000 serves this stack") in [(c.name, c.verdict, c.detail) for c in found]


def test_gpu_facts_add_driver_free_memory_and_estimate_checks():
    plan = resolve(load_profile("minicpm-v-2_6"))
    facts = HostFacts(
        docker_info={**DAEMON, "Runtimes": {"nvidia": {}}},
        compose_version="2.40.3",
        model_dir_exists=True,
        gpus=read_gpus(smi(H200_IDLE)),
        model_config={
            "hidden_size": 3584,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "intermediate_size": 18944,
            "vocab_size": 151666,
        },
    )
    found = {c.name: c for c in judge(plan, facts)}
    assert found["nvidia driver"].verdict == found["gpu free memory"].verdict == found["gpu memory"].verdict == "ok"
    assert found["gpu memory"].detail.startswith("needs ~14.")


QWEN_CONFIG = REPO / "tests" / "fixtures" / "models" / "qwen2_5-vl-7b" / "config.json"


def test_the_memory_estimate_adds_the_vision_encoder_cache(tmp_path):
    """vLLM's encoder cache holds max(max-num-batched-tokens, the largest image's embeddings) tokens of the language
    model's width (FACTS §4): 2048 x 3584 x 2 B on a 24 GB card, 8192 on an 80 GB one, 16384 x … with Qwen's own
    max_pixels (one image is 16384 embeddings)."""
    config = json.loads(QWEN_CONFIG.read_text())
    plan = resolve(load_profile("qwen2_5-vl-7b"))
    assert plan.vision is not None and plan.vision.image_embeddings == 1280
    small = memory_check(plan, read_gpus(smi("0, 24576, 24000, 580.65.06")), config)
    assert "vision encoder cache 0.01 (2048 tokens)" in small.detail
    # The vision tower's 32 layers of width 1280 (~0.63 B parameters) count too.
    assert "weights 14.2 + KV at max-model-len 0.9 + vision tower 1.2 + vision encoder cache" in small.detail
    large = memory_check(plan, read_gpus(smi("0, 81559, 81000, 580.65.06")), config)
    assert "vision encoder cache 0.05 (8192 tokens)" in large.detail
    assert encoder_cache_gib(config, "bfloat16", 1280, 80.0) * 2**30 == 8192 * 3584 * 2
    # Qwen's default max_pixels: one image alone fills 16384 tokens of cache, 112 MiB.
    wide = write_variant(
        "qwen2_5-vl-7b",
        tmp_path / "p.yaml",
        {"engine": {"max-model-len": 70000, "mm-processor-kwargs": {"max_pixels": 12845056}}},
    )
    wide_plan = resolve(load_profile(str(wide)))
    check = memory_check(wide_plan, read_gpus(smi("0, 24576, 24000, 580.65.06")), config)
    assert "vision encoder cache 0.11 (16384 tokens)" in check.detail
    assert encoder_cache_gib(config, "bfloat16", 16384, 24.0) * 2**30 == 117_440_512
    # No estimate without an architecture the data knows: weights and KV only, as before.
    plain = write_variant(
        "qwen2_5-vl-7b", tmp_path / "q.yaml", {"model": {"architecture": "LlavaForConditionalGeneration"}}
    )
    assert "encoder" not in memory_check(resolve(load_profile(str(plain))), [], config).detail
