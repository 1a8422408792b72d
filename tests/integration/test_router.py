"""tiny-cpu-x2 for real: two CPU replicas behind vLLM's router under Docker Compose. The smoke suite passes
through the router; the key is checked at the router and at each engine; a rollout under load loses no
request; a killed engine costs at most the requests in flight on it, and the router takes it back.
Prometheus beside it scrapes every replica and the router, every rule and dashboard query evaluates, the
"engine down" alert fires for the killed engine, and `vllm-deploy status` reads it all.

A copy of tiny-cpu-x2 under its own name and a free port: a developer's own stack is never touched.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import requests

from deploy.bench.load import image_urls_for, load
from deploy.bench.replicas import rollout_under_load
from deploy.plan import resolve
from deploy.runtime.docker import docker_cli
from deploy.runtime.net import free_port
from deploy.runtime.process import wait_until
from deploy.runtime.smoke import plan_options, run_suite
from deploy.runtime.stack import Stack, down, up
from deploy.runtime.status import Prometheus, status
from deploy.spec import load_profile
from deploy.spec.variant import write_variant
from tests.conftest import print_logs_if_failed

pytestmark = [pytest.mark.docker, pytest.mark.slow]
NAME = "tiny-cpu-x2-test"
LOAD_REQUESTS = 500  # the figure, at concurrency 8
CONCURRENCY = 8


@pytest.fixture(scope="module")
def x2(tmp_path_factory):
    root = tmp_path_factory.mktemp("x2")
    profile = write_variant("tiny-cpu-x2", root / "profile.yaml", {"name": NAME, "server": {"port": free_port()},
                                                                  "monitoring": {"port": free_port()}})
    stack = Stack(resolve(load_profile(str(profile))), root)
    subprocess.run([docker_cli(), "volume", "rm", "-f", f"{NAME}_cache"], capture_output=True)
    try:
        up(stack)
        yield stack
    finally:
        down(stack, remove_volumes=True)


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    yield
    print_logs_if_failed(request, "x2", 60)


def readiness(stack: Stack) -> dict:
    response = requests.get(f"{stack.endpoint}/readiness", headers={"Authorization": f"Bearer {stack.key()}"},
                            timeout=5)
    return response.json()


def in_container(stack: Stack, service: str, code: str) -> str:
    container = stack.container(service)
    assert container is not None, f"{service} has no container"
    done = subprocess.run([docker_cli(), "exec", container, "/opt/venv/bin/python", "-c", code],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def test_the_smoke_suite_passes_through_the_router(x2):
    code, cases, output = run_suite(plan_options(x2.plan, x2.endpoint, x2.gateway()), key=x2.key(),
                                    ready=x2.plan.health.start_period_seconds)
    assert code == 0, output[-6000:]
    assert {c.status for c in cases} == {"passed"}
    assert readiness(x2)["healthy_workers"] == 2


def test_the_key_is_checked_at_the_router_and_at_each_engine(x2):
    # At the router: every route, its admin routes included (the stock router leaves those open).
    assert requests.get(f"{x2.endpoint}/v1/models", timeout=5).status_code == 401
    assert requests.post(f"{x2.endpoint}/remove_worker", params={"url": "http://vllm-0:8000"}, timeout=5).status_code == 401
    assert requests.get(f"{x2.endpoint}/v1/models", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    assert requests.get(f"{x2.endpoint}/v1/models", headers={"Authorization": f"Bearer {x2.key()}"}, timeout=5).ok
    # At each engine, reached on the compose network (engines publish no port).
    probe = ("import urllib.request, urllib.error\n"
             "try:\n    urllib.request.urlopen('http://127.0.0.1:8000/v1/models', timeout=5); print(200)\n"
             "except urllib.error.HTTPError as e:\n    print(e.code)")
    for replica in x2.plan.replicas:
        assert in_container(x2, replica.service, probe) == "401"


def test_requests_are_spread_over_both_replicas(x2):
    before = {r.service: x2.engine.logs(x2.container(r.service), 100000).count("POST /v1/chat/completions")
              for r in x2.plan.replicas}
    result = load(x2.endpoint, x2.key(), x2.plan.served_model_name, 2, 20, image_urls_for(None))
    assert result.errors == 0
    after = {r.service: x2.engine.logs(x2.container(r.service), 100000).count("POST /v1/chat/completions")
             for r in x2.plan.replicas}
    served = {service: after[service] - before[service] for service in after}
    assert sum(served.values()) == 20 and min(served.values()) >= 8, served  # round robin: about half each


def prometheus(stack: Stack) -> Prometheus:
    assert stack.plan.monitoring is not None
    return Prometheus(stack.plan.monitoring.local_endpoint)


def scraped(stack: Stack, query: str, job: str) -> dict[str, float]:
    """instance -> value of a metric in Prometheus, once every target of the job has a sample of it."""
    assert stack.plan.monitoring is not None
    targets = set(stack.plan.monitoring.compose_targets[job])

    def complete() -> dict[str, float] | None:
        found = {labels["instance"]: value for labels, value in prometheus(stack).vector(query)
                 if labels.get("job") == job and value is not None}
        return found if set(found) == targets else None

    return wait_until(complete, timeout=60, interval=1)[0]  # a scrape or two after the requests


def test_prometheus_scrapes_every_replica_and_the_router(x2):
    assert x2.plan.monitoring and "prometheus" in x2.services
    assert scraped(x2, "up", "vllm-engine") == dict.fromkeys(x2.plan.monitoring.compose_targets["vllm-engine"], 1.0)
    assert set(scraped(x2, "vllm:num_requests_running", "vllm-engine").values()) <= {0.0, 1.0, 2.0}
    served = scraped(x2, "vllm:e2e_request_latency_seconds_count", "vllm-engine")
    assert min(served.values()) > 0, served  # the requests of the tests before reached both replicas
    assert scraped(x2, "up", "vllm-router") == {"router:29000": 1.0}
    assert scraped(x2, "vllm_router_active_workers", "vllm-router") == {"router:29000": 2.0}


def test_every_rule_and_dashboard_query_evaluates(x2):
    """Each expression is accepted by the live Prometheus (a UserError otherwise); the recording rules
    have produced series from the real metrics."""
    api = prometheus(x2)
    for query in x2.plan.monitoring.queries:
        api.vector(query)
    recorded = [rule.record for group in x2.plan.monitoring.rule_groups for rule in group.rules if rule.record]
    assert recorded
    for name in recorded:
        if "ratio" not in name:  # NB: the error ratio has no series until a chat request failed or succeeded
            # NB: wait_until calls the lambda within this iteration, never after it (B023 does not apply)
            assert wait_until(lambda: api.vector(name) or None, timeout=30, interval=1)[0], name  # noqa: B023


def test_status_reads_the_live_metrics(x2):
    shown: list[str] = []
    status(x2.plan, out=shown.append)
    text = shown[0]
    assert "engines healthy     2/2" in text and "router workers      2" in text, text
    assert "alerts              none" in text, text


def test_a_rollout_under_load_loses_no_request(x2, measured):
    """The procedure `make bench` reports (deploy/bench/replicas.py): 200 requests steady, then load of at
    least 500 that lasts while the rollout replaces each replica; it re-raises what the rollout raised."""
    from smoke_tests.image_server import IMAGE_PATH, ImageServer

    gateway = x2.gateway()
    with ImageServer(gateway, gateway, 0) as images:
        found = rollout_under_load(x2, image_urls_for(images.url(IMAGE_PATH)), on_step=lambda line: None)
    steady, during = found["steady"], found["during"]
    assert found["all_replaced"], "a replica was not replaced"
    assert found["concurrency"] == CONCURRENCY
    assert during["errors"] == 0 and during["requests"] >= LOAD_REQUESTS
    assert steady["errors"] == 0
    measured["rollout of 2 replicas under load (replica, seconds)"] = [(r["service"], r["s"]) for r in found["replaced"]]
    measured["requests during the rollout, failed"] = f"{during['requests']}, {during['errors']}"
    measured["p95 steady vs during the rollout (ms)"] = f"{steady['p95_ms']:.0f} vs {during['p95_ms']:.0f}"


def test_a_killed_engine_costs_at_most_its_requests_in_flight(x2, measured):
    victim = x2.plan.replicas[1].service
    container = x2.container(victim)
    stop = threading.Event()
    results: dict = {}

    def traffic() -> None:
        results["load"] = load(x2.endpoint, x2.key(), x2.plan.served_model_name, CONCURRENCY, 200,
                               image_urls_for(None), until=stop.is_set)

    loader = threading.Thread(target=traffic)
    loader.start()
    time.sleep(3)
    subprocess.run([docker_cli(), "kill", container], check=True, capture_output=True)
    killed_at = time.monotonic()
    try:
        _, dropped_after = wait_until(lambda: True if readiness(x2)["healthy_workers"] == 1 else None,
                                      timeout=60, interval=0.5)
    finally:
        time.sleep(5)  # keep the load on the survivor for a while
        stop.set()
        loader.join()
    result = results["load"]
    # Its "down" alert: pending once Prometheus misses a scrape, firing after the rule's `for`.
    instance = next(t for t in x2.plan.monitoring.compose_targets["vllm-engine"] if t.startswith(victim))

    def alert_state() -> str | None:
        return next((a.state for a in prometheus(x2).alerts()
                     if a.name == "VllmEngineDown" and a.instance == instance), None)

    states: set[str] = set()

    def firing() -> bool | None:
        states.add(alert_state() or "inactive")
        return True if "firing" in states else None

    wait_until(firing, timeout=120, interval=1)  # NB: the victim stays down until started again below
    fired_after = time.monotonic() - killed_at
    shown: list[str] = []
    status(x2.plan, out=shown.append)
    # It comes back: started again, the router takes it back once its health checks pass.
    x2.compose("up", "-d", "--no-deps", "--no-build", victim).checked()
    _, back_after = wait_until(lambda: True if readiness(x2)["healthy_workers"] == 2 else None,
                               timeout=300, interval=1)
    router = x2.plan.router
    assert result.errors <= CONCURRENCY, result  # at most the requests in flight on it (retries recover the rest)
    # NB: a figure, not an assertion (timings on 2 shared cores are noisy): the bound its health checks set.
    bound = router.health_check_interval_seconds * router.health_failure_threshold
    measured["engine killed under load: requests, failed"] = f"{result.requests}, {result.errors}"
    measured["router stops using a killed engine after (s), health checks allow"] = f"{dropped_after:.1f}, {bound}"
    measured["killed engine started again to back in the router (s)"] = round(back_after, 1)
    rule = next(r for g in x2.plan.monitoring.rule_groups for r in g.rules if r.alert == "VllmEngineDown")
    measured["VllmEngineDown firing after the kill (s), rule's for, states seen"] = (
        f"{fired_after:.0f}, {rule.for_}, {sorted(states)}")
    assert "firing" in states and f"firing   VllmEngineDown {instance}" in shown[0], (states, shown)
    assert "engines healthy     1/2" in shown[0], shown[0]
    final = readiness(x2)
    assert (final["healthy_workers"], final["total_workers"]) == (2, 2)
