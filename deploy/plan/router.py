"""Replicas and the router in front of them: the engine copies on one host, cores or GPUs each, and the
router's argv.

The router is vLLM's own (PyPI vllm-router). Where it finds its workers is each target's
(deploy/targets/): compose gives it static worker URLs; on Kubernetes it discovers the engine pods by
label, so each pod is a worker with its own health checks (a headless Service would be a single worker to it).

The router has one credential for everything (its admin routes included) and checks a client key by
asking the engines, caching a refusal for its lifetime. So it listens on 127.0.0.1 only, and a front
(Debian's haproxy, in the same container, started by our launcher) takes the container's port: it lets
clients reach an allowlist of routes drawn from the router's own route table
(deploy/data/vllm-router-routes.json), requires the key on all of them but a public few, and never
passes an admin route. Operators reach those inside the container (`docker exec`, `kubectl exec`).
"""

from __future__ import annotations

import hashlib
import json

from deploy.facts import device_facts, route_table
from deploy.paths import BUILD_ASSETS, TEMPLATE_DIR
from deploy.plan.constants import (
    CONTAINER_PORT,
    ENGINE_NAME,
    FRONT_BINARY,
    FRONT_CONFIG,
    ROUTER_LAUNCHER,
    ROUTER_LIVENESS_PATH,
    ROUTER_METRICS_PORT,
    ROUTER_PORT,
    ROUTER_READINESS_PATH,
)
from deploy.plan.model import FrontRoute, InstancePlan, RouterPlan
from deploy.spec import Profile, gpu_count, router_on

PRESTOP_SECONDS = 5  # endpoints and the router's health checks drop a pod before it gets SIGTERM
KEY_VARIABLE = "VLLM_ROUTER_API_KEY"
KEY_HASH_VARIABLE = "VLLM_DEPLOY_FRONT_KEY_SHA256"  # set by the launcher for the front alone
KEEP_ALIVE_SECONDS = 120  # longer than the router's connection pool keeps an idle connection (90 s)
CLIENT_GROUPS = ("protected", "public")  # the route table's groups a client may ever see; never admin, worker
# The front's allowlist: what a client of a chat model calls. Everything else in the router's table (its
# other inference APIs, stored responses, admin and worker routes) and anything it may add later: 404.
CLIENT_ROUTES = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/models"),
    ("GET", "/health"),
    ("GET", ROUTER_READINESS_PATH),
    ("GET", ROUTER_LIVENESS_PATH),
]
# Answered without the key: what kubelet probes and load-balancer health checks call, which carry no
# credentials. /liveness says "OK"; /readiness says ready or not and how many engines are healthy. NB: not
# /health: its 503 names every unhealthy engine's internal URL, and one bad replica fails it.
PUBLIC_ROUTES = {("GET", ROUTER_READINESS_PATH), ("GET", ROUTER_LIVENESS_PATH)}
FRONT_TIMEOUT_MARGIN_SECONDS = 30  # the router's own request timeout answers first


def instances(profile: Profile) -> list[InstancePlan]:
    """The engine copies on one host: one alone, or one per replica behind the router, each its own GPUs or cores."""
    if not router_on(profile):
        url = f"http://{ENGINE_NAME}:{CONTAINER_PORT}"
        return [InstancePlan(service=ENGINE_NAME, gpu_ids=[], cpuset=None, environment={}, url=url)]
    found: list[InstancePlan] = []
    per_replica = gpu_count(profile)
    cores = profile.resources.cpus or 1
    for index in range(profile.replicas):
        name = f"{ENGINE_NAME}-{index}"
        gpu_ids = [str(index * per_replica + j) for j in range(per_replica)] if profile.image.device == "cuda" else []
        cpuset, environment = None, {}
        if profile.image.device == "cpu":
            first = index * cores
            cpuset = str(first) if cores == 1 else f"{first}-{first + cores - 1}"
            # NB: vLLM binds its OpenMP threads to these cores, so replicas never share one.
            environment = {"VLLM_CPU_OMP_THREADS_BIND": cpuset}
        found.append(
            InstancePlan(
                service=name,
                gpu_ids=gpu_ids,
                cpuset=cpuset,
                environment=environment,
                url=f"http://{name}:{CONTAINER_PORT}",
                starts_after=found[-1].service if found else None,
            )
        )
    return found


