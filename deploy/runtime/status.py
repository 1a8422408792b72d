"""`vllm-deploy status`: one screen from the live metrics in the profile's Prometheus.

Reads only: instant queries (the plan's `status_queries`) and the active alerts, over Prometheus' HTTP API.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from deploy.errors import UserError, shown
from deploy.plan import Plan
from deploy.runtime.http import MIB, Deadline, HttpError, ShapeError, fetch, pick

SCREEN_DEADLINE_SECONDS = 10.0  # one screen: every query and the alerts
ANSWER_CAP = 2 * MIB  # one Prometheus answer (an instant query of a sum is a few hundred bytes)
STACK_HINT = "is the stack up? `make up PROFILE=…` starts it with the profile"


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # pending or firing
    instance: str


@dataclass(frozen=True)
class Snapshot:
    values: dict[str, float | None]  # None: no sample (no target yet, or no request in the window)
    alerts: list[Alert] | None = field(default_factory=list)  # None: the answer was unreadable
    unreadable: dict[str, str] = field(default_factory=dict)  # figure (or "alerts") -> why its answer was unusable


def _sample(pair: Any, where: str) -> float | None:
    """A sample `[time, "value"]`: its value, None for NaN (no request in the window). ShapeError for anything
    but a pair whose value is a number or a number's text."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise ShapeError(f"{where} is not a [time, value] pair")
    value = pick(pair, "[1]", (str, int, float))
    try:
        number = float(value)
    except ValueError:
        raise ShapeError(f"{where} '{shown(str(value), 40)}' is not a number") from None
    # NB: +Inf is a sample like any other (a quantile past the largest bucket), shown as inf.
    return None if math.isnan(number) else number


class Prometheus:
    def __init__(self, endpoint: str, timeout: float = SCREEN_DEADLINE_SECONDS, cap: int = ANSWER_CAP):
        self.endpoint, self.timeout, self.cap = endpoint.rstrip("/"), timeout, cap

    def _get(self, path: str, deadline: Deadline | None = None, **params: str) -> Any:
        """The `data` of a successful answer. HttpError (a UserError) for anything else."""
        try:
            answer = fetch(
                "GET",
                f"{self.endpoint}{path}",
                params=params,
                deadline=deadline or Deadline(self.timeout),
                cap=self.cap,
            )
        except HttpError as error:
            if error.kind == "unreachable":
                raise UserError(
                    f"Prometheus at {self.endpoint} does not answer ({error.problem}): {STACK_HINT}"
                ) from None
            raise error.about("Prometheus") from None
        if answer.status != 200:
            # Prometheus says why in JSON ({"status": "error", "error": "…"}); a proxy in front may not.
            try:
                said = shown(answer.read(lambda body: pick(body, "error", str)))
            except HttpError:
                said = f"HTTP {answer.status}: {shown(answer.text(), 120)}"
            raise UserError(f"Prometheus at {self.endpoint} refused {path}: {said}")

        def success(body: Any) -> Any:
            if pick(body, "status", str) != "success":
                raise ShapeError(f"its status is '{shown(body['status'], 40)}', not 'success'")
            return pick(body, "data")

        try:
            return answer.read(success)
        except HttpError as error:
            raise error.about("Prometheus") from None

    def vector(self, query: str, deadline: Deadline | None = None) -> list[tuple[dict[str, str], float | None]]:
        """An instant query: each series' labels and value (None: NaN). ShapeError for an answer of another shape."""
        data = self._get("/api/v1/query", deadline, query=query)
        kind = pick(data, "resultType", str)
        if kind == "scalar":
            return [({}, _sample(pick(data, "result", list), "the scalar"))]
        if kind != "vector":
            raise ShapeError(f"the result is a '{shown(kind, 20)}', not an instant vector")
        series = pick(data, "result", list)
        return [
            (
                pick(data, f"result[{i}].metric", dict),
                _sample(pick(data, f"result[{i}].value", list), f"result[{i}].value"),
            )
            for i in range(len(series))
        ]

    def scalar(self, query: str, deadline: Deadline | None = None) -> float | None:
        """The value of a query that yields one series (a sum, a max), None when it yields none or NaN."""
        found = self.vector(query, deadline)
        return found[0][1] if found else None

    def alerts(self, deadline: Deadline | None = None) -> list[Alert]:
        found = pick(self._get("/api/v1/alerts", deadline), "alerts", list)

        def text(alert: Any, path: str, default: str) -> str:
            try:
                return pick(alert, path, str)
            except ShapeError:
                return default

        return [
            Alert(
                name=text(a, "labels.alertname", "?"),
                state=text(a, "state", "?"),
                instance=text(a, "labels.instance", ""),
            )
            for a in found
        ]


