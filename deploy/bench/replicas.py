"""tiny-cpu-x2's router measured: its overhead against the same replica reached straight, a rollout under
load, a replica killed under load, and one hung under load.

Copies of tiny-cpu-x2 under their own compose project names and free ports, so neither a developer's
stack nor the lead's test stacks are touched. Replicas publish no port in the profile; for the bench a
compose override (compose.override.yaml beside compose.yaml, which compose reads by itself) publishes
each replica's port on loopback: the "straight" arm and each replica's own /metrics.
"""

from __future__ import annotations

import math
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deploy.bench.cgroup import Cgroup
from deploy.bench.hang import hang_and_recover
from deploy.bench.load import LoadResult, image_server, image_urls_for, load, load_in_background
from deploy.bench.vllm_bench import ServeResult, ServeSettings, median_result, result_json, serve_bench
from deploy.errors import UserError
from deploy.plan import resolve
from deploy.plan.engine import HANG_VARIABLES
from deploy.plan.router import CONTAINER_PORT
from deploy.runtime.docker import docker_cli
from deploy.runtime.http import MIB, HttpError, fetch
from deploy.runtime.net import free_port, wait_for_http
from deploy.runtime.process import wait_until
from deploy.runtime.router import RouterClient
from deploy.runtime.stack import Stack, down, rollout, up
from deploy.spec import load_profile
from deploy.spec.variant import write_variant

X1 = "tiny-cpu-x1-bench"  # one replica behind the router: the overhead, router against straight
X2 = "tiny-cpu-x2-bench"  # tiny-cpu-x2 itself: rollout and a killed replica
CONCURRENCY = 8
ROLLOUT_REQUESTS = 500
STEADY_REQUESTS = 200
OVERHEAD_ROUNDS = 3
OVERHEAD_SERVE = ServeSettings(prompts=100, concurrency=4)
X2_SERVE = ServeSettings(prompts=200, concurrency=CONCURRENCY)
METRICS_DEADLINE_SECONDS = 5.0
METRICS_CAP = 8 * MIB  # a replica's Prometheus text (every histogram's buckets)


def x2_variant(work: Path, name: str, changes: dict | None = None) -> Stack:
    root = work / name
    root.mkdir(parents=True, exist_ok=True)
    profile = write_variant(
        "tiny-cpu-x2",
        root / "profile.yaml",
        {"name": name, "server": {"port": free_port()}, "monitoring": {"enabled": False}, **(changes or {})},
    )
    return Stack(resolve(load_profile(str(profile))), root)


def publish_replicas(stack: Stack) -> dict[str, str]:
    """Write the compose override that publishes every replica on a free loopback port; their URLs by service.
    Before `up`: the rendered files are written beside it and leave it alone."""
    ports = {replica.service: free_port() for replica in stack.plan.instances}
    stack.directory.mkdir(parents=True, exist_ok=True)
    (stack.directory / "compose.override.yaml").write_text(
        "# Written by `make bench`: each replica straight from the host, for the bench only.\nservices:\n"
        + "".join(
            f'  {service}:\n    ports: ["127.0.0.1:{port}:{CONTAINER_PORT}"]\n' for service, port in ports.items()
        ),
        encoding="utf-8",
    )
    return {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}


def router_overhead(stack: Stack, straight_url: str, serve: Callable[[str, str], ServeResult], rounds: int) -> dict:
    """`vllm bench serve` through the router and straight to its one replica, alternating (the order flips
    each round, so a drift in the machine's load does not favour one arm); medians over rounds."""
    urls = {"router": stack.endpoint, "straight": straight_url}
    by_round: dict[str, list[ServeResult]] = {"router": [], "straight": []}
    for number in range(rounds):
        for arm in ("router", "straight") if number % 2 == 0 else ("straight", "router"):
            by_round[arm].append(serve(urls[arm], f"{arm}-{number + 1}"))
    router, straight = median_result(by_round["router"]), median_result(by_round["straight"])
    return {
        "rounds": rounds,
        "router": result_json(router),
        "straight": result_json(straight),
        "rps_ratio": round(router.requests_per_second / straight.requests_per_second, 3),
        "added_p50_e2el_ms": round(router.ms["e2el"]["p50"] - straight.ms["e2el"]["p50"], 1),
        "added_p50_ttft_ms": round(router.ms["ttft"]["p50"] - straight.ms["ttft"]["p50"], 1),
        "rps_by_round": {arm: [r.requests_per_second for r in results] for arm, results in by_round.items()},
        "failed": sum(r.failed for results in by_round.values() for r in results),
    }


