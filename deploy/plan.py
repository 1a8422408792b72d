"""Everything derived from a profile, computed once: the vLLM argument list above all.

`resolve(profile) -> Plan` is pure. Templates see only the Plan, so no template ever maps a
setting to a flag or picks a default.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, computed_field

from deploy.paths import BUILD_ASSETS, TEMPLATE_DIR
from deploy.profile import Profile, gpu_count, model_storage

DEVICES_FILE = Path(__file__).parent / "data" / "devices.yaml"
CONTAINER_PORT = 8000  # NB: fixed inside the container; the profile's port is the published one
HUB_CACHE_DIR = "/models/hf-cache"
WRITABLE_CACHE_DIR = "/var/cache/vllm"
HEALTH_PATH = "/health"
STARTUP_PROBE_PERIOD_SECONDS = 10
# The vLLM container's own command words; the Plan's argv follows them.
ENTRYPOINT = ("vllm", "serve")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImagePlan(_Frozen):
    tag: str  # local tag; its suffix hashes only the image inputs, so runtime changes reuse the image
    base: str
    template: str
    vllm_version: str
    python: str
    run_as_user: int | None
    engine_env: list[str]  # NAME=value settings for the engine-venv script (CPU images)
    extra_pip: list[str]
    ca_bundle: str | None  # host file handed to the build as a BuildKit secret


class StoragePlan(_Frozen):
    kind: Literal["host", "hub", "tiny"]
    host_path: str | None  # host: the directory on the host (and on the Kubernetes node)
    container_path: str | None  # where the weights (host) or the hub cache (hub) appear in the container


class SecretEnv(_Frozen):
    name: str  # variable inside the container
    source: str  # variable in the user's environment / .env / Kubernetes env file
    required: bool


class HealthPlan(_Frozen):
    path: str
    interval_seconds: int
    timeout_seconds: int
    retries: int
    start_period_seconds: int
    startup_period_seconds: int
    startup_failure_threshold: int


class KubernetesPlan(_Frozen):
    object_name: str
    namespace: str
    replicas: int
    labels: dict[str, str]
    selector: dict[str, str]
    secret_name: str
    pvc_name: str | None
    storage_class: str | None
    storage_size: str
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    runtime_class_name: str | None
    service_type: str
    network_policy_from: dict[str, str] | None
    # NB: the root filesystem is read-only; vLLM, torch and triton write only under these.
    writable_dirs: dict[str, str]  # volume name -> mount path (emptyDir)
    cache_env: dict[str, str]
    memory_request: str
    memory_limit: str
    shm_size: str
    cpus: int | None


class SmokePlan(_Frozen):
    stop_token_ids: list[int]
    prompt: str
    image_url: str
    max_images: int | None


class Plan(_Frozen):
    name: str
    description: str
    device: Literal["cuda", "cpu"]
    image: ImagePlan
    model: str  # what vLLM loads: a path inside the container or a hub id
    served_model_name: str
    entrypoint: list[str]
    engine_flags: list[str]  # every flag but model, host and port
    environment: dict[str, str]  # non-secret
    secrets: list[SecretEnv]
    bind_address: str
    port: int
    container_port: int
    gpus: int
    shm_size: str  # compose spelling, e.g. 8g
    memory_limit: str  # compose spelling
    cpus: int | None
    storage: StoragePlan
    health: HealthPlan
    health_command: list[str]  # compose healthcheck; the image's Python, since minimal bases lack curl
    kubernetes: KubernetesPlan
    smoke: SmokePlan
    warnings: list[str]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def argv(self) -> list[str]:
        """The container's arguments after the entrypoint: `vllm serve <argv>`."""
        return serve_argv(self.model, "0.0.0.0", self.container_port, self.engine_flags)


@cache
def device_facts() -> dict[str, Any]:
    return yaml.safe_load(DEVICES_FILE.read_text(encoding="utf-8"))


