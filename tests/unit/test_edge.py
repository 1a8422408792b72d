"""The key check on every route of vLLM's server (deploy/assets/edge/vllm_deploy_edge.py), as plain ASGI.

The real server is called route by route in tests/integration (test_engine.py, test_stack.py, test_router.py);
these pin the middleware's own decisions without vLLM.
"""

from __future__ import annotations

import asyncio

import pytest

from deploy.paths import BUILD_ASSETS
from deploy.plan.constants import HEALTH_PATH
from deploy.plan.engine import API_KEY_VARIABLE, EDGE_MIDDLEWARE, HANG_VARIABLES
from tests.conftest import module_from_file

edge = module_from_file("vllm_deploy_edge", BUILD_ASSETS["vllm_deploy_edge.py"])
KEY = "sk-test-0123456789"


def served(scope: dict) -> tuple[int | None, list]:
    """What the middleware does with one request: the status it answered with (None: it passed the request on)."""
    passed, sent = [], []

    async def app(scope, receive, send):
        passed.append(scope)

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(edge.KeyOnEveryRoute(app)(scope, receive, send))
    if passed:
        return None, sent
    return (sent[0].get("status") or sent[0].get("code")), sent


def http(path: str, method: str = "POST", headers: list | None = None) -> dict:
    return {"type": "http", "path": path, "method": method, "headers": headers or []}


def bearer(key: str) -> list:
    return [(b"authorization", f"Bearer {key}".encode())]


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(edge.KEY_VARIABLE, KEY)


def test_it_reads_the_variable_vllm_reads_and_is_what_the_entrypoint_loads():
    assert edge.KEY_VARIABLE == API_KEY_VARIABLE
    assert EDGE_MIDDLEWARE[:2] == ("--middleware", "vllm_deploy_edge.KeyOnEveryRoute")
    assert EDGE_MIDDLEWARE[2:] == ("--middleware", "vllm_deploy_edge.EngineWatch")
    assert set(HANG_VARIABLES.values()) == {edge.WINDOW_VARIABLE, edge.PROBE_TIMEOUT_VARIABLE, edge.EXIT_VARIABLE}
    assert HEALTH_PATH in edge.PUBLIC and {"/health", "/metrics"} == edge.PUBLIC


@pytest.mark.parametrize(
    "path",
    [
        "/invocations",
        "/tokenize",
        "/detokenize",
        "/load",
        "/scale_elastic_ep",
        "/v1/chat/completions",
        "/version",
        "/openapi.json",
        "/docs",
        "/no-such-route",
        "/health/",
        "/metrics/",
        "/metricsx",
        "//health",
        "/Health",
        "",
    ],
)
def test_every_path_but_the_public_ones_needs_the_key(path):
    assert served(http(path))[0] == 401
    assert served(http(path, headers=bearer("sk-wrong")))[0] == 401
    assert served(http(path, headers=bearer(KEY)))[0] is None


def test_the_refusal_is_vllms_own_401_body():
    status, sent = served(http("/invocations"))
    assert status == 401 and sent[1]["body"] == b'{"error": "Unauthorized"}'
    assert (b"www-authenticate", b"Bearer") in sent[0]["headers"]


@pytest.mark.parametrize("path", ["/health", "/metrics"])
def test_public_paths_are_open_to_get_and_head_only(path):
    assert served(http(path, "GET"))[0] is None
    assert served(http(path, "HEAD"))[0] is None
    assert served(http(path, "POST"))[0] == 401
    assert served(http(path, "DELETE"))[0] == 401


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Basic " + KEY.encode())],  # another scheme
        [(b"authorization", KEY.encode())],  # no scheme
        [(b"authorization", f"Bearer {KEY}x".encode())],
        [(b"authorization", f"Bearer {KEY}".encode()), (b"authorization", f"Bearer {KEY}".encode())],  # two
        [(b"x-api-key", KEY.encode())],
    ],
)
def test_only_one_bearer_header_with_the_exact_key_passes(headers):
    assert served(http("/invocations", headers=headers))[0] == 401


def test_the_scheme_is_case_insensitive_as_in_vllm():
    assert served(http("/invocations", headers=[(b"Authorization", f"bearer {KEY}".encode())]))[0] is None


def test_cors_preflight_passes_to_vllms_cors_middleware_and_nothing_else_does():
    preflight = [(b"origin", b"https://app.example"), (b"access-control-request-method", b"POST")]
    assert served(http("/v1/chat/completions", "OPTIONS", preflight))[0] is None
    assert served(http("/v1/chat/completions", "OPTIONS"))[0] == 401  # a bare OPTIONS is a request like any other


def test_websockets_need_the_key_too():
    assert served({"type": "websocket", "path": "/v1/realtime", "headers": []})[0] == 1008
    assert served({"type": "websocket", "path": "/v1/realtime", "headers": bearer(KEY)})[0] is None


def test_lifespan_passes():
    assert served({"type": "lifespan"})[0] is None


def test_an_empty_key_refuses_to_build_the_app(monkeypatch):
    monkeypatch.setenv(edge.KEY_VARIABLE, "")
    with pytest.raises(RuntimeError, match="VLLM_API_KEY is empty or unset; refusing to serve without a key"):
        edge.KeyOnEveryRoute(lambda *a: None)