def snapshot(prometheus: Prometheus, queries: dict[str, str], deadline: Deadline | None = None) -> Snapshot:
    """Every figure and the alerts within one deadline (the Prometheus' own timeout from now by default).

    A figure whose answer has an unexpected shape is unreadable (shown n/a, with the reason); an answer that is
    not Prometheus' JSON at all, or none within the deadline, is a UserError."""
    deadline = deadline or Deadline(prometheus.timeout)
    values: dict[str, float | None] = {}
    unreadable: dict[str, str] = {}
    for name, query in queries.items():
        try:
            values[name] = prometheus.scalar(query, deadline)
        except ShapeError as error:
            values[name], unreadable[name] = None, str(error)
    alerts: list[Alert] | None
    try:
        alerts = prometheus.alerts(deadline)
    except ShapeError as error:
        alerts, unreadable["alerts"] = None, str(error)
    return Snapshot(values=values, alerts=alerts, unreadable=unreadable)


def _number(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def _count(value: float | None) -> str:
    # NB: a count as large as a float can be is shown as one, not as 300 digits.
    return "—" if value is None else str(int(value)) if abs(value) < 1e15 else f"{value:.3g}"


def screen(name: str, endpoint: str, shot: Snapshot, now: datetime | None = None) -> str:
    """The screen; a figure whose answer was unreadable shows n/a, and why below."""
    v = {key: "n/a" if key in shot.unreadable else value for key, value in shot.values.items()}
    now = now or datetime.now(timezone.utc)

    def number(key: str, unit: str = "", digits: int = 1, scale: float = 1) -> str:
        value = v.get(key)
        return value if isinstance(value, str) else _number(None if value is None else value * scale, unit, digits)

    def count(key: str) -> str:
        value = v.get(key)
        return value if isinstance(value, str) else _count(value)

    lines = [
        f"{name} · Prometheus {shown(endpoint)} · {now.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"  replicas healthy    {count('engines_up')}/{count('engines')}",
    ]
    hung = v.get("engines_hung")
    if isinstance(hung, str) or (hung or 0) > 0:
        # NB: up, /health 503: its engine core makes no progress (EngineWatch); it exits to be restarted.
        lines.append(f"  replicas hung       {count('engines_hung')}")
    if "router_workers" in v:
        lines.append(f"  router workers      {count('router_workers')}")
    lines += [
        f"  requests            {count('running')} running · {count('waiting')} waiting",
        f"  KV cache usage      {number('kv_cache_usage', ' %', scale=100)} (the fullest replica)",
        f"  last minute         {number('requests_per_second', ' req/s', 2)} · "
        f"{number('prompt_tokens_per_second')} prompt tok/s · "
        f"{number('generated_tokens_per_second')} generated tok/s",
        f"  p95 last minute     {number('p95_e2e_seconds', ' s', 2)} end to end · "
        f"{number('p95_ttft_seconds', ' s', 2)} first token",
    ]
    if shot.alerts is None:
        lines.append("  alerts              n/a")
    elif shot.alerts:
        lines.append("  alerts")
        lines += [
            f"    {shown(a.state, 10):8} {shown(a.name, 80)} {shown(a.instance, 80)}".rstrip() for a in shot.alerts
        ]
    else:
        lines.append("  alerts              none")
    lines += [f"  n/a: {key}: {shown(reason, 160)}" for key, reason in shot.unreadable.items()]
    return "\n".join(lines)


def status(
    plan: Plan,
    watch: bool = False,
    interval: float = 5.0,
    out: Callable[[str], None] = print,
    rounds: int | None = None,
    timeout: float = SCREEN_DEADLINE_SECONDS,
) -> None:
    """Print the screen once, or every `interval` seconds until interrupted (`rounds` bounds it for tests).

    Each screen has `timeout` seconds for all its queries. Once, a Prometheus that fails is a UserError; with
    `watch`, the screen says why and the next refresh tries again."""
    if plan.monitoring is None:
        raise UserError(
            f"{plan.name} has no monitoring: set `monitoring: {{enabled: true}}` in the profile, "
            "then `make up` again to start its Prometheus"
        )
    prometheus = Prometheus(plan.monitoring.local_endpoint, timeout=timeout)
    done = 0
    while True:
        try:
            text = screen(plan.name, prometheus.endpoint, snapshot(prometheus, plan.monitoring.status_queries))
        except UserError as error:
            if not watch:
                raise
            text = (
                f"{plan.name} · {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}\n  {error}\n"
                f"  (trying again in {interval:g} s)"
            )
        out("\033[H\033[2J" + text if watch else text)  # NB: clear the terminal between refreshes
        done += 1
        if not watch or (rounds is not None and done >= rounds):
            return
        time.sleep(interval)
