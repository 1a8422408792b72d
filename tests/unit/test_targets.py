"""The projections (deploy/targets/): each target's spellings live in its own projection, the neutral Plan
holds none of them, and both targets agree on what they share (the port the engines answer on)."""

from __future__ import annotations

import re

import pytest
import yaml

from deploy.plan import resolve
from deploy.plan.constants import CONTAINER_PORT, INSTANCE_LABEL, NAME_LABEL
from deploy.render import render
from deploy.spec import Profile, builtin_names, load_profile, locate, parse_profile
from deploy.targets import compose_plan, kubernetes_plan
from tests.conftest import REPO

REFS = [*builtin_names(), *sorted(str(p) for p in (REPO / "tests" / "profiles").glob("*.yaml"))]


@pytest.mark.parametrize("ref", REFS)
def test_the_neutral_plan_holds_no_targets_spelling(ref):
    plan = resolve(load_profile(ref))
    text = plan.model_dump_json()
    assert '"CMD"' not in text  # compose's health-check form
    assert not re.search(r'"\d+Gi"', text) and not re.search(r'"\d+g"', text)  # sizes are GiB numbers
    assert not re.search(r'"[^"]*:\d+:\d+"', text)  # compose's HOST:PORT:CONTAINER


@pytest.mark.parametrize("ref", REFS)
def test_each_projection_spells_the_same_sizes_its_own_way(ref):
    plan = resolve(load_profile(ref))
    compose, kube = compose_plan(plan), kubernetes_plan(plan)
    assert (compose.shm_size, compose.memory_limit) == (f"{plan.shm_size_gib}g", f"{plan.memory_gib}g")
    assert (kube.shm_size, kube.memory_limit) == (f"{plan.shm_size_gib}Gi", f"{plan.memory_gib}Gi")
    assert compose.healthcheck == ["CMD", *plan.health_command]
    assert compose.published_port.endswith(f":{plan.port}:{CONTAINER_PORT}")
    assert kube.replicas == plan.replicas == len(plan.instances)
    assert kube.selector == {NAME_LABEL: "vllm", INSTANCE_LABEL: kube.object_name}


@pytest.mark.parametrize("ref", ["tiny-cpu-x2", str(REPO / "tests" / "profiles" / "kitchen-sink.yaml")])
def test_the_router_reaches_the_engines_on_their_port_on_both_targets(ref):
    plan = resolve(load_profile(ref))
    compose, kube = compose_plan(plan), kubernetes_plan(plan)
    assert plan.router is not None and compose.router_argv is not None and kube.router is not None
    urls = compose.router_argv[1 : compose.router_argv.index("--host")]
    assert urls == [i.url for i in plan.instances] and all(u.endswith(f":{CONTAINER_PORT}") for u in urls)
    argv = kube.router.argv
    assert argv[argv.index("--service-discovery-port") + 1] == str(CONTAINER_PORT)
    assert kube.engine_service_port == CONTAINER_PORT
    # Everything but where the workers are is the plan's, unchanged, on both targets.
    assert (
        compose.router_argv[-len(plan.router.argv) :] == kube.router.argv[-len(plan.router.argv) :] == plan.router.argv
    )


# Driver-aware scheduling (#19, item 8): a CUDA image's driver minimum as a required node affinity on the labels
# NVIDIA GPU feature discovery puts on GPU nodes.
DRIVER_LABELS = ["nvidia.com/cuda.driver-version.major", "nvidia.com/cuda.driver.major"]


def qwen_with(image: str = "", kubernetes: str = "") -> Profile:
    """qwen2_5-vl-7b's own text with lines added to its image and kubernetes sections, validated as a user's."""
    text = locate("qwen2_5-vl-7b").read_text(encoding="utf-8")
    text = text.replace("\nimage:\n", f"\nimage:\n{image}", 1).replace(
        "\nkubernetes:\n", f"\nkubernetes:\n{kubernetes}", 1
    )
    return parse_profile(text, "qwen-variant.yaml")


def pod_affinity(profile: Profile) -> dict | None:
    files = render(resolve(profile))
    deployment = yaml.safe_load(files[f"k8s/{profile.name}/deployment.yaml"])
    return deployment["spec"]["template"]["spec"].get("affinity")


