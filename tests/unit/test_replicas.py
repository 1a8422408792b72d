"""Replicas behind vLLM's router, as rendered: compose services with their own cores or GPUs, the router in
front (key checked, static workers), Kubernetes rolling one pod at a time with a budget and a drain."""

from __future__ import annotations

import yaml

from deploy.plan import resolve
from deploy.render import render
from deploy.spec import Profile, load_profile
from deploy.targets import compose_plan, kubernetes_plan
from tests.conftest import FIXTURE_PROFILES

SINK = str(FIXTURE_PROFILES / "kitchen-sink.yaml")


def files(ref: str) -> dict[str, str]:
    return render(resolve(load_profile(ref)))


def compose(ref: str) -> dict:
    plan = resolve(load_profile(ref))
    return yaml.safe_load(files(ref)[f"compose/{plan.name}/compose.yaml"])


def objects(ref: str) -> list[dict]:
    return [
        doc
        for path, text in files(ref).items()
        if path.startswith("k8s/") and path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] != "Kustomization"
    ]


def test_cpu_replicas_get_their_own_core_and_only_the_router_is_published():
    services = compose("tiny-cpu-x2")["services"]
    assert sorted(services) == ["prometheus", "router", "vllm-0", "vllm-1"]
    for index in (0, 1):
        engine = services[f"vllm-{index}"]
        assert engine["cpuset"] == str(index) and engine["environment"]["VLLM_CPU_OMP_THREADS_BIND"] == str(index)
        assert "ports" not in engine and engine["stop_grace_period"] == "30s"  # shutdown-timeout 20 + 10
        assert "--shutdown-timeout" in engine["command"]
    # Created one after the other: a fresh shared cache volume is filled on first mount, once.
    assert "depends_on" not in services["vllm-0"]
    assert services["vllm-1"]["depends_on"] == {"vllm-0": {"condition": "service_started"}}
    router = services["router"]
    assert router["ports"] == ["127.0.0.1:8010:8000"]
    assert router["depends_on"] == {
        "vllm-0": {"condition": "service_healthy"},
        "vllm-1": {"condition": "service_healthy"},
    }
    assert router["command"][:3] == ["--worker-urls", "http://vllm-0:8000", "http://vllm-1:8000"]
    # The key reaches the router from the same source as the engines, by environment only; the front checks
    # it (no engine is asked: nothing to validate against).
    assert router["environment"] == {
        "VLLM_ROUTER_API_KEY": "${VLLM_API_KEY:?set VLLM_API_KEY in the environment or in .env}"
    }
    assert not [a for a in router["command"] + router["entrypoint"] if "api-key" in a or "VLLM_API_KEY" in a]
    assert router["read_only"] is True and router["cap_drop"] == ["ALL"]
    # The front takes the published port; the router listens on loopback inside the container.
    assert router["entrypoint"][2:] == ["/usr/sbin/haproxy", "-db", "-f", "/opt/vllm-deploy/router-haproxy.cfg", "--"]
    command = router["command"]
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--port") + 1] == "8001"
    # Its health check goes through the front, on a public route: no key in it.
    assert "/readiness" in router["healthcheck"]["test"][-1] and "KEY" not in router["healthcheck"]["test"][-1]
    assert router["stop_grace_period"] == "605s"  # preStop 5 + the router's request timeout 600


def test_gpu_replicas_get_their_own_gpus():
    services = compose(SINK)["services"]
    plan = resolve(load_profile(SINK))
    assert plan.engine.tensor_parallel_size == 2
    devices = [services[f"vllm-{i}"]["deploy"]["resources"]["reservations"]["devices"][0] for i in (0, 1)]
    assert [d["device_ids"] for d in devices] == [["0", "1"], ["2", "3"]]
    assert all("count" not in d for d in devices)


def test_a_single_replica_has_no_router_and_publishes_itself():
    services = compose("tiny-cpu")["services"]
    assert list(services) == ["vllm"] and services["vllm"]["ports"] == ["127.0.0.1:8000:8000"]
    assert not [f for f in files("tiny-cpu") if "router" in f or f.endswith("pdb.yaml")]


