"""What vLLM is started with: its flags (one spelling, built once), its arguments, its environment."""

from __future__ import annotations

import hashlib
import ipaddress
import json

from deploy.paths import BUILD_ASSETS
from deploy.plan.constants import EDGE_DIR, HUB_CACHE_DIR, RUN_AS_NAME, WRITABLE_CACHE_DIR
from deploy.plan.model import EdgePlan, EgressPlan, Plan, StoragePlan
from deploy.spec import Profile

# Never reachable from a pod with the egress policy: link-local holds the cloud metadata endpoint.
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
API_KEY_VARIABLE = "VLLM_API_KEY"  # vLLM reads its key from this variable, so the key never sits in argv
SERVE = ("vllm", "serve")  # the official image's entrypoint
# vLLM checks its key on /v1, /v2, /inference and /cohere only; this middleware checks it on every route
# but /health and /metrics (deploy/assets/edge). The entrypoint appends it after the args (vLLM's parser
# wants the model first), so args changed by hand keep it.
EDGE_FILE = "vllm_deploy_edge.py"
EDGE_MIDDLEWARE = (
    "--middleware",
    "vllm_deploy_edge.KeyOnEveryRoute",
    "--middleware",
    "vllm_deploy_edge.EngineWatch",  # NB: added last, runs first: /health answers for the engine
)
# EngineWatch's settings (the edge module reads these names; tests/unit/test_edge.py holds them equal).
HANG_VARIABLES = {
    "window": "VLLM_DEPLOY_HANG_WINDOW_SECONDS",
    "probe_timeout": "VLLM_DEPLOY_HANG_PROBE_TIMEOUT_SECONDS",
    "exit": "VLLM_DEPLOY_HANG_EXIT_SECONDS",
}
# vLLM serves every /v1 route without authentication when its key variable is empty (it filters out
# empty keys). The entrypoint refuses to start instead, with one clear log line, then runs `vllm serve`
# with the key check on every route.
KEY_GUARD_SCRIPT = (
    f'[ -n "${{{API_KEY_VARIABLE}}}" ] || {{ echo "vllm-deploy: {API_KEY_VARIABLE} is empty or unset; refusing to '
    f'start: vLLM would serve every /v1 route without authentication" >&2; exit 78; }}; exec "$@" {" ".join(EDGE_MIDDLEWARE)}'
)
ENTRYPOINT = ("/bin/sh", "-c", KEY_GUARD_SCRIPT, "key-guard", *SERVE)


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
    if e.mm_processor_kwargs:
        flags += ["--mm-processor-kwargs", json.dumps(e.mm_processor_kwargs, separators=(",", ":"), sort_keys=True)]
    if profile.media.allowed_domains:
        flags += ["--allowed-media-domains", *profile.media.allowed_domains]
    if e.shutdown_timeout_seconds:
        # NB: on SIGTERM vLLM drains: requests in flight finish, for at most this long.
        flags += ["--shutdown-timeout", str(e.shutdown_timeout_seconds)]
    if e.kv_cache_space_gib is not None:
        # NB: an explicit KV cache size makes gpu-memory-utilization irrelevant (on CPU it would reserve RAM).
        flags += ["--kv-cache-memory-bytes", str(e.kv_cache_space_gib * 2**30)]
    return flags + list(e.extra_args)


def serve_args(
    model: str, served_model_name: str, host: str, port: int, flags: list[str], generation_dir: str | None = None
) -> list[str]:
    """`vllm serve` arguments. The one place the positional model, its name, host, port and the directory of the
    generation config (a mount in the container, a scratch directory on a host) are placed."""
    placed = ["--generation-config", generation_dir] if generation_dir else []
    return [model, "--served-model-name", served_model_name, "--host", host, "--port", str(port), *placed, *flags]


def host_command(
    plan: Plan, vllm: str, model: str, host: str, port: int, generation_dir: str | None = None
) -> list[str]:
    """The plan's `vllm serve` as a host process (tests and the bench baseline): its model path, host, port and,
    when the plan has one, the directory its generation config was written to (deploy.render.write_generation_config)."""
    if plan.generation is not None and generation_dir is None:
        raise ValueError(
            f"{plan.name} has a generation config: write it (deploy.render.write_generation_config) and "
            "pass its directory"
        )
    return [
        vllm,
        *SERVE[1:],
        *serve_args(
            model,
            plan.served_model_name,
            host,
            port,
            plan.engine_flags,
            generation_dir if plan.generation is not None else None,
        ),
        *EDGE_MIDDLEWARE,
    ]