def healthy_workers(router: RouterClient) -> int | None:
    """The router's count of healthy workers; None while it does not say (no answer, or not a count)."""
    try:
        count = router.readiness().get("healthy_workers")
    except HttpError:
        return None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def requests_held(metrics: str) -> int:
    """Requests a replica holds, from its Prometheus text: running plus waiting (a sample that is not a
    finite number counts nothing)."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            return 0.0
        return value if math.isfinite(value) else 0.0

    return round(
        sum(
            number(value)
            for value in re.findall(
                r"^vllm:num_requests_(?:running|waiting)(?:\{[^}]*\})? ([0-9.e+-]+)$", metrics, flags=re.M
            )
        )
    )


def in_flight(replica_url: str, deadline: float = METRICS_DEADLINE_SECONDS) -> int:
    return requests_held(fetch("GET", f"{replica_url}/metrics", deadline=deadline, cap=METRICS_CAP).ok().text())


def kill_under_load(stack: Stack, replica_urls: dict[str, str], image_urls: list[str]) -> dict:
    """`docker kill` of the last replica under load at concurrency 8: the requests that failed against those
    the replica held when it died, how long until the router stops counting it healthy, and how long after
    `compose up` of its service until the replica is healthy and the router uses it again."""
    plan, key = stack.plan, stack.key() or ""
    health = plan.router
    if health is None:
        raise ValueError(f"{plan.name}: a replica killed under load needs the router (tiny-cpu-x2 has it)")
    router = stack.router()
    if router is None:
        raise UserError(f"{plan.name} has no router running")
    victim = plan.instances[-1].service
    with load_in_background(
        stack.endpoint, key, plan.served_model_name, CONCURRENCY, STEADY_REQUESTS, image_urls
    ) as results:
        time.sleep(3)  # the load is running on both replicas
        held = in_flight(replica_urls[victim])
        killed = time.monotonic()
        subprocess.run([docker_cli(), "kill", stack.container(victim) or ""], check=True, capture_output=True)
        wait_until(
            lambda: True if healthy_workers(router) == len(plan.instances) - 1 else None, timeout=120, interval=0.2
        )
        dropped = time.monotonic() - killed
        time.sleep(5)  # the load stays on the survivor for a while
    started = time.monotonic()
    stack.compose("up", "-d", "--no-deps", "--no-build", victim).checked(f"docker compose up {victim}")
    replica_back = wait_for_http(f"{replica_urls[victim]}/health", 600, interval=0.2)
    wait_until(lambda: True if healthy_workers(router) == len(plan.instances) else None, timeout=600, interval=0.2)
    back = time.monotonic() - started
    result: LoadResult = results["load"]
    return {
        "victim": victim,
        "concurrency": CONCURRENCY,
        "requests": result.requests,
        "failed": result.errors,
        "failures": result.failures,
        "in_flight": held,
        "dropped_after_s": round(dropped, 1),
        "health_interval_s": health.health_check_interval_seconds,
        "health_failure_threshold": health.health_failure_threshold,
        "health_bound_s": health.health_check_interval_seconds * health.health_failure_threshold,
        "engine_healthy_after_s": round(replica_back, 1),
        "back_in_router_after_s": round(back, 1),
    }


def hang_under_load(stack: Stack, replica_urls: dict[str, str], image_urls: list[str]) -> dict:
    """The engine core of the last replica frozen (SIGSTOP) under load at concurrency 8, its API still up: the
    requests that failed, how long until its /health answers 503 and the router stops counting it healthy, and
    how long until it is restarted by itself (EngineWatch exits it, compose's policy restarts it) and back in the
    router. No command is given after the freeze."""
    plan, key = stack.plan, stack.key() or ""
    if plan.router is None:
        raise ValueError(f"{plan.name}: a replica hung under load needs the router (tiny-cpu-x2 has it)")
    router = stack.router()
    if router is None:
        raise UserError(f"{plan.name} has no router running")
    victim = plan.instances[-1].service
    container = stack.container(victim) or ""
    before = stack.docker.state(container)
    restarts = before.restarts if before else 0

    def restarted() -> bool:
        state = stack.docker.state(container)
        return bool(state and state.restarts > restarts and healthy_workers(router) == len(plan.instances))

    with load_in_background(
        stack.endpoint, key, plan.served_model_name, CONCURRENCY, STEADY_REQUESTS, image_urls
    ) as results:
        time.sleep(3)  # the load is running on both replicas
        held = in_flight(replica_urls[victim])
        timings = hang_and_recover(replica_urls[victim], container, restarted, timeout=600)
        time.sleep(3)  # the load meets both replicas again
    result: LoadResult = results["load"]
    return {
        "victim": victim,
        "concurrency": CONCURRENCY,
        "requests": result.requests,
        "failed": result.errors,
        "failures": result.failures,
        "in_flight": held,
        "detected_after_s": timings["detected_after_s"],
        "back_in_router_after_s": timings["serving_again_after_s"],  # NB: restarted() waits for the router too
        "window_s": int(plan.environment[HANG_VARIABLES["window"]]),
        "probe_timeout_s": int(plan.environment[HANG_VARIABLES["probe_timeout"]]),
        "exit_s": int(plan.environment[HANG_VARIABLES["exit"]]),
    }


def rollout_under_load(stack: Stack, image_urls: list[str], on_step: Callable[[str], None]) -> dict:
    """Steady-state load, then load of at least 500 image requests at concurrency 8 that lasts while
    `rollout` replaces every replica, one at a time."""
    plan, key = stack.plan, stack.key() or ""
    steady = load(stack.endpoint, key, plan.served_model_name, CONCURRENCY, STEADY_REQUESTS, image_urls)
    before = {r.service: stack.container(r.service) for r in plan.instances}
    finished = threading.Event()
    outcome: dict[str, Any] = {}

    def roll() -> None:
        try:
            time.sleep(2)  # the load is running before the first replica goes
            started = time.monotonic()
            outcome["replaced"] = rollout(stack, on_step=on_step)
            outcome["seconds"] = round(time.monotonic() - started, 1)
        except Exception as exc:  # NB: re-raised below, once the load has stopped
            outcome["error"] = exc
        finally:
            finished.set()

    roller = threading.Thread(target=roll)
    roller.start()
    during = load(
        stack.endpoint, key, plan.served_model_name, CONCURRENCY, ROLLOUT_REQUESTS, image_urls, until=finished.is_set
    )
    roller.join()
    if "error" in outcome:
        raise outcome["error"]
    after = {r.service: stack.container(r.service) for r in plan.instances}
    return {
        "concurrency": CONCURRENCY,
        "steady": asdict(steady),
        "during": asdict(during),
        "replaced": [{"service": service, "s": seconds} for service, seconds in outcome["replaced"]],
        "rollout_s": outcome["seconds"],
        "all_replaced": all(before[s] != after[s] for s in before),
    }


def measure(
    work: Path, vllm: Path, tokenizer: Path, cgroup: Cgroup, log: Callable[[str], None], section: Callable
) -> dict:
    """Every figure of tiny-cpu-x2's router; `vllm bench serve` runs in the client's cgroup."""
    figures: dict = {}

    def serve(stack: Stack, settings: ServeSettings) -> Callable[[str, str], ServeResult]:
        return lambda url, label: serve_bench(
            vllm,
            url,
            stack.plan.served_model_name,
            tokenizer,
            stack.key() or "",
            work / "vllm-bench",
            settings,
            label,
            wrap=cgroup.wrap,
        )

    for name in (X1, X2):
        subprocess.run([docker_cli(), "volume", "rm", "-f", f"{name}_cache"], capture_output=True)
    x1 = x2_variant(work, X1, {"replicas": 1, "router": {"enabled": True}})
    replica_urls = publish_replicas(x1)
    try:
        log("router overhead: tiny-cpu-x2's router with one replica behind it, against that replica straight")
        section("x1 stack up", up, x1)
        figures["router"] = section(
            "router overhead",
            router_overhead,
            x1,
            replica_urls[x1.plan.instances[0].service],
            serve(x1, OVERHEAD_SERVE),
            OVERHEAD_ROUNDS,
        )
        figures["router"]["settings"] = asdict(OVERHEAD_SERVE)
    finally:
        down(x1, remove_volumes=True)
    x2 = x2_variant(work, X2)
    replica_urls = publish_replicas(x2)
    try:
        section("x2 stack up", up, x2)
        log("tiny-cpu-x2 through its router: vllm bench serve")
        figures["x2_serve"] = result_json(section("x2 serving benchmark", serve(x2, X2_SERVE), x2.endpoint, "x2"))
        figures["x2_serve"]["settings"] = asdict(X2_SERVE)
        with image_server(x2.gateway()) as url:
            urls = image_urls_for(url)
            # NB: the kill before the rollout: workers the rollout hands back to the router (/add_worker) get
            # the router's default health checks, not the profile's, and the kill is judged against those.
            log("a replica killed under load")
            figures["kill"] = section("killed replica", kill_under_load, x2, replica_urls, urls)
            log("a replica hung under load")
            figures["hang"] = section("hung replica", hang_under_load, x2, replica_urls, urls)
            log("rollout under load")
            figures["rollout"] = section("rollout under load", rollout_under_load, x2, urls, log)
    finally:
        down(x2, remove_volumes=True)
    return figures