def engine_environment(profile: Profile) -> dict[str, str]:
    """What the engines behind a router need in their environment besides the plan's own."""
    if not router_on(profile):
        return {}
    # NB: vLLM closes idle connections after 5 s; the router's pool keeps them longer and would send a
    # request on one vLLM just closed. Behind the router, vLLM keeps them open longer than the pool.
    return {"VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(KEEP_ALIVE_SECONDS)}


def front_routes() -> list[FrontRoute]:
    """The front's allowlist, each route checked against the router's table: a route the pinned router
    does not have (or has only among its admin or worker routes) is a mistake here, not a client route."""
    table = route_table()
    clients = {(r["method"], r["path"]) for group in CLIENT_GROUPS for r in table["groups"][group]}
    # NB: a templated path ("/v1/responses/{response_id}") would need a pattern: the front matches exact paths.
    unknown = [f"{method} {path}" for method, path in CLIENT_ROUTES if (method, path) not in clients or "{" in path]
    if unknown or not set(CLIENT_ROUTES) >= PUBLIC_ROUTES:
        raise RuntimeError(
            f"the router front's allowlist names routes that are not client routes of "
            f"vllm-router {table['vllm_router_version']}: {', '.join(unknown) or PUBLIC_ROUTES}"
        )
    return [
        FrontRoute(method=method, path=path, public=(method, path) in PUBLIC_ROUTES) for method, path in CLIENT_ROUTES
    ]


def _common_argv(profile: Profile, load_budget: int) -> list[str]:
    r = profile.router
    # NB: the router on loopback only: its admin routes answer anyone who reaches its port.
    argv = [
        "--host",
        "127.0.0.1",
        "--port",
        str(ROUTER_PORT),
        "--policy",
        r.policy,
        "--prometheus-host",
        "0.0.0.0",
        "--prometheus-port",
        str(ROUTER_METRICS_PORT),
        "--health-check-interval-secs",
        str(r.health_check_interval_seconds),
        "--health-failure-threshold",
        str(r.health_failure_threshold),
        "--health-success-threshold",
        "1",
        # NB: its default 60 s keeps a recovered replica out for a minute after it answers again.
        "--cb-timeout-duration-secs",
        str(r.circuit_breaker_seconds),
        "--retry-max-retries",
        str(r.max_retries),
        "--request-timeout-secs",
        str(r.request_timeout_seconds),
        "--queue-size",
        str(r.queue_size),
        "--max-payload-size",
        str(r.max_payload_mib * 2**20),
        "--worker-startup-timeout-secs",
        str(load_budget),
        "--worker-startup-check-interval",
        "2",
    ]
    if r.max_concurrent_requests is not None:
        argv += ["--max-concurrent-requests", str(r.max_concurrent_requests)]
    return argv


def _reference(profile: Profile, inputs: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(inputs, sort_keys=True).encode())
    for name in ("docker/Dockerfile.router.j2", "router/haproxy.cfg.j2"):
        digest.update((TEMPLATE_DIR / name).read_bytes())
    digest.update(BUILD_ASSETS["router_launch.py"].read_bytes())
    repository = profile.image.registry or device_facts()["local-registry"]
    return f"{repository}/router:{digest.hexdigest()[:12]}"


def router(profile: Profile) -> RouterPlan | None:
    if not router_on(profile):
        return None
    facts = device_facts()["router"]
    budget = profile.kubernetes.load_budget_seconds
    python = facts["python"]
    routes = front_routes()
    front_timeout = profile.router.request_timeout_seconds + FRONT_TIMEOUT_MARGIN_SECONDS
    # Everything the image's files are rendered from: a change gives a new image name.
    inputs = {
        "base": facts["base-image"],
        "version": facts["version"],
        "python": python,
        "run_as_user": facts["run-as-user"],
        "routes": [r.model_dump() for r in routes],
        "ports": [CONTAINER_PORT, ROUTER_PORT],
        "front_timeout": front_timeout,
        "key_hash_variable": KEY_HASH_VARIABLE,
        "front_config": FRONT_CONFIG,
    }
    # NB: through the front, on a public route: the probe proves both processes answer, and needs no key.
    health = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{ROUTER_READINESS_PATH}', timeout=4)"
    )
    return RouterPlan(
        image=_reference(profile, inputs),
        base=facts["base-image"],
        version=facts["version"],
        python=python,
        run_as_user=facts["run-as-user"],
        entrypoint=[python, ROUTER_LAUNCHER, FRONT_BINARY, "-db", "-f", FRONT_CONFIG, "--"],
        argv=_common_argv(profile, budget),
        api_key_variable=KEY_VARIABLE,
        container_port=CONTAINER_PORT,
        router_port=ROUTER_PORT,
        admin_url=f"http://127.0.0.1:{ROUTER_PORT}",
        metrics_port=ROUTER_METRICS_PORT,
        front_config=FRONT_CONFIG,
        front_routes=routes,
        key_hash_variable=KEY_HASH_VARIABLE,
        front_timeout_seconds=front_timeout,
        health_path=ROUTER_READINESS_PATH,
        liveness_path=ROUTER_LIVENESS_PATH,
        health_command=[python, "-c", health],
        prestop_seconds=PRESTOP_SECONDS,
        health_check_interval_seconds=profile.router.health_check_interval_seconds,
        health_failure_threshold=profile.router.health_failure_threshold,
        # NB: the router finishes requests in flight on SIGTERM but has no deadline of its own.
        termination_grace_seconds=PRESTOP_SECONDS + profile.router.request_timeout_seconds,
    )
