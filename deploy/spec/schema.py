"""The profile's schema: frozen pydantic models, the one place for defaults, bounds and descriptions.

Every value that reaches a Dockerfile, a shell, a command line or a manifest is validated here as
what it is (an image reference, a PEP 508 requirement, an IP address, a Kubernetes name or label),
strictly: YAML gives real types, so `port: yes` or `port: "8000"` are errors, not 1 or 8000.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from deploy.spec.base import (
    HUB_ID,
    AbsolutePath,
    DnsLabel,
    DnsSubdomain,
    Dtype,
    EnvName,
    ImageReference,
    LabelKey,
    Labels,
    LabelValue,
    Line,
    Modality,
    ProfileName,
    RegistryPath,
    Section,
    empty_dict,
    empty_list,
    model_class,
)
from deploy.spec.flags import extra_args_problems
from deploy.spec.generation import Architecture, GenerationSection, MmProcessorKwargs
from deploy.spec.kube import namespace_problem, toleration_problems
from deploy.spec.names import key_variable_problem, registry_problem
from deploy.spec.serving import Media, Monitoring, Router


def _not_reserved(name: str) -> str:
    problem = key_variable_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def _registry_host(path: str) -> str:
    problem = registry_problem(path)
    if problem:
        raise ValueError(problem)
    return path


def _own_namespace(name: str) -> str:
    problem = namespace_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def _requirement(text: str) -> str:
    """A PEP 508 requirement: what pip reads from a requirements line, never a pip option."""
    # NB: imported here, for the profiles that list extra-pip: packaging's parser was ~20 ms of every command.
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        raise ValueError(
            "expected a PEP 508 requirement like timm==1.0.15 (no pip options, no spaces around a URL)"
        ) from None
    if requirement.url and not requirement.url.startswith("https://"):
        raise ValueError("a requirement by URL must use https://")
    return text


def _ip_address(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            "expected an IP address of this host, e.g. 127.0.0.1 (loopback), 0.0.0.0 (every interface) or ::1"
        ) from None
    return text


def _pinned(reference: str) -> str:
    tag = reference.rsplit("/", 1)[-1]
    if "@sha256:" not in reference and (":" not in tag or tag.endswith(":latest")):
        raise ValueError(
            "expected a pinned image reference (a tag other than latest, or a digest) like vllm/vllm-openai:v0.32.0"
        )
    return reference


Requirement508 = Annotated[str, Field(max_length=500), AfterValidator(_requirement)]


HUB_ENDPOINT = r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[^\s\x00-\x1f\x7f@]*)?$"


class ModelSource(Section):
    """Which weights to serve and where they live."""

    source: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="Hugging Face id (org/name) or an absolute path, e.g. /root/ld/ld_model_pretrained/Minicpmv2_6",
    )
    storage: Literal["host", "hub", "tiny"] | None = Field(
        None,
        description="host: a local directory mounted read-only; hub: downloaded into a cache volume; "
        "tiny: a random-weight test VLM fabricated into the image at build time (no download). "
        "Default: host for absolute paths, hub otherwise.",
    )
    served_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9/._:+-]+$", max_length=256)] | None = Field(
        None, description="Name clients pass as `model`. Default: the source, as vLLM does."
    )
    revision: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]+$", max_length=256)] | None = Field(
        None, description="Hub commit or tag to pin (recommended with trust-remote-code)."
    )
    hub_endpoint: Annotated[str, Field(pattern=HUB_ENDPOINT, max_length=500)] | None = Field(
        None,
        description="Hub storage: where the fetch step downloads from (HF_ENDPOINT), e.g. a mirror such as "
        "https://hf-mirror.com. No credentials in the URL (the token is HF_TOKEN). Default: huggingface.co.",
    )
    architecture: Architecture = None


class Engine(Section):
    """vLLM engine settings. The first four are required: they are the seed's flags."""

    dtype: Dtype
    max_model_len: int = Field(gt=0, le=10_000_000)
    gpu_memory_utilization: float = Field(gt=0, le=1, description="Fraction of each GPU's memory vLLM may use.")
    trust_remote_code: bool
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    max_num_seqs: int | None = Field(None, ge=1, le=100_000)
    enforce_eager: bool = False
    limit_mm_per_prompt: dict[Modality, Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=empty_dict, description="Most items per modality in one prompt, e.g. {image: 2}."
    )
    kv_cache_space_gib: int | None = Field(
        None, ge=1, le=4096, description="CPU only: KV-cache size (VLLM_CPU_KVCACHE_SPACE). Required on CPU."
    )
    shutdown_timeout_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="On SIGTERM, requests in flight may finish for this long (vLLM --shutdown-timeout); compose's "
        "stop grace period and the pod's termination grace period are longer.",
    )
    extra_args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=200)] = Field(
        default_factory=empty_list,
        description="More vLLM flags, e.g. [--enable-prefix-caching]. Deny by default: each is resolved in vLLM's "
        "own option table, under any spelling, and passes only if deploy/data/vllm-serve-classes.yaml allows it; "
        "flags the profile models, and anything that loads code, reads files, opens routes or carries secrets, "
        "are refused with what to use instead.",
    )

    mm_processor_kwargs: MmProcessorKwargs = Field(default_factory=empty_dict)

    @field_validator("extra_args")
    @classmethod
    def _guarded(cls, args: list[str]) -> list[str]:
        problems = extra_args_problems(args)
        if problems:
            raise ValueError("; ".join(problems))
        return args


