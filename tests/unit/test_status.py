"""`vllm-deploy status` against a stub of Prometheus' HTTP API (the real one is in tests/integration/test_router.py)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from deploy.errors import UserError
from deploy.plan import resolve
from deploy.runtime.net import free_port
from deploy.runtime.status import Prometheus, screen, snapshot, status
from deploy.spec import load_profile

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)


@contextmanager
def stub_prometheus(answers: dict[str, str | None], alerts: list[dict] | None = None, refuse: bool = False):
    """Answers each instant query from `answers` (None: an empty vector); records the queries it was asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlparse(self.path)
            body: dict[str, Any]
            if url.path == "/api/v1/query":
                query = parse_qs(url.query)["query"][0]
                asked.append(query)
                if refuse:
                    body, code = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}, 400
                else:
                    value = answers[query]
                    result = [] if value is None else [{"metric": {}, "value": [1.0, value]}]
                    body, code = {"status": "success", "data": {"resultType": "vector", "result": result}}, 200
            elif url.path == "/api/v1/alerts":
                body, code = {"status": "success", "data": {"alerts": alerts or []}}, 200
            else:
                body, code = {"status": "error", "error": "not found"}, 404
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def plan():
    return resolve(load_profile("tiny-cpu-x2"))


def busy(plan) -> dict[str, str | None]:
    values = {
        "engines_up": "1",
        "engines": "2",
        "engines_hung": "1",
        "running": "3",
        "waiting": "5",
        "kv_cache_usage": "0.4213",
        "prompt_tokens_per_second": "120.5",
        "generated_tokens_per_second": "30.25",
        "requests_per_second": "2.5",
        "p95_e2e_seconds": "1.234",
        "p95_ttft_seconds": "NaN",
        "router_workers": "1",
    }
    assert set(values) == set(plan.monitoring.status_queries)
    return {plan.monitoring.status_queries[name]: value for name, value in values.items()}


def test_the_screen_shows_every_figure_from_the_live_metrics(plan):
    alerts = [{"labels": {"alertname": "VllmEngineDown", "instance": "vllm-1:8000"}, "state": "firing"}]
    with stub_prometheus(busy(plan), alerts) as (endpoint, asked):
        shot = snapshot(Prometheus(endpoint), plan.monitoring.status_queries)
    assert sorted(asked) == sorted(plan.monitoring.status_queries.values())
    text = screen(plan.name, endpoint, shot, now=NOW)
    assert text.splitlines() == [
        f"tiny-cpu-x2 · Prometheus {endpoint} · 2026-11-27 12:00:00 UTC",
        "  replicas healthy    1/2",
        "  replicas hung       1",
        "  router workers      1",
        "  requests            3 running · 5 waiting",
        "  KV cache usage      42.1 % (the fullest replica)",
        "  last minute         2.50 req/s · 120.5 prompt tok/s · 30.2 generated tok/s",
        "  p95 last minute     1.23 s end to end · — first token",  # NaN: no request in the window
        "  alerts",
        "    firing   VllmEngineDown vllm-1:8000",
    ]


def test_missing_series_show_a_dash_not_zero(plan):
    """Before the first scrape nothing exists: the screen must not claim 0 of anything."""
    with stub_prometheus(dict.fromkeys(plan.monitoring.status_queries.values())) as (endpoint, _):
        text = screen(plan.name, endpoint, snapshot(Prometheus(endpoint), plan.monitoring.status_queries), now=NOW)
    assert "replicas healthy    —/—" in text and "— running · — waiting" in text and " 0" not in text
    assert "hung" not in text  # no engine reports one: no line
    assert text.endswith("alerts              none")


def test_watch_refreshes_until_stopped(plan, monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr("deploy.runtime.status.time.sleep", lambda seconds: None)
    with stub_prometheus(busy(plan)) as (endpoint, asked):
        watched = plan.model_copy(
            update={"monitoring": plan.monitoring.model_copy(update={"local_endpoint": endpoint})}
        )
        status(watched, watch=True, out=shown.append, rounds=3)
    assert len(shown) == 3 and all(s.startswith("\033[H\033[2J") and "1/2" in s for s in shown)
    assert len(asked) == 3 * len(plan.monitoring.status_queries)


def test_status_without_monitoring_is_a_user_error():
    with pytest.raises(UserError, match="no monitoring"):
        status(resolve(load_profile("tiny-cpu")))


def test_an_absent_or_refusing_prometheus_is_a_user_error(plan):
    with pytest.raises(UserError, match="does not answer.*is the stack up"):
        Prometheus(f"http://127.0.0.1:{free_port()}").scalar("up")
    with (
        stub_prometheus({}, refuse=True) as (endpoint, _),
        pytest.raises(UserError, match="refused /api/v1/query: parse error at char 3"),
    ):
        Prometheus(endpoint).scalar("up{")


def test_the_cli_exits_2_without_a_traceback(cli):
    result = cli("status", "tiny-cpu")
    assert result.code == 2 and "no monitoring" in result.err and "Traceback" not in result.err
