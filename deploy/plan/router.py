"""Replicas and the router in front of them: compose services, cores or GPUs each, and the router's argv.

The router is vLLM's own (PyPI vllm-router). Compose gives it static worker URLs; on Kubernetes it
discovers the engine pods by label, so each pod is a worker with its own health checks (a headless
Service would be a single worker to it).
"""

from __future__ import annotations

import hashlib
import json

from deploy.paths import BUILD_ASSETS, TEMPLATE_DIR
from deploy.plan.model import ReplicaPlan, RouterPlan
from deploy.spec import Profile, device_facts, gpu_count

CONTAINER_PORT = 8000
METRICS_PORT = 29000
PRESTOP_SECONDS = 5  # endpoints and the router's health checks drop a pod before it gets SIGTERM
KEY_VARIABLE = "VLLM_ROUTER_API_KEY"
KEEP_ALIVE_SECONDS = 120  # longer than the router's connection pool keeps an idle connection (90 s)


def router_enabled(profile: Profile) -> bool:
    return profile.router.enabled if profile.router.enabled is not None else profile.replicas > 1


def replicas(profile: Profile) -> list[ReplicaPlan]:
    if not router_enabled(profile):
        return [ReplicaPlan(service="vllm", gpu_ids=[], cpuset=None, environment={},
                            url=f"http://vllm:{CONTAINER_PORT}")]
    found: list[ReplicaPlan] = []
    per_replica = gpu_count(profile)
    cores = profile.resources.cpus or 1
    for index in range(profile.replicas):
        name = f"vllm-{index}"
        gpu_ids = [str(index * per_replica + j) for j in range(per_replica)] if profile.image.device == "cuda" else []
        cpuset, environment = None, {}
        if profile.image.device == "cpu":
            first = index * cores
            cpuset = str(first) if cores == 1 else f"{first}-{first + cores - 1}"
            # NB: vLLM binds its OpenMP threads to these cores, so replicas never share one.
            environment = {"VLLM_CPU_OMP_THREADS_BIND": cpuset}
        found.append(ReplicaPlan(service=name, gpu_ids=gpu_ids, cpuset=cpuset, environment=environment,
                                 url=f"http://{name}:{CONTAINER_PORT}",
                                 starts_after=found[-1].service if found else None))
    return found


def engine_environment(profile: Profile) -> dict[str, str]:
    """What the engines behind a router need in their environment besides the plan's own."""
    if not router_enabled(profile):
        return {}
    # NB: vLLM closes idle connections after 5 s; the router's pool keeps them longer and would send a
    # request on one vLLM just closed. Behind the router, vLLM keeps them open longer than the pool.
    return {"VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(KEEP_ALIVE_SECONDS)}


def _common_argv(profile: Profile, load_budget: int) -> list[str]:
    r = profile.router
    argv = ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT), "--policy", r.policy,
            "--prometheus-host", "0.0.0.0", "--prometheus-port", str(METRICS_PORT),
            "--health-check-interval-secs", str(r.health_check_interval_seconds),
            "--health-failure-threshold", str(r.health_failure_threshold), "--health-success-threshold", "1",
            # NB: its default 60 s keeps a recovered replica out for a minute after it answers again.
            "--cb-timeout-duration-secs", str(r.circuit_breaker_seconds),
            "--retry-max-retries", str(r.max_retries), "--request-timeout-secs", str(r.request_timeout_seconds),
            "--queue-size", str(r.queue_size), "--max-payload-size", str(r.max_payload_mib * 2**20),
            "--worker-startup-timeout-secs", str(load_budget), "--worker-startup-check-interval", "2"]
    if r.max_concurrent_requests is not None:
        argv += ["--max-concurrent-requests", str(r.max_concurrent_requests)]
    return argv


def _reference(profile: Profile, inputs: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(inputs, sort_keys=True).encode())
    for name in ("docker/Dockerfile.router.j2",):
        digest.update((TEMPLATE_DIR / name).read_bytes())
    digest.update(BUILD_ASSETS["router_launch.py"].read_bytes())
    repository = profile.image.registry or device_facts()["local-registry"]
    return f"{repository}/router:{digest.hexdigest()[:12]}"


def router(profile: Profile, engine_selector: dict[str, str], engine_service: str, object_name: str,
           labels: dict[str, str], engine_urls: list[str]) -> RouterPlan | None:
    if not router_enabled(profile):
        return None
    facts = device_facts()["router"]
    budget = profile.kubernetes.load_budget_seconds
    python = facts["python"]
    inputs = {"base": facts["base-image"], "version": facts["version"], "python": python,
              "run_as_user": facts["run-as-user"]}
    common = _common_argv(profile, budget)
    namespace = profile.kubernetes.namespace
    health = (f"import os, urllib.request; urllib.request.urlopen(urllib.request.Request("
              f"'http://127.0.0.1:{CONTAINER_PORT}/readiness', headers={{'Authorization': 'Bearer ' + "
              f"os.environ['{KEY_VARIABLE}']}}), timeout=4)")
    return RouterPlan(
        image=_reference(profile, inputs), base=facts["base-image"], version=facts["version"], python=python,
        run_as_user=facts["run-as-user"],
        entrypoint=[python, "/opt/vllm-deploy/router_launch.py"],
        compose_argv=["--worker-urls", *engine_urls, *common],
        kubernetes_argv=["--service-discovery", "--selector", *(f"{k}={v}" for k, v in engine_selector.items()),
                         "--service-discovery-port", str(CONTAINER_PORT), "--service-discovery-namespace", namespace,
                         *common],
        compose_environment={"VLLM_ROUTER_KEY_VALIDATION_URLS": ",".join(f"{u}/v1/models" for u in engine_urls)},
        kubernetes_environment={"VLLM_ROUTER_KEY_VALIDATION_URLS":
                                f"http://{engine_service}.{namespace}.svc:{CONTAINER_PORT}/v1/models"},
        api_key_variable=KEY_VARIABLE, container_port=CONTAINER_PORT, metrics_port=METRICS_PORT,
        health_path="/readiness", health_command=[python, "-c", health],
        object_name=object_name, labels=labels,
        selector={k: v for k, v in labels.items() if k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")},
        prestop_seconds=PRESTOP_SECONDS,
        health_check_interval_seconds=profile.router.health_check_interval_seconds,
        health_failure_threshold=profile.router.health_failure_threshold,
        # NB: the router finishes requests in flight on SIGTERM but has no deadline of its own.
        termination_grace_seconds=PRESTOP_SECONDS + profile.router.request_timeout_seconds,
    )