class ApiKey(Section):
    """Where the API key comes from. The value itself never appears in a profile or a rendered file."""

    env: Annotated[EnvName, AfterValidator(_not_reserved)] = Field(
        "VLLM_API_KEY", description="Environment variable (or .env entry) holding the key."
    )


class Image(Section):
    device: Literal["cuda", "cpu"] = "cuda"
    base: Annotated[ImageReference, AfterValidator(_pinned)] | None = Field(
        None, description="Base image, pinned. Default per device from deploy/data/devices.yaml."
    )
    extra_pip: Annotated[list[Requirement508], Field(max_length=100)] = Field(
        default_factory=empty_list, description="Extra PEP 508 requirements baked into the image, e.g. timm==1.0.15."
    )
    ca_bundle: AbsolutePath | None = Field(
        None,
        description="CPU image: a host CA bundle pip trusts during the build (TLS-intercepting proxies), "
        "passed as a BuildKit secret, never stored in a layer, e.g. /etc/ssl/certs/ca-certificates.crt.",
    )
    registry: Annotated[RegistryPath, AfterValidator(_registry_host)] | None = Field(
        None,
        description="Registry and path clusters pull built images from, e.g. registry.example.com/ml. Built "
        "images are named <registry>/<name>:<hash> (`vllm-deploy push` pushes them); without it "
        "localhost/vllm-deploy/<name>:<hash>, which never resolves to Docker Hub.",
    )


class Resources(Section):
    gpus: int | None = Field(
        None, ge=0, le=64, description="GPUs per replica. Default: tensor-parallel-size (cuda), 0 (cpu)."
    )
    shm_size_gib: int = Field(8, ge=1, le=4096, description="Shared memory for vLLM's workers (/dev/shm).")
    memory_gib: int = Field(32, ge=1, le=16384, description="Memory limit of the container.")
    cpus: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU cores, reserved and capped (compose cpus, Kubernetes request and limit). Default: no cap; "
        "Kubernetes still requests 4 cores per GPU (2 on cpu), and sets no limit, which would throttle vLLM.",
    )


class Server(Section):
    port: int = Field(8000, ge=1, le=65535)
    bind_address: Annotated[str, Field(max_length=64), AfterValidator(_ip_address)] = Field(
        "127.0.0.1",
        description="Host address compose publishes the port on: 127.0.0.1, or 0.0.0.0 for every interface.",
    )
    health_interval_seconds: int = Field(10, ge=1, le=300, description="How often compose probes /health.")
    hang_window_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="A hung engine (its API still up) is noticed: when vLLM's token counters have not moved this "
        "long, /health asks the engine for one token on loopback (an idle engine answers at once; a busy one has "
        "moved its counters, so no probe is sent). 0: off, /health is vLLM's own.",
    )
    hang_probe_timeout_seconds: int = Field(
        20, ge=1, le=600, description="No token within this: the engine is hung and /health answers 503."
    )
    hang_exit_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="Hung this long: the server exits, and compose's restart policy (or the kubelet) starts a "
        "fresh one. Meanwhile /health is 503 (the router and readiness stop sending) and vllm_deploy_engine_hung "
        "is 1 on /metrics.",
    )


