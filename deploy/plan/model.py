"""The Plan: everything derived from a profile, typed, frozen and target-neutral. Templates and the runtime
read it; deploy/targets/ projects it onto compose and Kubernetes, with their own spellings ("8g" or "8Gi",
a CMD health check or a probe). No field here is spelled for one target."""

from __future__ import annotations

from typing import Any, Literal

from deploy.plan.frozen import Frozen


class CudaTag(Frozen):
    image: str
    cuda: str
    min_driver: str


class ImagePlan(Frozen):
    reference: str  # what compose and Kubernetes run: a built image's name, or the official image unchanged
    build: bool  # False: the profile adds nothing to the pinned official image, so nothing is built
    base: str
    template: str
    vllm_version: str
    python: str
    run_as_user: int | None
    tiny_model_dir: str | None  # where the image holds the tiny test VLM (tiny storage, twins); None: not built in
    owned_dirs: list[str]  # CPU images: directories the uid owns (volumes mounted there take their owner)
    engine_env: dict[str, str]  # settings for the engine-venv script (CPU images)
    extra_pip: list[str]
    ca_bundle: str | None  # host file handed to the build as a BuildKit secret
    registry: str | None  # where `push` sends a built image
    local: bool  # built images (engine, router) reach the nodes by hand, never from a registry (local-images)
    cuda: CudaTag | None  # the CUDA build of the base image, when it is an official tag
    cuda_tags: list[CudaTag]  # every official tag of this release, for doctor's driver advice


class StoragePlan(Frozen):
    kind: Literal["host", "hub", "tiny"]
    host_path: str | None  # host: the directory on the host (and on the Kubernetes node)
    container_path: str | None  # where the weights (host) or the hub cache (hub) appear in the container
    revision: str | None = None  # hub: the pinned commit, tag or branch


class SecretEnv(Frozen):
    name: str  # variable inside the container
    source: str  # variable in the user's environment / .env / Kubernetes env file
    required: bool


class FetchPlan(Frozen):
    """The step that puts a hub model into its cache volume before any engine starts, once: a one-shot compose
    service the engines depend on, an init container on Kubernetes. The engines run with the hub offline."""

    name: str  # the compose service and the init container
    what: str  # for people: the repository and revision, or the twin's tiny model
    command: list[str]  # run in the engine's image, as the engine's user, with the cache volume mounted
    environment: dict[str, str]  # non-secret
    secrets: list[SecretEnv]  # the hub token: the fetch step's alone, the offline engines never see it


class HealthPlan(Frozen):
    path: str
    interval_seconds: int
    timeout_seconds: int
    retries: int
    start_period_seconds: int
    startup_period_seconds: int
    startup_failure_threshold: int
    readiness_period_seconds: int
    liveness_period_seconds: int
    failure_threshold: int  # readiness and liveness: consecutive failures before acting


class EngineSettings(Frozen):
    """The engine settings downstream code reasons about (doctor's memory estimate), typed."""

    dtype: str
    max_model_len: int
    gpu_memory_utilization: float
    tensor_parallel_size: int
    max_num_seqs: int | None
    trust_remote_code: bool


class EgressPlan(Frozen):
    """Where the pod may connect: DNS, and everything but the blocked networks."""

    blocked_ipv4: list[str]
    blocked_ipv6: list[str]


class InstancePlan(Frozen):
    """One copy of the engine on one host (compose, the bench): its own GPUs, or its own CPU cores.
    On Kubernetes the Deployment makes the copies (Plan.replicas of them) and the scheduler places them."""

    service: str  # its name on the host's network: "vllm" alone, "vllm-0", "vllm-1", … behind the router
    gpu_ids: list[str]  # the GPUs it owns; [] means all the plan's GPUs (a single copy) or no GPU
    cpuset: str | None  # CPU copies: the cores it runs on (and binds its OpenMP threads to)
    environment: dict[str, str]  # what differs from the plan's environment (VLLM_CPU_OMP_THREADS_BIND)
    url: str  # where the router reaches it on the host's network
    # NB: the copy created first. Copies share the cache volume, and Docker fills a fresh named volume from
    # the image as a container mounts it: two at once race ("mkdir …: file exists").
    starts_after: str | None = None


