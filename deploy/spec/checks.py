"""Cross-field checks: only meaningful once every field has the right type."""

from __future__ import annotations

import re
from typing import Literal

from deploy.facts import device_facts
from deploy.spec.base import ABSOLUTE_PATH
from deploy.spec.model_facts import model_problems
from deploy.spec.names import system_directory_problem
from deploy.spec.redact import show
from deploy.spec.schema import Profile, is_hub_id


def default_storage(source: str) -> Literal["host", "hub"]:
    """Where a model's weights come from when the profile does not say: a path is on the host, else the hub."""
    return "host" if source.startswith("/") else "hub"


def model_storage(p: Profile) -> Literal["host", "hub", "tiny"]:
    return p.model.storage or default_storage(p.model.source)


def router_on(p: Profile) -> bool:
    """The router runs when the profile says so, and by default in front of more than one replica."""
    return p.router.enabled if p.router.enabled is not None else p.replicas > 1


def most_pods(p: Profile) -> tuple[int, tuple[str, ...]]:
    """The most engine pods there can be on Kubernetes, and the key that allows them: the replicas, or the
    maximum of an autoscaler (rendered only with monitoring on) above them."""
    m = p.monitoring
    if m.enabled and m.autoscaler != "none" and m.max_replicas > p.replicas:
        return m.max_replicas, ("monitoring", "max-replicas")
    return p.replicas, ("replicas",)


def engine_image_built(p: Profile) -> str | None:
    """The engine image vllm-deploy builds, in words (the CPU build, extra layers, or a base that is no official
    tag), or None where the engine runs an official vLLM image unchanged, which clusters pull as it is."""
    facts = device_facts()[p.image.device]
    if p.image.device == "cpu":
        return "the CPU engine image"
    if p.image.extra_pip:
        return "the engine image with extra-pip layers"
    if (p.image.base or facts["base-image"]) not in {t["image"] for t in facts.get("cuda-tags", [])}:
        return "the engine image built on a base that is no official vLLM tag"
    return None


def built_images(p: Profile) -> list[str]:
    """The images vllm-deploy builds that the profile's Kubernetes pods run, in words."""
    engine = engine_image_built(p)
    return ([engine] if engine else []) + (["the router image"] if router_on(p) else [])


def gpu_count(p: Profile) -> int:
    if p.resources.gpus is not None:
        return p.resources.gpus
    return p.engine.tensor_parallel_size if p.image.device == "cuda" else 0