class Toleration(BaseModel):
    """A Kubernetes toleration, in Kubernetes' own spelling, with the API server's rules (deploy/spec/kube.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    key: LabelKey | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = Field(None, ge=0, le=10**9)  # noqa: N815 (Kubernetes' spelling)

    @model_validator(mode="after")
    def _as_the_api_server_would(self) -> Toleration:
        problems = toleration_problems(self.key, self.operator, self.value, self.effect, self.tolerationSeconds)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Kubernetes(Section):
    namespace: Annotated[DnsLabel, AfterValidator(_own_namespace)] = Field(
        "vllm", description="Namespace of every object (not `default`: keep workloads apart)."
    )
    create_namespace: bool = Field(
        True, description="Render the Namespace object too; false where it exists and you may not create namespaces."
    )
    storage_class: DnsSubdomain | None = None
    storage_size_gib: int = Field(50, ge=1, le=1_000_000, description="Size of the model cache volume (hub storage).")
    storage_access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = Field(
        "ReadWriteOnce",
        description="Access mode of the model cache volume (hub storage). ReadWriteOnce attaches to one node: "
        "required ReadWriteMany (and a storage-class that provides it, e.g. NFS or CephFS) where more than one "
        "engine pod can run (replicas, or an autoscaler's max-replicas, above 1).",
    )
    node_selector: Labels = Field(
        default_factory=empty_dict,
        description="Node labels the pod needs. Required with host storage (the model is only on some nodes), "
        "e.g. {vllm-deploy/model: minicpm-v-2_6} after `kubectl label node NODE vllm-deploy/model=minicpm-v-2_6`.",
    )
    node_affinity: Annotated[
        dict[LabelKey, Annotated[list[LabelValue], Field(min_length=1, max_length=64)]], Field(max_length=16)
    ] = Field(
        default_factory=empty_dict,
        description="Node labels and the values any of which a node must have (required node affinity, operator "
        "In), an alternative to node-selector, e.g. {nvidia.com/gpu.product: [NVIDIA-A100-SXM4-80GB, NVIDIA-H100-80GB-HBM3]}.",
    )
    tolerations: Annotated[list[Toleration], Field(max_length=64)] = Field(
        default_factory=empty_list,
        description="e.g. [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}] for tainted GPU nodes.",
    )
    runtime_class_name: DnsSubdomain | None = Field(
        None,
        description="RuntimeClass of the pod, e.g. nvidia where the GPU operator installs one and the "
        "container runtime's default is not NVIDIA's.",
    )
    driver_affinity: bool = Field(
        True,
        description="CUDA with an official vLLM image: schedule only on nodes whose NVIDIA driver runs its CUDA "
        "build (required node affinity on the driver's major version, the nvidia.com/cuda.driver-version.major or "
        "older nvidia.com/cuda.driver.major label that NVIDIA GPU feature discovery, part of the GPU operator and "
        "the device plugin's chart, puts on GPU nodes). Set false where no node carries those labels. Nothing is "
        "rendered for cpu or for an image.base that is not an official tag.",
    )
    load_budget_seconds: int = Field(
        900,
        ge=30,
        le=86_400,
        description="How long loading the model may take before the pod is restarted (startupProbe).",
    )
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    network_policy_from: Annotated[Labels, Field(min_length=1)] | None = Field(
        None,
        description="If set, only pods with these labels (same namespace) reach the server port, e.g. "
        "{app.kubernetes.io/name: gateway}. Without it the NetworkPolicy opens the port to every pod.",
    )
    egress_policy: bool = Field(
        False,
        description="Also restrict the pod's outgoing traffic: DNS, and the internet except link-local "
        "(169.254.0.0/16, the cloud metadata endpoint) and media.blocked-networks.",
    )
    local_images: bool = Field(
        False,
        description="true: the images vllm-deploy builds (the CPU engine, an engine with extra layers, the "
        "router) are loaded onto the nodes by hand, never pulled: kind (kind load docker-image), minikube "
        "(minikube image load), podman kube play. They keep their localhost/vllm-deploy/<name>:<hash> names and "
        "run with imagePullPolicy: Never, so a node without them fails at once (ErrImageNeverPull). Without it, "
        "a profile whose pods run a built image needs image.registry (where `vllm-deploy push` sends them).",
    )


class Smoke(Section):
    stop_token_ids: Annotated[list[Annotated[int, Field(ge=0, le=10_000_000)]], Field(max_length=32)] = Field(
        default_factory=lambda: [151645, 151643]
    )
    prompt: Line = "请描述这张图片"
    image_url: Annotated[str, Field(pattern=r"^https?://[^\s\x00-\x1f\x7f]+$", max_length=2000)] = (
        "https://air-example-data-2.s3.us-west-2.amazonaws.com/vllm_opensource_llava/stop_sign.jpg"
    )


class Profile(Section):
    """One deployment. Defaults live here and nowhere else."""

    name: ProfileName = Field(description="Names the compose project, the image and the Kubernetes objects.")
    description: Line = ""
    twin_of: ProfileName | None = Field(
        None,
        description="Set by `vllm-deploy twin`: this profile is the CPU twin of the named GPU profile (same "
        "names, paths, user, mounts and probes; another device, image base and weights). It is rendered and "
        "brought up under .work/twins/, never over the original's compose/ and k8s/, and `up` fills its empty "
        "host model directory with the tiny test model.",
    )
    model: ModelSource
    engine: Engine
    api_key: ApiKey
    image: Image = Image()
    replicas: int = Field(
        1,
        ge=0,
        le=64,
        description="Engine replicas: compose services (each with its own GPUs, or its own CPU cores) and the "
        "Deployment's replicas; with more than one, the router spreads requests over them.",
    )
    router: Router = Router()
    resources: Resources = Resources()
    server: Server = Server()
    kubernetes: Kubernetes = Kubernetes()
    media: Media = Media()
    monitoring: Monitoring = Monitoring()
    smoke: Smoke = Smoke()
    generation: GenerationSection = None

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_by_reference(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "expected a reference like {env: VLLM_API_KEY}, not the key itself; "
                "put the value in the environment or a git-ignored .env file"
            )
        return value


def section_class(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class at `loc` (alias path), to list the keys allowed there."""
    cls: type[BaseModel] = Profile
    for part in loc:
        field = next((f for n, f in cls.model_fields.items() if n.replace("_", "-") == part), None)
        found = model_class(getattr(field, "annotation", None))
        if found is None:
            return None
        cls = found
    return cls


def is_hub_id(text: str) -> bool:
    return re.fullmatch(HUB_ID[1:-1], text) is not None
