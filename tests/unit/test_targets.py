"""The projections (deploy/targets/): each target's spellings live in its own projection, the neutral Plan
holds none of them, and both targets agree on what they share (the port the engines answer on)."""

from __future__ import annotations

import re

import pytest

from deploy.plan import resolve
from deploy.plan.constants import CONTAINER_PORT, INSTANCE_LABEL, NAME_LABEL
from deploy.spec import builtin_names, load_profile
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
