"""GPU preflight without a GPU: nvidia-smi's CSV is handed in, the verdicts follow vLLM's own rules."""

from __future__ import annotations

from deploy.doctor import driver_check, free_memory_check, read_gpus
from deploy.plan import resolve
from deploy.spec import load_profile
from deploy.spec.variant import write_variant


def smi(*rows: str):
    """A stand-in for running nvidia-smi: returns the CSV it would print."""
    return lambda command: "\n".join(rows) + "\n"


H200_IDLE = "0, 143771, 143240, 580.159.04"  # free/total 0.9963, measured on an idle H200


def test_nvidia_smi_csv_is_parsed_per_gpu():
    gpus = read_gpus(smi(H200_IDLE, "1, 81559, 1024, 580.159.04", "garbage line"))
    assert [(g.index, g.total_mib, g.free_mib, g.driver) for g in gpus] == [
        (0, 143771, 143240, "580.159.04"), (1, 81559, 1024, "580.159.04")]


def test_the_builtin_utilization_fits_an_idle_gpu_and_the_guides_1_would_not():
    plan = resolve(load_profile("minicpm-v-2_6"))
    check = free_memory_check(plan, read_gpus(smi(H200_IDLE)))
    assert check.verdict == "ok", check
    # The guide's value, as vLLM's request_memory sees it: 1.0 × total > free.
    guide = plan.model_copy(update={"engine": plan.engine.model_copy(update={"gpu_memory_utilization": 1.0})})
    check = free_memory_check(guide, read_gpus(smi(H200_IDLE)))
    assert check.verdict == "fail"
    assert check.detail == ("vLLM would refuse to start: gpu-memory-utilization 1.0 × 140.4 GiB = 140.4 GiB, but "
                            "GPU 0 has 139.9 GiB free (0.5 GiB in use by other processes)")
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
        "ok", "driver 580.159.04 runs vllm/vllm-openai:v0.32.0 (CUDA 13.0 needs ≥ 580.65.06)")


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
    profile = write_variant("minicpm-v-2_6", tmp_path / "p.yaml", {"image": {"base": "example.com/my/vllm:1.0"}})
    plan = resolve(load_profile(str(profile)))
    assert plan.image.build is True  # someone else's base: built on top, named ours
    assert driver_check(plan, read_gpus(smi(H200_IDLE))).verdict == "warn"
