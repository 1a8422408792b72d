"""The compose projection: the neutral Plan in compose's spellings. Sizes like "8g", health checks as
["CMD", …], ports published as HOST_IP:PORT:CONTAINER_PORT, config names with a content hash, the router's
static worker URLs and Prometheus' scrape targets on the compose network."""

from __future__ import annotations

from deploy.plan.constants import PROMETHEUS_CONFIG_DIR
from deploy.plan.engine import host_literal
from deploy.plan.frozen import Frozen
from deploy.plan.model import Plan

STOP_MARGIN_SECONDS = 10  # beyond vLLM's drain before compose kills the container


class ComposeConfig(Frozen):
    """A file compose mounts as a config: its name carries a hash of its content, so a change recreates the
    container."""

    name: str
    file: str  # beside compose.yaml
    target: str  # in the container


class PrometheusService(Frozen):
    published_port: str
    healthcheck: list[str]
    targets: dict[str, list[str]]  # job -> host:port on the compose network
    configs: list[ComposeConfig]  # its configuration and its rules


class ComposePlan(Frozen):
    published_port: str  # HOST_IP:PORT:CONTAINER_PORT (IPv6 in brackets)
    shm_size: str  # e.g. "8g"
    memory_limit: str
    healthcheck: list[str]  # ["CMD", …]
    stop_grace_seconds: int  # longer than vLLM's --shutdown-timeout
    edge_config: ComposeConfig  # the key check on every route
    generation_config: ComposeConfig | None
    router_argv: list[str] | None  # static worker URLs: the engine services
    router_healthcheck: list[str] | None
    prometheus: PrometheusService | None


def published_port(address: str, port: int, container_port: int) -> str:
    return f"{host_literal(address)}:{port}:{container_port}"


def _prometheus(plan: Plan) -> PrometheusService | None:
    m = plan.monitoring
    if m is None:
        return None
    name = f"prometheus-{m.config_digest}"
    return PrometheusService(
        published_port=published_port(plan.bind_address, m.host_port, m.container_port),
        healthcheck=["CMD", *m.health_command],
        targets=m.targets,
        configs=[
            ComposeConfig(
                name=name, file="./prometheus/prometheus.yml", target=f"{PROMETHEUS_CONFIG_DIR}/prometheus.yml"
            ),
            ComposeConfig(
                name=f"{name}-rules", file="./prometheus/rules.yml", target=f"{PROMETHEUS_CONFIG_DIR}/rules.yml"
            ),
        ],
    )


def _config(kind: str, digest: str, file_name: str, directory: str) -> ComposeConfig:
    return ComposeConfig(name=f"{kind}-{digest}", file=f"./{file_name}", target=f"{directory}/{file_name}")


def compose_plan(plan: Plan) -> ComposePlan:
    edge, generation, router = plan.edge, plan.generation, plan.router
    return ComposePlan(
        published_port=published_port(plan.bind_address, plan.port, plan.container_port),
        shm_size=f"{plan.shm_size_gib}g",
        memory_limit=f"{plan.memory_gib}g",
        healthcheck=["CMD", *plan.health_command],
        stop_grace_seconds=plan.drain_seconds + STOP_MARGIN_SECONDS,
        edge_config=_config("edge", edge.digest, edge.file_name, edge.directory),
        generation_config=(
            _config("generation", generation.digest, generation.file_name, generation.directory) if generation else None
        ),
        router_argv=["--worker-urls", *(i.url for i in plan.instances), *router.argv] if router else None,
        router_healthcheck=["CMD", *router.health_command] if router else None,
        prometheus=_prometheus(plan),
    )
