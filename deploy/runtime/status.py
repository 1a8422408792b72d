"""`vllm-deploy status`: one screen from the live metrics in the profile's Prometheus.

Reads only: instant queries (the plan's `status_queries`) and the active alerts, over Prometheus' HTTP API.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import requests

from deploy.errors import UserError
from deploy.plan import Plan


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # pending or firing
    instance: str


@dataclass(frozen=True)
class Snapshot:
    values: dict[str, float | None]  # None: no sample (no target yet, or no request in the window)
    alerts: list[Alert] = field(default_factory=list)


class Prometheus:
    def __init__(self, endpoint: str, timeout: float = 5.0):
        self.endpoint, self.timeout = endpoint.rstrip("/"), timeout

    def _get(self, path: str, **params: str) -> dict:
        try:
            response = requests.get(f"{self.endpoint}{path}", params=params, timeout=self.timeout)
        except requests.RequestException as error:
            raise UserError(f"Prometheus at {self.endpoint} does not answer ({type(error).__name__}): "
                            "is the stack up? `make up PROFILE=…` starts it with the profile") from None
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200 or body.get("status") != "success":
            raise UserError(f"Prometheus at {self.endpoint} refused {path}: "
                            f"{body.get('error') or f'HTTP {response.status_code}'}")
        return body["data"]

    def vector(self, query: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: each series' labels and value."""
        data = self._get("/api/v1/query", query=query)
        if data["resultType"] != "vector":
            return [({}, float(data["result"][1]))]  # a scalar expression
        return [(series["metric"], float(series["value"][1])) for series in data["result"]]

    def scalar(self, query: str) -> float | None:
        """The value of a query that yields one series (a sum, a max), None when it yields none or NaN."""
        found = self.vector(query)
        return None if not found or math.isnan(found[0][1]) else found[0][1]

    def alerts(self) -> list[Alert]:
        return [Alert(name=a["labels"].get("alertname", "?"), state=a.get("state", "?"),
                      instance=a["labels"].get("instance", ""))
                for a in self._get("/api/v1/alerts")["alerts"]]


def snapshot(prometheus: Prometheus, queries: dict[str, str]) -> Snapshot:
    return Snapshot(values={name: prometheus.scalar(query) for name, query in queries.items()},
                    alerts=prometheus.alerts())


def _number(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def _count(value: float | None) -> str:
    return "—" if value is None else str(int(value))


def screen(name: str, endpoint: str, shot: Snapshot, now: datetime | None = None) -> str:
    v = shot.values
    now = now or datetime.now(timezone.utc)
    usage = v.get("kv_cache_usage")
    kv = None if usage is None else usage * 100
    seconds = lambda key: _number(v.get(key), " s", 2)  # noqa: E731
    lines = [
        f"{name} · Prometheus {endpoint} · {now.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"  engines healthy     {_count(v.get('engines_up'))}/{_count(v.get('engines'))}",
    ]
    if "router_workers" in v:
        lines.append(f"  router workers      {_count(v.get('router_workers'))}")
    lines += [
        f"  requests            {_count(v.get('running'))} running · {_count(v.get('waiting'))} waiting",
        f"  KV cache usage      {_number(kv, ' %')} (the fullest engine)",
        f"  last minute         {_number(v.get('requests_per_second'), ' req/s', 2)} · "
        f"{_number(v.get('prompt_tokens_per_second'))} prompt tok/s · "
        f"{_number(v.get('generated_tokens_per_second'))} generated tok/s",
        f"  p95 last minute     {seconds('p95_e2e_seconds')} end to end · {seconds('p95_ttft_seconds')} first token",
    ]
    if shot.alerts:
        lines.append("  alerts")
        lines += [f"    {a.state:8} {a.name} {a.instance}".rstrip() for a in shot.alerts]
    else:
        lines.append("  alerts              none")
    return "\n".join(lines)


def status(plan: Plan, watch: bool = False, interval: float = 5.0, out: Callable[[str], None] = print,
           rounds: int | None = None) -> None:
    """Print the screen once, or every `interval` seconds until interrupted (`rounds` bounds it for tests)."""
    if plan.monitoring is None:
        raise UserError(f"{plan.name} has no monitoring: set `monitoring: {{enabled: true}}` in the profile, "
                        "then `make up` again to start its Prometheus")
    prometheus = Prometheus(plan.monitoring.local_endpoint)
    shown = 0
    while True:
        text = screen(plan.name, prometheus.endpoint, snapshot(prometheus, plan.monitoring.status_queries))
        out("\033[H\033[2J" + text if watch else text)  # NB: clear the terminal between refreshes
        shown += 1
        if not watch or (rounds is not None and shown >= rounds):
            return
        time.sleep(interval)
