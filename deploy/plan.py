"""Everything derived from a profile, computed once: the vLLM argument list above all.

`resolve(profile) -> Plan` is pure. Templates see only the Plan, so no template ever maps a
setting to a flag or picks a default.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from deploy.paths import BUILD_ASSETS, TEMPLATE_DIR
from deploy.spec import Profile, device_facts, gpu_count, model_storage

CONTAINER_PORT = 8000  # NB: fixed inside the container; the profile's port is the published one
HUB_CACHE_DIR = "/models/hf-cache"
WRITABLE_CACHE_DIR = "/var/cache/vllm"
HEALTH_PATH = "/health"
STARTUP_PROBE_PERIOD_SECONDS = 10
# Never reachable from a pod with the egress policy: link-local holds the cloud metadata endpoint.
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
CPUS_PER_GPU = 4  # Kubernetes CPU request per GPU when the profile names none: tokenizing, images, the API server
CPUS_WITHOUT_GPU = 2
API_KEY_VARIABLE = "VLLM_API_KEY"  # vLLM reads its key from this variable, so the key never sits in argv
SERVE = ("vllm", "serve")  # the official image's entrypoint
# vLLM serves every /v1 route without authentication when its key variable is empty (it filters out
# empty keys). The entrypoint refuses to start instead, with one clear log line, then runs `vllm serve`.
KEY_GUARD_SCRIPT = (
    f'[ -n "${{{API_KEY_VARIABLE}}}" ] || {{ echo "vllm-deploy: {API_KEY_VARIABLE} is empty or unset; refusing to '
    'start: vLLM would serve every /v1 route without authentication" >&2; exit 78; }; exec "$@"'
)
ENTRYPOINT = ("/bin/sh", "-c", KEY_GUARD_SCRIPT, "key-guard", *SERVE)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CudaTag(_Frozen):
    image: str
    cuda: str
    min_driver: str


class ImagePlan(_Frozen):
    reference: str  # what compose and Kubernetes run: a built image's name, or the official image unchanged
    build: bool  # False: the profile adds nothing to the pinned official image, so nothing is built
    base: str
    template: str
    vllm_version: str
    python: str
    run_as_user: int | None
    engine_env: dict[str, str]  # settings for the engine-venv script (CPU images)
    extra_pip: list[str]
    ca_bundle: str | None  # host file handed to the build as a BuildKit secret
    registry: str | None  # where `push` sends a built image
    cuda: CudaTag | None  # the CUDA build of the base image, when it is an official tag
    cuda_tags: list[CudaTag]  # every official tag of this release, for doctor's driver advice


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


class EngineSettings(_Frozen):
    """The engine settings downstream code reasons about (doctor's memory estimate), typed."""

    dtype: str
    max_model_len: int
    gpu_memory_utilization: float
    tensor_parallel_size: int
    max_num_seqs: int | None
    trust_remote_code: bool


class EgressPlan(_Frozen):
    """Where the pod may connect: DNS, and everything but the blocked networks."""

    blocked_ipv4: list[str]
    blocked_ipv6: list[str]


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
    node_affinity: dict[str, list[str]]  # label -> values, any of which a node must have
    tolerations: list[dict[str, Any]]
    runtime_class_name: str | None
    service_type: str
    network_policy_from: dict[str, str] | None
    egress: EgressPlan | None
    create_namespace: bool
    memory_request: str
    memory_limit: str
    shm_size: str
    cpu_request: str
    cpu_limit: str | None  # NB: none unless the profile caps cpus: a CFS quota throttles vLLM's busy loop


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
    engine: EngineSettings
    engine_flags: list[str]  # every vLLM flag but the model, its served name, host and port
    entrypoint: list[str]  # the key guard, which then execs `vllm serve`
    argv: list[str]  # `vllm serve` arguments: MODEL --served-model-name … --host 0.0.0.0 --port 8000 FLAGS…
    api_key_variable: str  # the variable vLLM reads its key from, inside the container
    environment: dict[str, str]  # non-secret
    secrets: list[SecretEnv]
    # NB: the root filesystem is read-only (compose and Kubernetes); vLLM, torch, triton, FlashInfer
    # and CUDA write only under these, and HOME points into the cache one.
    writable_dirs: dict[str, str]  # name -> mount path
    bind_address: str
    published_port: str  # compose's ports entry, HOST_IP:PORT:CONTAINER_PORT (IPv6 in brackets)
    local_endpoint: str  # where a client on this host reaches the published port, e.g. http://127.0.0.1:8000
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

    @property
    def api_key_source(self) -> str:
        """The variable in the user's environment, .env or Secret file that holds the key."""
        return next(s.source for s in self.secrets if s.name == self.api_key_variable)


def engine_flags(profile: Profile) -> list[str]:
    """The vLLM flags a profile sets, one spelling (kebab case), only where they differ from vLLM's defaults."""
    e = profile.engine
    flags = []
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


def serve_args(model: str, served_model_name: str, host: str, port: int, flags: list[str]) -> list[str]:
    """`vllm serve` arguments. The one place the positional model, its name, host and port are placed."""
    return [model, "--served-model-name", served_model_name, "--host", host, "--port", str(port), *flags]


def host_command(plan: Plan, vllm: str, model: str, host: str, port: int) -> list[str]:
    """The plan's `vllm serve` as a host process (tests and the bench baseline): its model path, host and port."""
    return [vllm, *SERVE[1:], *serve_args(model, plan.served_model_name, host, port, plan.engine_flags)]


def host_environment(plan: Plan, scratch: str) -> dict[str, str]:
    """The plan's environment for a host process: the container's cache paths moved under `scratch`."""
    cache = plan.writable_dirs["cache"]
    return {name: scratch + value[len(cache):] if value.startswith(cache) else value
            for name, value in plan.environment.items()}


def _environment(profile: Profile, storage: StoragePlan) -> dict[str, str]:
    cache = WRITABLE_CACHE_DIR
    env = {
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        # A client-supplied URL must not hold a request (and a worker) for minutes.
        "VLLM_IMAGE_FETCH_TIMEOUT": str(profile.media.fetch_timeout_seconds),
        "VLLM_MEDIA_FETCH_MAX_RETRIES": str(profile.media.fetch_max_retries),
        # vLLM checks allowed-media-domains against the first URL only: a redirect from an allowed host
        # would reach any address (the cloud metadata endpoint included). Off with an allowlist.
        "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "1" if _follows_redirects(profile) else "0",
        # The root filesystem is read-only. FlashInfer (vLLM's CUDA sampler) ignores XDG_CACHE_HOME and
        # creates ~/.cache/flashinfer at import; triton, CUDA and vLLM's config use ~ too: HOME and
        # every cache point into the writable cache volume.
        "HOME": cache,
        "XDG_CACHE_HOME": cache,  # vLLM's cache root and Hugging Face's default follow it
        "FLASHINFER_WORKSPACE_BASE": cache,
        "TRITON_CACHE_DIR": f"{cache}/triton",
        "CUDA_CACHE_PATH": f"{cache}/nv/ComputeCache",
        "TORCHINDUCTOR_CACHE_DIR": f"{cache}/torchinductor",
    }
    if storage.kind == "hub":
        env["HF_HOME"] = HUB_CACHE_DIR
    else:
        # Weights are local: never reach for the hub, fail fast instead of hanging on a network call.
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def _follows_redirects(profile: Profile) -> bool:
    media = profile.media
    return media.allow_redirects if media.allow_redirects is not None else not media.allowed_domains


def _egress(profile: Profile) -> EgressPlan | None:
    if not profile.kubernetes.egress_policy:
        return None
    blocked = [*LINK_LOCAL, *profile.media.blocked_networks]
    return EgressPlan(blocked_ipv4=[str(n) for n in blocked if n.version == 4],
                      blocked_ipv6=[str(n) for n in blocked if n.version == 6])


def _host(address: str) -> str:
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def _local_endpoint(address: str, port: int) -> str:
    # NB: a server on every interface is reached on loopback from this host.
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    return f"http://{_host(loopback)}:{port}"


def _warnings(profile: Profile, storage: str) -> list[str]:
    found = []
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


def _image(profile: Profile) -> ImagePlan:
    facts = device_facts()[profile.image.device]
    inputs = {
        "base": profile.image.base or facts["base-image"],
        "template": facts["template"],
        "vllm_version": facts["vllm-version"],
        "python": facts["python"],
        "run_as_user": facts["run-as-user"],
        "engine_env": {k: str(v) for k, v in facts.get("engine-env", {}).items()},
        "extra_pip": list(profile.image.extra_pip),
    }
    cuda_tags = [CudaTag(image=t["image"], cuda=t["cuda"], min_driver=t["min-driver"]) for t in facts.get("cuda-tags", [])]
    # NB: the official image needs no build when the profile adds nothing to it: clusters pull it as it is.
    build = profile.image.device == "cpu" or bool(profile.image.extra_pip) or inputs["base"] not in {t.image for t in cuda_tags}
    if build:
        payload = json.dumps({**inputs, "entrypoint": ENTRYPOINT, "recipe": build_recipe_digest()}, sort_keys=True).encode()
        repository = profile.image.registry or device_facts()["local-registry"]
        reference = f"{repository}/{profile.name}:{hashlib.sha256(payload).hexdigest()[:12]}"
    else:
        reference = inputs["base"]
    return ImagePlan(
        reference=reference, build=build, ca_bundle=profile.image.ca_bundle, registry=profile.image.registry,
        cuda=next((t for t in cuda_tags if t.image == inputs["base"]), None), cuda_tags=cuda_tags, **inputs,
    )


def resolve(profile: Profile) -> Plan:
    facts = device_facts()[profile.image.device]
    kind = model_storage(profile)
    if kind == "host":
        storage = StoragePlan(kind=kind, host_path=profile.model.source, container_path=profile.model.source)
    elif kind == "hub":
        storage = StoragePlan(kind=kind, host_path=None, container_path=HUB_CACHE_DIR)
    else:
        storage = StoragePlan(kind=kind, host_path=None, container_path=None)
    image = _image(profile)
    served = profile.model.served_name or profile.model.source

    secrets = [SecretEnv(name=API_KEY_VARIABLE, source=profile.api_key.env, required=True)]
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
    e = profile.engine
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
        node_affinity={label: list(values) for label, values in k.node_affinity.items()},
        tolerations=[t.model_dump(exclude_none=True) for t in k.tolerations],
        runtime_class_name=k.runtime_class_name,
        service_type=k.service_type,
        network_policy_from=dict(k.network_policy_from) if k.network_policy_from is not None else None,
        egress=_egress(profile),
        # NB: request = limit makes the pod Guaranteed for memory: vLLM's footprint is fixed once loaded.
        memory_request=f"{r.memory_gib}Gi",
        memory_limit=f"{r.memory_gib}Gi",
        shm_size=f"{r.shm_size_gib}Gi",
        cpu_request=str(r.cpus or (CPUS_PER_GPU * gpu_count(profile) or CPUS_WITHOUT_GPU)),
        cpu_limit=str(r.cpus) if r.cpus else None,
        create_namespace=k.create_namespace,
    )
    smoke = SmokePlan(
        stop_token_ids=list(profile.smoke.stop_token_ids),
        prompt=profile.smoke.prompt,
        image_url=profile.smoke.image_url,
        max_images=e.limit_mm_per_prompt.get("image"),
    )
    flags = engine_flags(profile)
    return Plan(
        name=profile.name,
        description=profile.description,
        device=profile.image.device,
        image=image,
        model=profile.model.source,
        served_model_name=served,
        engine=EngineSettings(dtype=e.dtype, max_model_len=e.max_model_len,
                              gpu_memory_utilization=e.gpu_memory_utilization,
                              tensor_parallel_size=e.tensor_parallel_size, max_num_seqs=e.max_num_seqs,
                              trust_remote_code=e.trust_remote_code),
        engine_flags=flags,
        entrypoint=list(ENTRYPOINT),
        argv=serve_args(profile.model.source, served, "0.0.0.0", CONTAINER_PORT, flags),
        api_key_variable=API_KEY_VARIABLE,
        environment=_environment(profile, storage),
        secrets=secrets,
        writable_dirs={"tmp": "/tmp", "cache": WRITABLE_CACHE_DIR},
        bind_address=profile.server.bind_address,
        published_port=f"{_host(profile.server.bind_address)}:{profile.server.port}:{CONTAINER_PORT}",
        local_endpoint=_local_endpoint(profile.server.bind_address, profile.server.port),
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