class FrontRoute(Frozen):
    """A route the router's front lets clients reach (one entry of vLLM's router's own route table)."""

    method: str
    path: str
    public: bool  # answered without the key


class RouterPlan(Frozen):
    """vLLM's router (PyPI vllm-router) in front of the replicas, behind its front (haproxy) in one container;
    their argv built once, here. How it finds the engines is each target's (targets/): static URLs on compose,
    discovery by label on Kubernetes."""

    image: str  # built from the registry-free Debian base, like the CPU engine
    base: str
    version: str
    python: str
    run_as_user: int
    entrypoint: list[str]  # our launcher, then the front's argv up to "--": the router's argv follows
    argv: list[str]  # every router flag but where its workers are
    api_key_variable: str  # the router reads the (same) key from this variable, for its calls to the engines
    container_port: int  # the front's: clients, the Service and the probes
    router_port: int  # the router's own, on 127.0.0.1 inside the container only: its admin routes
    admin_url: str  # where an operator inside the container reaches the admin routes
    metrics_port: int
    front_config: str  # the front's haproxy configuration, in the image
    front_routes: list[FrontRoute]  # the client allowlist; everything else is 404 at the front
    key_hash_variable: str  # the front reads sha256("Bearer <key>") from this variable, never the key
    front_timeout_seconds: int  # client and server inactivity at the front: beyond the router's own timeout
    health_path: str  # public: the probes need no key
    liveness_path: str
    health_command: list[str]  # a health check through the front, as a command in the container
    prestop_seconds: int
    termination_grace_seconds: int
    health_check_interval_seconds: int
    health_failure_threshold: int  # failed checks before a replica gets no traffic


class ClusterSettings(Frozen):
    """What the profile asks of a cluster, as typed values (sizes in GiB); targets/kubernetes.py spells them."""

    namespace: str
    create_namespace: bool
    service_type: str
    storage_class: str | None
    storage_size_gib: int
    storage_access_mode: str  # of the hub cache's claim
    node_selector: dict[str, str]
    node_affinity: dict[str, list[str]]  # label -> values, any of which a node must have
    min_driver_major: int | None  # nodes' NVIDIA driver runs the image's CUDA build from this major; None: no need
    tolerations: list[dict[str, Any]]
    runtime_class_name: str | None
    clients: dict[str, str] | None  # the labels of the pods allowed in; None: any pod
    egress: EgressPlan | None  # None: no egress policy
    prometheus_namespace: str  # where Prometheus scrapes from


class SmokePlan(Frozen):
    stop_token_ids: list[int]
    prompt: str
    image_url: str
    max_images: int | None
    server_stop_token_ids: list[int]  # stop ids the server applies to every request (generation.stop-token-ids)
    image_tokens: int | None  # the plan's worst-case prompt tokens of one image, when it has an estimate


class GenerationPlan(Frozen):
    """The generation_config.json vLLM is pointed at (--generation-config DIR), mounted, never built in."""

    config: dict[str, Any]  # the file's content: eos_token_id (stop ids), max_new_tokens, sampling defaults
    file_name: str
    directory: str  # where it is mounted in the container
    digest: str  # of the file's bytes: a new config, a new mount name where the target needs one


class EdgePlan(Frozen):
    """The key check on every route of vLLM's server (deploy/assets/edge/vllm_deploy_edge.py, loaded with
    vLLM's --middleware): mounted from a compose config or a ConfigMap, and built into the images we build."""

    file_name: str
    directory: str  # on PYTHONPATH in the container
    digest: str  # of the file's bytes