def driver_terms(more_than: int, *also: dict) -> list[dict]:
    return [
        {"matchExpressions": [*also, {"key": label, "operator": "Gt", "values": [str(more_than)]}]}
        for label in DRIVER_LABELS
    ]


@pytest.mark.parametrize("name", ["minicpm-v-2_6", "qwen2_5-vl-7b"])
def test_gpu_deployments_land_only_where_the_driver_runs_cuda_13(name):
    """The default official tag (CUDA 13) needs driver 580 or newer: either GFD label, major above 579."""
    profile = load_profile(name)
    affinity = pod_affinity(profile)
    assert affinity == {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": driver_terms(579)}}
    }
    text = (REPO / "k8s" / name / "deployment.yaml").read_text(encoding="utf-8")
    assert "driver >= 580.65.06; an older one fails at CUDA init" in text  # the why, in the manifest
    assert "kubernetes.driver-affinity: false" in text
    if name == "minicpm-v-2_6":  # the host model's node selector stays beside it (both must hold)
        spec = yaml.safe_load(text)["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {"vllm-deploy/model": "minicpm-v-2_6"}


def test_the_driver_minimum_follows_the_base_tag_from_doctors_table():
    """Every official tag of the data table doctor reads, through the same plan field: the number is not copied."""
    tags = resolve(load_profile("qwen2_5-vl-7b")).image.cuda_tags
    assert len(tags) >= 2
    for tag in tags:
        profile = qwen_with(image=f"  base: {tag.image}\n")
        plan = resolve(profile)
        assert plan.image.cuda == tag and plan.cluster.min_driver_major == int(tag.min_driver.split(".")[0])
        expected = {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": driver_terms(plan.cluster.min_driver_major - 1)
            }
        }
        assert pod_affinity(profile) == {"nodeAffinity": expected}, tag
    cu129 = pod_affinity(qwen_with(image="  base: vllm/vllm-openai:v0.32.0-cu129\n"))
    assert cu129 == {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": driver_terms(574)}}
    }


def test_driver_affinity_false_renders_none():
    assert pod_affinity(qwen_with(kubernetes="  driver-affinity: false\n")) is None
    profile = qwen_with(kubernetes="  driver-affinity: false\n")
    assert resolve(profile).cluster.min_driver_major is None


@pytest.mark.parametrize(
    "profile",
    [
        pytest.param(lambda: load_profile("tiny-cpu"), id="cpu"),
        pytest.param(lambda: load_profile(str(REPO / "tests" / "profiles" / "minimal-cpu.yaml")), id="cpu-fixture"),
        pytest.param(
            lambda: qwen_with(
                image="  base: registry.example.com/ml/vllm-cuda:1.0\n  registry: registry.example.com/ml\n"
            ),
            id="unknown-base",
        ),
    ],
)
def test_no_driver_requirement_for_cpu_or_an_unknown_base(profile):
    """Nothing known about what its driver needs: no guess rendered."""
    found = profile()
    assert resolve(found).cluster.min_driver_major is None
    assert pod_affinity(found) is None


def required_terms(profile: Profile) -> list[dict]:
    affinity = pod_affinity(profile)
    assert affinity is not None
    return affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


def test_the_profiles_node_affinity_holds_in_every_driver_term():
    """Terms are ORed: the profile's own requirement is repeated in each, or a node of either label would do."""
    profile = load_profile(str(REPO / "tests" / "profiles" / "kitchen-sink.yaml"))
    gpus = {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"],
    }
    assert required_terms(profile) == driver_terms(579, gpus)
    off = profile.model_copy(update={"kubernetes": profile.kubernetes.model_copy(update={"driver_affinity": False})})
    assert required_terms(off) == [{"matchExpressions": [gpus]}]


def test_the_neutral_plan_carries_the_driver_minimum_and_no_label_name():
    plan = resolve(load_profile("qwen2_5-vl-7b"))
    assert plan.cluster.min_driver_major == 580
    assert "nvidia.com/cuda" not in plan.model_dump_json()
    assert kubernetes_plan(plan).min_driver_major == 580