def host_environment(plan: Plan, scratch: str) -> dict[str, str]:
    """The plan's environment for a host process: the container's cache paths moved under `scratch`, the
    key-check middleware imported from the package's own copy."""
    cache = plan.writable_dirs["cache"]
    moved = {
        name: scratch + value[len(cache) :] if value.startswith(cache) else value
        for name, value in plan.environment.items()
    }
    return {**moved, "PYTHONPATH": str(BUILD_ASSETS[EDGE_FILE].parent)}


def edge_plan() -> EdgePlan:
    digest = hashlib.sha256(BUILD_ASSETS[EDGE_FILE].read_bytes()).hexdigest()[:10]
    return EdgePlan(file_name=EDGE_FILE, directory=EDGE_DIR, digest=digest)


def container_environment(profile: Profile, storage: StoragePlan) -> dict[str, str]:
    cache = WRITABLE_CACHE_DIR
    env = {
        "VLLM_NO_USAGE_STATS": "1",
        # Where `--middleware vllm_deploy_edge.KeyOnEveryRoute` (in the entrypoint) is imported from.
        "PYTHONPATH": EDGE_DIR,
        "DO_NOT_TRACK": "1",
        # A client-supplied URL must not hold a request (and a worker) for minutes.
        "VLLM_IMAGE_FETCH_TIMEOUT": str(profile.media.fetch_timeout_seconds),
        "VLLM_MEDIA_FETCH_MAX_RETRIES": str(profile.media.fetch_max_retries),
        # vLLM checks allowed-media-domains against the first URL only: a redirect from an allowed host
        # would reach any address (the cloud metadata endpoint included). Off with an allowlist.
        "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "1" if follows_redirects(profile) else "0",
        # The root filesystem is read-only. FlashInfer (vLLM's CUDA sampler) ignores XDG_CACHE_HOME and
        # creates ~/.cache/flashinfer at import; triton, CUDA and vLLM's config use ~ too: HOME and
        # every cache point into the writable cache volume.
        "HOME": cache,
        # Kubernetes runs the official image as a uid it has no passwd entry for (so do our images): getpass,
        # which torch calls for its cache names, reads these before it looks the uid up (KeyError).
        "USER": RUN_AS_NAME,
        "LOGNAME": RUN_AS_NAME,
        "XDG_CACHE_HOME": cache,  # vLLM's cache root and Hugging Face's default follow it
        "FLASHINFER_WORKSPACE_BASE": cache,
        "TRITON_CACHE_DIR": f"{cache}/triton",
        "CUDA_CACHE_PATH": f"{cache}/nv/ComputeCache",
        "TORCHINDUCTOR_CACHE_DIR": f"{cache}/torchinductor",
    }
    server = profile.server
    if server.hang_window_seconds:
        env[HANG_VARIABLES["window"]] = str(server.hang_window_seconds)
        env[HANG_VARIABLES["probe_timeout"]] = str(server.hang_probe_timeout_seconds)
        env[HANG_VARIABLES["exit"]] = str(server.hang_exit_seconds)
    if storage.kind == "hub":
        env["HF_HOME"] = HUB_CACHE_DIR
    # The weights are local (hub storage: the fetch step put them into the cache before the engine started):
    # never reach for the hub, never download by surprise, fail fast instead of hanging on a network call.
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def follows_redirects(profile: Profile) -> bool:
    media = profile.media
    return media.allow_redirects if media.allow_redirects is not None else not media.allowed_domains


def egress_plan(profile: Profile) -> EgressPlan | None:
    if not profile.kubernetes.egress_policy:
        return None
    blocked = [*LINK_LOCAL, *profile.media.blocked_networks]
    return EgressPlan(
        blocked_ipv4=[str(n) for n in blocked if n.version == 4],
        blocked_ipv6=[str(n) for n in blocked if n.version == 6],
    )


def host_literal(address: str) -> str:
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def local_endpoint(address: str, port: int) -> str:
    # NB: a server on every interface is reached on loopback from this host.
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    return f"http://{host_literal(loopback)}:{port}"


def plan_warnings(profile: Profile, storage: str) -> list[str]:
    found = []
    if profile.engine.trust_remote_code and storage == "hub" and not profile.model.revision:
        found.append(
            "engine.trust-remote-code runs Python code from the model repository, and model.revision is not "
            "pinned: a new upstream commit changes the code you run; pin model.revision to a commit"
        )
    return found