class VisionPlan(Frozen):
    """The worst case of one request's images, from the model's facts (deploy/data/models.yaml)."""

    architecture: str
    mm_processor_kwargs: dict[str, Any]  # the settings the estimate used, the checkpoint's defaults included
    images: int  # per prompt
    image_prompt_tokens: int  # one image at its largest: embeddings and markers
    image_embeddings: int  # one image's encoder output: what the encoder cache holds
    worst_case_tokens: int  # images × image_prompt_tokens; always below max-model-len (the profile check)


class Rule(Frozen):
    """A Prometheus recording rule (record) or alerting rule (alert)."""

    record: str | None = None
    alert: str | None = None
    expr: str
    for_: str | None = None  # alerts: how long the condition holds before firing
    severity: str | None = None
    summary: str | None = None
    description: str | None = None


class RuleGroup(Frozen):
    name: str
    rules: list[Rule]


class PanelQuery(Frozen):
    legend: str
    expr: str


class Panel(Frozen):
    title: str
    unit: str
    queries: list[PanelQuery]


class MonitoringPlan(Frozen):
    """Prometheus for compose (built from Debian's package), rules, a dashboard, autoscaling settings."""

    image: str
    base: str
    run_as_user: int
    scrape_interval: str
    retention: str
    argv: list[str]  # prometheus' own flags
    health_command: list[str]  # a readiness check as a command in the container
    container_port: int
    host_port: int  # where a single host publishes it (on the plan's bind address)
    local_endpoint: str  # where Prometheus answers on this host
    targets: dict[str, list[str]]  # job -> host:port on a single host's network (the engine copies, the router)
    config_digest: str  # of the scrape configuration and the rules: a new one, a new mount name
    rule_groups: list[RuleGroup]
    dashboard: dict[str, Any]  # Grafana's JSON model
    queries: list[str]  # every PromQL expression of the rules, the dashboard and `status`
    status_queries: dict[str, str]  # `vllm-deploy status`: one instant query per line of its screen
    prometheus_operator: bool
    operator_labels: dict[str, str]  # on the ServiceMonitors and the PrometheusRule only
    autoscaler: Literal["none", "keda", "hpa"]
    min_replicas: int
    max_replicas: int
    waiting_per_replica: int
    prometheus_url: str


class Plan(Frozen):
    name: str
    description: str
    twin_of: str | None  # the GPU profile this CPU profile is the twin of (`vllm-deploy twin`)
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
    local_endpoint: str  # where a client on this host reaches the published port, e.g. http://127.0.0.1:8000
    port: int  # the published one: the host's, the Service's
    container_port: int
    gpus: int  # per copy
    shm_size_gib: int
    memory_gib: int  # per copy: its limit
    cpus: int | None  # per copy: its cores (a cap), when the profile sets them
    storage: StoragePlan
    fetch: FetchPlan | None  # hub storage: the model is fetched before the engines start; None: nothing to fetch
    health: HealthPlan
    health_command: list[str]  # a health check as a command in the container; the image's Python (no curl)
    replicas: int  # how many copies of the engine serve
    instances: list[InstancePlan]  # those copies on one host (compose), each its own GPUs or cores
    router: RouterPlan | None
    drain_seconds: int  # vLLM's --shutdown-timeout: how long requests in flight may finish on SIGTERM
    cluster: ClusterSettings
    smoke: SmokePlan
    warnings: list[str]
    generation: GenerationPlan | None  # None: vLLM reads the model's own generation_config.json
    edge: EdgePlan
    vision: VisionPlan | None  # None: no estimate (no architecture, or one deploy/data/models.yaml lacks)
    monitoring: MonitoringPlan | None  # None: monitoring off

    @property
    def all_secrets(self) -> list[SecretEnv]:
        """Every secret the deployment reads: the engines' and the fetch step's (the .env and Secret examples)."""
        return [*self.secrets, *(self.fetch.secrets if self.fetch else [])]

    @property
    def api_key_source(self) -> str:
        """The variable in the user's environment, .env or Secret file that holds the key."""
        return next(s.source for s in self.secrets if s.name == self.api_key_variable)
