"""Profile sections about serving clients: the router in front of the replicas, and the media the
server fetches for them. Split from schema.py, which imports them; same conventions."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from deploy.spec.base import HostName, Labels, Section, empty_dict, empty_list


class Router(Section):
    """vLLM's own router (PyPI vllm-router) in front of the replicas: one endpoint, health checks, retries."""

    enabled: bool | None = Field(None, description="Default: on with more than one replica.")
    policy: Literal["round_robin", "power_of_two", "cache_aware", "consistent_hash", "random"] = Field(
        "round_robin", description="How requests are spread: round_robin suits identical replicas."
    )
    health_check_interval_seconds: int = Field(
        5, ge=1, le=300, description="How often it probes each replica's /health."
    )
    health_failure_threshold: int = Field(
        2, ge=1, le=100, description="Failed probes before a replica gets no traffic."
    )
    max_retries: int = Field(5, ge=1, le=20, description="Attempts per request (the next replica on a failure).")
    circuit_breaker_seconds: int = Field(15, ge=1, le=3600, description="How long a failing replica is left alone.")
    request_timeout_seconds: int = Field(
        600, ge=1, le=86_400, description="Longest a request (stream included) may take."
    )
    max_concurrent_requests: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Admission: requests let in per second and at once (a token bucket; beyond it 429).",
    )
    queue_size: int = Field(100, ge=0, le=100_000, description="Requests that wait for admission before a 429.")
    max_payload_mib: int = Field(64, ge=1, le=1024, description="Largest request body (base64 images are big).")


class Media(Section):
    """Image URLs are fetched by the server: bound where it may fetch from and for how long."""

    allowed_domains: Annotated[list[HostName], Field(max_length=100)] = Field(
        default_factory=empty_list,
        description="Hosts image URLs may point at (vLLM --allowed-media-domains). Empty: any host. Setting it "
        "turns redirects off, since vLLM checks only the first URL's host.",
    )
    allow_redirects: bool | None = Field(
        None,
        description="Whether image fetches follow HTTP redirects (VLLM_MEDIA_URL_ALLOW_REDIRECTS). Default: "
        "off with allowed-domains (an allowed host could bounce the server anywhere), on without.",
    )
    blocked_networks: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], Field(max_length=100)] = Field(
        default_factory=empty_list,
        description="Networks the pod must never reach (with kubernetes.egress-policy), e.g. [10.0.0.0/8, "
        "172.16.0.0/12, 192.168.0.0/16]; link-local is always blocked there.",
    )
    fetch_timeout_seconds: int = Field(
        5, ge=1, le=600, description="Per-attempt timeout fetching an image URL (VLLM_IMAGE_FETCH_TIMEOUT)."
    )
    fetch_max_retries: int = Field(
        1,
        ge=0,
        le=10,
        description="Retries of a failed image fetch (VLLM_MEDIA_FETCH_MAX_RETRIES). vLLM's default 3 "
        "lets one unreachable URL hold a request for about two minutes.",
    )

    @field_validator("blocked_networks", mode="before")
    @classmethod
    def _networks_from_text(cls, value: Any) -> Any:
        # NB: strict mode takes no strings for networks; CIDR text is what users write.
        if isinstance(value, list):
            return [_network(v) if isinstance(v, str) else v for v in value]
        return value


def _network(text: str) -> Any:
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        raise ValueError("expected a network like 10.0.0.0/8 (host bits zero)") from None


class Alerts(Section):
    """When Prometheus alerts: each threshold holds for `for-minutes` before an alert fires."""

    queue_waiting_requests: int = Field(8, ge=1, le=100_000, description="Requests waiting in one engine's queue.")
    kv_cache_usage: float = Field(0.9, gt=0, le=1, description="Share of an engine's KV cache in use.")
    ttft_p95_seconds: float = Field(5.0, gt=0, le=3600, description="95th percentile time to first token.")
    error_ratio: float = Field(0.05, gt=0, le=1, description="Share of chat requests that end in a server error.")
    engine_down_seconds: int = Field(
        60,
        ge=5,
        le=3600,
        description="An engine that answered /metrics unanswered this long (VllmEngineDown). A starting engine "
        "has kubernetes.load-budget-seconds before it alerts (VllmEngineNotReady): vLLM answers once loaded.",
    )
    for_minutes: int = Field(5, ge=1, le=1440, description="How long the other thresholds hold before firing.")


# Our own label keys' prefix (deploy/plan/constants.py: NAME_LABEL ... MANAGED_BY_LABEL): the selectors stand on them.
OWN_LABEL_PREFIX = "app.kubernetes.io/"


def _not_own_labels(value: dict[str, str]) -> dict[str, str]:
    own = sorted(key for key in value if key.startswith(OWN_LABEL_PREFIX))
    if own:
        raise ValueError(
            f"{' and '.join(own)}: the {OWN_LABEL_PREFIX}* labels are vllm-deploy's own (the Services and the "
            "ServiceMonitors select the pods by them) and cannot be overridden; use another key, e.g. release"
        )
    return value


class Monitoring(Section):
    """Prometheus, alerts, a Grafana dashboard and autoscaling on vLLM's own metrics. Off by default."""

    enabled: bool = False
    scrape_interval_seconds: int = Field(15, ge=1, le=300)
    retention_hours: int = Field(72, ge=1, le=24 * 365, description="How long compose's Prometheus keeps samples.")
    port: int = Field(9090, ge=1, le=65535, description="Compose publishes Prometheus on the server's bind address.")
    alerts: Alerts = Alerts()
    prometheus_operator: bool = Field(
        True, description="Kubernetes: deploy the ServiceMonitors and the PrometheusRule (prometheus-operator's CRDs)."
    )
    autoscaler: Literal["none", "keda", "hpa"] = Field(
        "none",
        description="Kubernetes: scale the engines on vllm:num_requests_waiting with KEDA, or a plain HPA "
        "(needs prometheus-adapter serving it as the pods metric vllm_num_requests_waiting); none by default.",
    )
    min_replicas: int = Field(1, ge=1, le=64)
    max_replicas: int = Field(4, ge=1, le=64)
    waiting_per_replica: int = Field(
        2, ge=1, le=10_000, description="Autoscaling target: requests waiting per engine before another is added."
    )
    prometheus_namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=63)] = Field(
        "monitoring", description="Kubernetes: the namespace Prometheus runs in; the NetworkPolicies let it scrape."
    )
    prometheus_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=500)] = Field(
        "http://prometheus-operated.monitoring.svc:9090",
        description="Kubernetes: the Prometheus KEDA queries (prometheus-operator's default Service).",
    )
    operator_labels: Annotated[Labels, AfterValidator(_not_own_labels)] = Field(
        default_factory=empty_dict,
        description="Kubernetes: labels on the ServiceMonitors and the PrometheusRule, for kube-prometheus-stack "
        "e.g. {release: kube-prometheus-stack} (the Helm release's name): Prometheus only picks up monitors and "
        "rules whose labels match its selectors.",
    )