def engine_flags(profile: Profile, served_model_name: str) -> list[str]:
    """The vLLM flags a profile sets, one spelling (kebab case), only where they differ from vLLM's defaults."""
    e = profile.engine
    flags = ["--served-model-name", served_model_name]
    if profile.model.revision:
        flags += ["--revision", profile.model.revision]
    flags += ["--dtype", e.dtype, "--max-model-len", str(e.max_model_len)]
    flags += ["--gpu-memory-utilization", str(float(e.gpu_memory_utilization))]
    if e.trust_remote_code:
        flags.append("--trust-remote-code")
    if e.tensor_parallel_size != 1:
        flags += ["--tensor-parallel-size", str(e.tensor_parallel_size)]
    if e.max_num_seqs is not None:
        flags += ["--max-num-seqs", str(e.max_num_seqs)]
    if e.enforce_eager:
        flags.append("--enforce-eager")
    if e.limit_mm_per_prompt:
        flags += ["--limit-mm-per-prompt", json.dumps(e.limit_mm_per_prompt, separators=(",", ":"), sort_keys=True)]
    if profile.media.allowed_domains:
        flags += ["--allowed-media-domains", *profile.media.allowed_domains]
    if e.kv_cache_space_gib is not None:
        # NB: an explicit KV cache size makes gpu-memory-utilization irrelevant (on CPU it would reserve RAM).
        flags += ["--kv-cache-memory-bytes", str(e.kv_cache_space_gib * 2**30)]
    return flags + list(e.extra_args)


def serve_argv(model: str, host: str, port: int, flags: list[str]) -> list[str]:
    """`vllm serve` arguments. The one place the positional model, host and port are placed."""
    return [model, flags[0], flags[1], "--host", host, "--port", str(port), *flags[2:]]


def _environment(profile: Profile, storage: StoragePlan) -> dict[str, str]:
    env = {
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        # A client-supplied URL must not hold a request (and a worker) for minutes.
        "VLLM_IMAGE_FETCH_TIMEOUT": str(profile.media.fetch_timeout_seconds),
        "VLLM_MEDIA_FETCH_MAX_RETRIES": str(profile.media.fetch_max_retries),
    }
    if storage.kind == "hub":
        env["HF_HOME"] = HUB_CACHE_DIR
    else:
        # Weights are local: never reach for the hub, fail fast instead of hanging on a network call.
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def _warnings(profile: Profile, storage: str) -> list[str]:
    found = []
    gmu = profile.engine.gpu_memory_utilization
    if profile.image.device == "cuda" and gmu >= 0.95:
        found.append(
            f"engine.gpu-memory-utilization {gmu} leaves no headroom for activations, CUDA graphs or other "
            "processes on the GPU: out-of-memory at start-up is likely; 0.9 is a safer value"
        )
    if profile.engine.trust_remote_code and storage == "hub" and not profile.model.revision:
        found.append(
            "engine.trust-remote-code runs Python code from the model repository, and model.revision is not "
            "pinned: a new upstream commit changes the code you run; pin model.revision to a commit"
        )
    return found


