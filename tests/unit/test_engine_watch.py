"""EngineWatch (deploy/assets/edge/vllm_deploy_edge.py): /health answers for the engine, not only for vLLM's API
process. Plain ASGI with a stepped clock and a loopback server standing in for vLLM's /v1/completions (answering,
or hung); tests/integration stops a real engine core (test_stack.py, test_router.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from deploy.paths import BUILD_ASSETS
from tests.conftest import module_from_file

edge = module_from_file("vllm_deploy_edge", BUILD_ASSETS["vllm_deploy_edge.py"])
KEY = "sk-watch-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Engine:
    """A loopback HTTP server in place of vLLM's: answers /v1/completions with 200, or holds it (hung)."""

    def __init__(self) -> None:
        self.hung = False
        self.requests: list[bytes] = []
        self.port = 0

    async def start(self) -> asyncio.AbstractServer:
        async def handle(reader, writer):
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            if self.hung:
                await asyncio.sleep(3600)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server


class Gauge:
    """prometheus_client's Gauge as EngineWatch uses it (the tool venv has no prometheus_client; vLLM's has)."""

    value = None

    def set(self, value: float) -> None:
        self.value = value


class Watched:
    """An EngineWatch over a downstream app that answers 200, with a stepped clock and a settable token count."""

    def __init__(self, monkeypatch, window=30, timeout=0.5, exit_after=20) -> None:
        monkeypatch.setenv(edge.KEY_VARIABLE, KEY)
        monkeypatch.setenv(edge.WINDOW_VARIABLE, str(window))
        monkeypatch.setenv(edge.PROBE_TIMEOUT_VARIABLE, str(timeout))
        monkeypatch.setenv(edge.EXIT_VARIABLE, str(exit_after))
        self.clock, self.tokens = Clock(), 0.0
        self.exits: list[int] = []

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        self.gauge = Gauge()
        self.watch = edge.EngineWatch(
            app, clock=self.clock, progress=lambda: self.tokens, exit_process=self.exits.append, gauge=self.gauge
        )

    async def health(self, port: int) -> int:
        sent: list = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "path": "/health", "method": "GET", "headers": [], "server": ("127.0.0.1", port)}
        await self.watch(scope, None, send)
        return sent[0]["status"]

    async def settle(self) -> None:
        if self.watch.probe is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.watch.probe


def run(scenario) -> None:
    async def main():
        engine = Engine()
        server = await engine.start()
        try:
            await scenario(engine)
        finally:
            server.close()

    asyncio.run(main())


def test_progress_is_health_and_no_probe_is_sent(monkeypatch):
    watched = Watched(monkeypatch)

    async def scenario(engine):
        for _ in range(10):  # a busy engine: its counters move between every two checks, minutes on end
            watched.clock.now += 25
            watched.tokens += 100
            assert await watched.health(engine.port) == 200
        assert engine.requests == [] and watched.watch.probes == 0

    run(scenario)


def test_an_idle_engine_is_probed_once_a_window_and_stays_healthy(monkeypatch):
    watched = Watched(monkeypatch)

    async def scenario(engine):
        watched.clock.now += 10
        assert await watched.health(engine.port) == 200
        assert watched.watch.probes == 0  # within the window: nothing sent
        watched.clock.now += 25
        assert await watched.health(engine.port) == 200  # NB: answered at once; the probe runs behind it
        await watched.settle()
        assert len(engine.requests) == 1
        request = engine.requests[0]
        assert request.startswith(b"POST /v1/completions HTTP/1.1") and f"Bearer {KEY}".encode() in request
        assert await watched.health(engine.port) == 200 and watched.watch.probes == 1  # the answer was progress

    run(scenario)


def test_a_hung_engine_fails_health_then_exits_and_the_gauge_says_so(monkeypatch):
    watched = Watched(monkeypatch, window=30, timeout=0.2, exit_after=20)

    async def scenario(engine):
        engine.hung = True
        watched.clock.now += 31
        assert await watched.health(engine.port) == 200  # the probe starts
        await watched.settle()
        assert await watched.health(engine.port) == 503
        assert watched.gauge.value == 1
        watched.clock.now += 19
        assert await watched.health(engine.port) == 503 and watched.exits == []
        watched.clock.now += 1
        await watched.health(engine.port)
        assert watched.exits == [edge.EXIT_CODE]

    run(scenario)


def test_progress_after_a_hang_clears_it(monkeypatch):
    watched = Watched(monkeypatch, timeout=0.2)

    async def scenario(engine):
        engine.hung = True
        watched.clock.now += 31
        await watched.health(engine.port)
        await watched.settle()
        assert await watched.health(engine.port) == 503
        watched.tokens += 1  # e.g. SIGCONT: the engine steps again
        assert await watched.health(engine.port) == 200 and watched.exits == []
        assert watched.gauge.value == 0

    run(scenario)


def test_a_refused_connection_is_no_answer(monkeypatch):
    watched = Watched(monkeypatch, timeout=0.2)

    async def scenario(engine):
        watched.clock.now += 31
        await watched.health(1)  # nothing listens on port 1
        await watched.settle()
        assert await watched.health(1) == 503

    run(scenario)


@pytest.mark.parametrize("path", ["/metrics", "/v1/models", "/health/"])
def test_other_paths_pass_untouched_even_when_hung(monkeypatch, path):
    watched = Watched(monkeypatch, timeout=0.2)

    async def scenario(engine):
        watched.watch.hung_since = watched.clock.now
        sent: list = []

        async def send(message):
            sent.append(message)

        await watched.watch({"type": "http", "path": path, "method": "GET", "headers": []}, None, send)
        assert sent[0]["status"] == 200

    run(scenario)


def test_window_zero_is_off(monkeypatch):
    watched = Watched(monkeypatch, window=0)

    async def scenario(engine):
        engine.hung = True
        watched.clock.now += 10_000
        assert await watched.health(engine.port) == 200 and watched.watch.probe is None

    run(scenario)
