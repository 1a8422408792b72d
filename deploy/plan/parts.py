"""The Plan's smaller parts, one planner each: storage, secrets, health, engine settings, the smoke test, and
what the profile asks of a cluster. resolve() composes them with the engine's, the image's, the router's
and monitoring's own planners."""

from __future__ import annotations

import math

from deploy.plan.constants import HEALTH_PATH, HOST_MODEL_DIR, HUB_CACHE_DIR
from deploy.plan.engine import API_KEY_VARIABLE, egress_plan
from deploy.plan.model import (
    ClusterSettings,
    CudaTag,
    EngineSettings,
    HealthPlan,
    SecretEnv,
    SmokePlan,
    StoragePlan,
    VisionPlan,
)
from deploy.spec import Profile, model_storage

STARTUP_PROBE_PERIOD_SECONDS = 10


def storage_plan(profile: Profile) -> StoragePlan:
    kind = model_storage(profile)
    if kind == "host":
        return StoragePlan(kind=kind, host_path=profile.model.source, container_path=HOST_MODEL_DIR)
    if kind == "hub":
        return StoragePlan(kind=kind, host_path=None, container_path=HUB_CACHE_DIR, revision=profile.model.revision)
    return StoragePlan(kind=kind, host_path=None, container_path=None)


def secrets(profile: Profile) -> list[SecretEnv]:
    """The engines' secrets: the API key. (The hub token is the fetch step's: deploy/plan/fetch.py.)"""
    return [SecretEnv(name=API_KEY_VARIABLE, source=profile.api_key.env, required=True)]


def health_plan(profile: Profile) -> HealthPlan:
    budget = profile.kubernetes.load_budget_seconds
    return HealthPlan(
        path=HEALTH_PATH,
        interval_seconds=profile.server.health_interval_seconds,
        timeout_seconds=5,
        retries=3,
        start_period_seconds=budget,
        startup_period_seconds=STARTUP_PROBE_PERIOD_SECONDS,
        startup_failure_threshold=math.ceil(budget / STARTUP_PROBE_PERIOD_SECONDS),
        # NB: readiness reacts within ~30 s; liveness waits ~60 s before restarting a server that stopped answering.
        readiness_period_seconds=10,
        liveness_period_seconds=20,
        failure_threshold=3,
    )


def health_command(python: str, port: int, health: HealthPlan) -> list[str]:
    """The health check as a command in the container: the image's Python, since minimal bases lack curl."""
    url = f"http://127.0.0.1:{port}{health.path}"
    return [
        python,
        "-c",
        f"import urllib.request; urllib.request.urlopen('{url}', timeout={health.timeout_seconds - 1})",
    ]


def engine_settings(profile: Profile) -> EngineSettings:
    e = profile.engine
    return EngineSettings(
        dtype=e.dtype,
        max_model_len=e.max_model_len,
        gpu_memory_utilization=e.gpu_memory_utilization,
        tensor_parallel_size=e.tensor_parallel_size,
        max_num_seqs=e.max_num_seqs,
        trust_remote_code=e.trust_remote_code,
    )


def smoke_plan(profile: Profile, vision: VisionPlan | None) -> SmokePlan:
    return SmokePlan(
        stop_token_ids=list(profile.smoke.stop_token_ids),
        prompt=profile.smoke.prompt,
        image_url=profile.smoke.image_url,
        max_images=profile.engine.limit_mm_per_prompt.get("image"),
        server_stop_token_ids=list(profile.generation.stop_token_ids) if profile.generation else [],
        image_tokens=vision.image_prompt_tokens if vision else None,
    )


def cluster_settings(profile: Profile, cuda: CudaTag | None) -> ClusterSettings:
    """`cuda`: the official image's CUDA build (plan.image.cuda, doctor's too), None for cpu or another base."""
    k = profile.kubernetes
    return ClusterSettings(
        namespace=k.namespace,
        create_namespace=k.create_namespace,
        service_type=k.service_type,
        storage_class=k.storage_class,
        storage_size_gib=k.storage_size_gib,
        storage_access_mode=k.storage_access_mode,
        node_selector=dict(k.node_selector),
        node_affinity={label: list(values) for label, values in k.node_affinity.items()},
        # NB: the major, as nodes are labelled with it; doctor checks the full version on a compose host.
        min_driver_major=int(cuda.min_driver.split(".")[0]) if cuda and k.driver_affinity else None,
        tolerations=[t.model_dump(exclude_none=True) for t in k.tolerations],
        runtime_class_name=k.runtime_class_name,
        clients=dict(k.network_policy_from) if k.network_policy_from is not None else None,
        egress=egress_plan(profile),
        prometheus_namespace=profile.monitoring.prometheus_namespace,
    )