def test_kubernetes_rolls_one_pod_at_a_time_with_a_budget_and_a_drain():
    found = objects("tiny-cpu-x2")
    engine = next(o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "tiny-cpu-x2")
    spec = engine["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    pod = spec["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    container = pod["containers"][0]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 20 + 10 > 20  # longer than vLLM's drain
    budget = next(o for o in found if o["kind"] == "PodDisruptionBudget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": spec["selector"]["matchLabels"]}}
    single = next(o for o in objects("tiny-cpu") if o["kind"] == "Deployment")
    assert single["spec"]["strategy"] == {"type": "Recreate"}


def test_the_router_discovers_engine_pods_and_may_only_read_pods():
    found = objects("tiny-cpu-x2")
    router = next(o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "tiny-cpu-x2-router")
    engine = next(o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "tiny-cpu-x2")
    pod = router["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    selector = args[args.index("--selector") + 1 : args.index("--service-discovery-port")]
    assert dict(s.split("=", 1) for s in selector) == engine["spec"]["selector"]["matchLabels"]
    assert args[args.index("--service-discovery-namespace") + 1] == "vllm"
    role = next(o for o in found if o["kind"] == "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert pod["serviceAccountName"] == "tiny-cpu-x2-router" and pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert list(env) == ["VLLM_ROUTER_API_KEY"]
    assert env["VLLM_ROUTER_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "VLLM_API_KEY"
    # The front's port is the pod's only http port; the probes reach its public routes without a key.
    container = pod["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000, "metrics": 29000}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/readiness", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/liveness", "port": "http"}
    assert pod["terminationGracePeriodSeconds"] == 605
    # The public Service is the router's; the engines' is internal.
    services = {o["metadata"]["name"]: o for o in found if o["kind"] == "Service"}
    assert services["tiny-cpu-x2"]["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
    assert services["tiny-cpu-x2-engine"]["spec"]["type"] == "ClusterIP"


def test_router_command_lines_parse_with_the_routers_own_parser():
    """Every rendered router argv (compose and Kubernetes) is read by vllm-router's own argument parser."""
    from vllm_router.launch_router import parse_router_args

    for ref in ("tiny-cpu-x2", SINK):
        plan = resolve(load_profile(ref))
        router = plan.router
        assert router is not None, ref
        compose_argv, kube_router = compose_plan(plan).router_argv, kubernetes_plan(plan).router
        assert compose_argv is not None and kube_router is not None
        for argv in (compose_argv, kube_router.argv):
            args = parse_router_args(list(argv))
            assert (args.host, args.port) == ("127.0.0.1", 8001) and args.policy == argv[argv.index("--policy") + 1]
            assert args.api_key is None  # the key never on a command line
            assert args.health_check_interval_secs == 5 and args.prometheus_port == 29000
        compose_args = parse_router_args(list(compose_argv))
        assert compose_args.worker_urls == [r.url for r in plan.instances] and not compose_args.service_discovery
        discovery = parse_router_args(list(kube_router.argv))
        assert discovery.service_discovery and discovery.service_discovery_port == 8000


def test_one_replica_that_an_autoscaler_scales_out_rolls_too():
    """The strategy follows the most pods there can be, not the replicas the Deployment starts with."""
    base = load_profile("tiny-cpu")

    def autoscaled(kind: str, most: int) -> Profile:
        monitoring = base.monitoring.model_copy(update={"enabled": True, "autoscaler": kind, "max_replicas": most})
        return base.model_copy(update={"monitoring": monitoring})

    for kind in ("keda", "hpa"):
        kube = kubernetes_plan(resolve(autoscaled(kind, 3)))
        assert kube.replicas == 1 and kube.rolling
        assert not kubernetes_plan(resolve(autoscaled(kind, 1))).rolling
    # Monitoring off: no autoscaler is rendered, so its maximum does not count.
    off = base.model_copy(update={"monitoring": base.monitoring.model_copy(update={"autoscaler": "keda"})})
    assert not kubernetes_plan(resolve(off)).rolling
    deployment = next(
        doc
        for path, text in render(resolve(autoscaled("keda", 3))).items()
        if path == "k8s/tiny-cpu/deployment.yaml"
        for doc in yaml.safe_load_all(text)
    )
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