def cross_checks(p: Profile) -> list[tuple[tuple[str, ...], str]]:
    found: list[tuple[tuple[str, ...], str]] = []
    storage = model_storage(p)
    if p.twin_of and p.image.device != "cpu":
        found.append((("twin-of",), "a twin runs on the CPU: expected image.device cpu (`vllm-deploy twin` writes it)"))
    if storage in ("host", "tiny") and not re.fullmatch(ABSOLUTE_PATH[1:-1], p.model.source):
        found.append(
            (
                ("model", "source"),
                f"storage {storage!r} needs an absolute path of plain characters "
                f"(letters, digits, '.', '_', '+', '-'), got {show(p.model.source)}",
            )
        )
    elif storage == "host" and (system := system_directory_problem(p.model.source)):
        found.append((("model", "source"), system))
    if storage == "hub" and not is_hub_id(p.model.source):
        found.append(
            (
                ("model", "source"),
                f"expected a Hugging Face id like Qwen/Qwen2.5-VL-7B-Instruct, got {show(p.model.source)}",
            )
        )
    if p.model.revision and storage != "hub":
        found.append((("model", "revision"), "a revision pins hub downloads; it needs storage 'hub'"))
    if p.model.hub_endpoint and storage != "hub":
        found.append(
            (("model", "hub-endpoint"), "the hub endpoint is where hub downloads come from; it needs storage 'hub'")
        )
    if storage == "host" and not (p.kubernetes.node_selector or p.kubernetes.node_affinity):
        found.append(
            (
                ("kubernetes", "node-selector"),
                f"required with host storage: {p.model.source} exists only on the nodes you copied it to, and "
                "a pod scheduled elsewhere fails to start; label those nodes and select them, e.g. "
                f"{{vllm-deploy/model: {p.name}}} (or set kubernetes.node-affinity)",
            )
        )
    gpus = gpu_count(p)
    if p.image.device == "cuda":
        most = device_facts()["cuda"]["max-gpu-memory-utilization"]
        if p.engine.gpu_memory_utilization > most:
            found.append(
                (
                    ("engine", "gpu-memory-utilization"),
                    f"at most {most} on cuda, got {p.engine.gpu_memory_utilization}: vLLM refuses to start when "
                    "total memory × utilization exceeds the memory free at start-up, and the CUDA context "
                    "alone takes some, so 1 (the guide's value) never starts; use "
                    f"{most} for a GPU of its own, less if other processes share it",
                )
            )
        if gpus < p.engine.tensor_parallel_size:
            found.append(
                (
                    ("resources", "gpus"),
                    f"tensor-parallel-size {p.engine.tensor_parallel_size} needs at least as many GPUs, got {gpus}",
                )
            )
        if p.engine.kv_cache_space_gib is not None:
            found.append((("engine", "kv-cache-space-gib"), "only for device cpu; on cuda use gpu-memory-utilization"))
    else:
        if gpus:
            found.append((("resources", "gpus"), f"device cpu takes no GPUs, got {gpus}"))
        if p.engine.tensor_parallel_size != 1:
            found.append((("engine", "tensor-parallel-size"), "device cpu serves with tensor-parallel-size 1"))
        if p.engine.kv_cache_space_gib is None:
            # NB: on CPU gpu-memory-utilization reserves that share of the machine's RAM (0.92 fails).
            found.append((("engine", "kv-cache-space-gib"), "required for device cpu, e.g. 1 (GiB)"))
        if p.resources.shm_size_gib > p.resources.memory_gib:
            found.append((("resources", "shm-size-gib"), "larger than memory-gib"))
    if p.replicas > 1 and not router_on(p):
        found.append(
            (
                ("router", "enabled"),
                f"{p.replicas} replicas need the router in front of them (one endpoint, "
                "health checks, retries); remove `enabled: false`",
            )
        )
    if p.image.device == "cpu" and p.replicas > 1 and not p.resources.cpus:
        found.append(
            (("resources", "cpus"), "required with CPU replicas: each replica gets its own cores (cpuset), e.g. 1")
        )
    pods, pods_key = most_pods(p)
    if storage == "hub" and pods > 1 and p.kubernetes.storage_access_mode == "ReadWriteOnce":
        # NB: a ReadWriteOnce volume attaches to one node: a pod scheduled on another waits forever (Multi-Attach).
        found.append(
            (
                pods_key,
                f"{'up to ' if pods_key != ('replicas',) else ''}{pods} engine pods would share the hub cache's "
                "ReadWriteOnce claim, which attaches to one node only: pods on another node wait forever "
                "(multi-attach error); set kubernetes.storage-access-mode: ReadWriteMany with a storage-class "
                "that supports it (e.g. NFS, CephFS), or run one pod",
            )
        )
    built = built_images(p)
    if built and not p.image.registry and not p.kubernetes.local_images:
        # NB: localhost/… never resolves to a registry a node can reach: every such pod waits in ErrImagePull.
        local = device_facts()["local-registry"]
        found.append(
            (
                ("image", "registry"),
                f"required where Kubernetes pods run images vllm-deploy builds ({' and '.join(built)}): without it "
                f"they are named {local}/<name>:<hash>, which no cluster node can pull; set image.registry to "
                "where `vllm-deploy push` sends them, e.g. registry.example.com/ml, or set "
                "kubernetes.local-images: true if you load them onto the nodes yourself (kind load docker-image, "
                "minikube image load, podman kube play)",
            )
        )
    if p.kubernetes.local_images and p.image.registry:
        found.append(
            (
                ("kubernetes", "local-images"),
                "cannot be true with image.registry set: local images are never pulled, and image.registry "
                "names where the nodes pull them from; keep one of the two",
            )
        )
    if p.monitoring.min_replicas > p.monitoring.max_replicas:
        found.append((("monitoring", "min-replicas"), f"larger than max-replicas ({p.monitoring.max_replicas})"))
    if p.monitoring.enabled and p.monitoring.port == p.server.port:
        found.append((("monitoring", "port"), f"the server publishes {p.server.port} already; choose another port"))
    if p.media.blocked_networks and not p.kubernetes.egress_policy:
        found.append(
            (
                ("media", "blocked-networks"),
                "takes effect through the egress NetworkPolicy: set kubernetes.egress-policy: true",
            )
        )
    if p.media.allow_redirects and p.media.allowed_domains:
        found.append(
            (
                ("media", "allow-redirects"),
                "cannot be true with allowed-domains: vLLM checks only the "
                "first URL's host, so a redirect from an allowed host reaches any address",
            )
        )
    return found + model_problems(p)