@cache
def build_recipe_digest() -> str:
    """Digest of what an image build runs (Dockerfile templates, copied scripts): a new recipe, a new tag."""
    digest = hashlib.sha256()
    for path in sorted((TEMPLATE_DIR / "docker").glob("*.j2")) + [BUILD_ASSETS[k] for k in sorted(BUILD_ASSETS)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _image_tag(name: str, inputs: dict[str, Any]) -> str:
    payload = json.dumps({**inputs, "recipe": build_recipe_digest()}, sort_keys=True).encode()
    return f"vllm-deploy/{name}:{hashlib.sha256(payload).hexdigest()[:12]}"


def resolve(profile: Profile) -> Plan:
    facts = device_facts()[profile.image.device]
    kind = model_storage(profile)
    if kind == "host":
        storage = StoragePlan(kind=kind, host_path=profile.model.source, container_path=profile.model.source)
    elif kind == "hub":
        storage = StoragePlan(kind=kind, host_path=None, container_path=HUB_CACHE_DIR)
    else:
        storage = StoragePlan(kind=kind, host_path=None, container_path=None)

    image_inputs = {
        "base": profile.image.base or facts["base-image"],
        "template": facts["template"],
        "vllm_version": facts["vllm-version"],
        "python": facts["python"],
        "run_as_user": facts["run-as-user"],
        "engine_env": [f"{k}={v}" for k, v in facts.get("engine-env", {}).items()],
        "extra_pip": list(profile.image.extra_pip),
    }
    # NB: the CA bundle is a build secret, not an image input: it must not change the tag.
    image = ImagePlan(tag=_image_tag(profile.name, image_inputs), ca_bundle=profile.image.ca_bundle, **image_inputs)

    served = profile.model.served_name or profile.model.source

    secrets = [SecretEnv(name="VLLM_API_KEY", source=profile.api_key.env, required=True)]
    if kind == "hub":
        secrets.append(SecretEnv(name="HF_TOKEN", source="HF_TOKEN", required=False))

    budget = profile.kubernetes.load_budget_seconds
    health = HealthPlan(
        path=HEALTH_PATH,
        interval_seconds=profile.server.health_interval_seconds,
        timeout_seconds=5,
        retries=3,
        start_period_seconds=budget,
        startup_period_seconds=STARTUP_PROBE_PERIOD_SECONDS,
        startup_failure_threshold=math.ceil(budget / STARTUP_PROBE_PERIOD_SECONDS),
    )

    k8s_name = profile.name.replace("_", "-")  # NB: Kubernetes object names are DNS-1123: no "_"
    selector = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": k8s_name}
    labels = {
        **selector,
        "app.kubernetes.io/version": image.vllm_version,
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/part-of": "vllm-deploy",
        "app.kubernetes.io/managed-by": "vllm-deploy",
    }
    k = profile.kubernetes
    r = profile.resources
    kubernetes = KubernetesPlan(
        namespace=k.namespace,
        replicas=k.replicas,
        labels=labels,
        selector=selector,
        object_name=k8s_name,
        secret_name=f"{k8s_name}-secrets",
        pvc_name=f"{k8s_name}-models" if kind == "hub" else None,
        storage_class=k.storage_class,
        storage_size=f"{k.storage_size_gib}Gi",
        node_selector=dict(k.node_selector),
        tolerations=list(k.tolerations),
        runtime_class_name=k.runtime_class_name,
        service_type=k.service_type,
        network_policy_from=dict(k.network_policy_from) if k.network_policy_from is not None else None,
        writable_dirs={"tmp": "/tmp", "cache": WRITABLE_CACHE_DIR},
        cache_env={
            "XDG_CACHE_HOME": WRITABLE_CACHE_DIR,  # vLLM's cache root and other ~/.cache users follow it
            "TRITON_CACHE_DIR": f"{WRITABLE_CACHE_DIR}/triton",
        },
        # NB: request = limit makes the pod Guaranteed for memory: vLLM's footprint is fixed once loaded.
        memory_request=f"{r.memory_gib}Gi",
        memory_limit=f"{r.memory_gib}Gi",
        shm_size=f"{r.shm_size_gib}Gi",
        cpus=r.cpus,
    )
    smoke = SmokePlan(
        stop_token_ids=list(profile.smoke.stop_token_ids),
        prompt=profile.smoke.prompt,
        image_url=profile.smoke.image_url,
        max_images=profile.engine.limit_mm_per_prompt.get("image"),
    )
    return Plan(
        name=profile.name,
        description=profile.description,
        device=profile.image.device,
        image=image,
        model=profile.model.source,
        served_model_name=served,
        entrypoint=list(ENTRYPOINT),
        engine_flags=engine_flags(profile, served),
        environment=_environment(profile, storage),
        secrets=secrets,
        bind_address=profile.server.bind_address,
        port=profile.server.port,
        container_port=CONTAINER_PORT,
        gpus=gpu_count(profile),
        shm_size=f"{r.shm_size_gib}g",
        memory_limit=f"{r.memory_gib}g",
        cpus=r.cpus,
        storage=storage,
        health=health,
        health_command=[
            "CMD",
            facts["python"],
            "-c",
            f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{HEALTH_PATH}', "
            f"timeout={health.timeout_seconds - 1})",
        ],
        kubernetes=kubernetes,
        smoke=smoke,
        warnings=_warnings(profile, kind),
    )
