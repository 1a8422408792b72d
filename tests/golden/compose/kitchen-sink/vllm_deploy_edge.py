# Copied by vllm-deploy from deploy/assets/edge/vllm_deploy_edge.py for the image build. Do not edit: change the original.
"""The edge of vLLM's server (vLLM's `--middleware` hook): the API key on every route but a short public list
(KeyOnEveryRoute), and a /health that answers for the engine, not only for the API process (EngineWatch).

vLLM 0.32 checks its key only on paths starting with /v1, /v2, /inference and /cohere
(vllm/entrypoints/serve/middleware/authenticate.py); its route table also serves inference and media
fetches elsewhere (/invocations, /tokenize, …) to anyone. This middleware turns that around: a request
passes without the key only to a path on PUBLIC, by exact match on the same path vLLM's router matches,
so a route a newer vLLM adds is guarded with no change here. vLLM's own check stays on behind it.

vLLM's /health answers from the API process (vllm/v1/engine/async_llm.py, check_health: only an engine that
has *died* fails it): an engine core that is stuck (measured: SIGSTOP) leaves it at 200 while every request
hangs. EngineWatch judges progress instead: vLLM's own token counters (vllm:prompt_tokens,
vllm:generation_tokens, advanced by the API process for every engine step it receives) moving means the engine
works, however busy, and nothing is added. Only when they have not moved for the window does it ask the engine
for one token on loopback, in the background, so /health itself never waits: an idle engine answers at once,
and a busy one has moved its counters. No answer within the probe timeout: the engine is hung. /health then
answers 503 (readiness and the router stop sending to it), the gauge vllm_deploy_engine_hung is 1 on /metrics
(the alert, `status`), and after the exit delay the server process exits, so the container's restart policy
(compose) or the kubelet (Kubernetes) starts a fresh one.

Loaded by `vllm serve --middleware vllm_deploy_edge.KeyOnEveryRoute --middleware vllm_deploy_edge.EngineWatch`
(the last added runs first) from a directory on PYTHONPATH. Standard library only (prometheus_client, which vLLM
itself uses, when present): it runs in any vLLM image.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time

KEY_VARIABLE = "VLLM_API_KEY"  # the variable vLLM itself reads its key from
# Paths open without the key, GET and HEAD only. Nothing here takes a prompt, an image or a URL:
#   /health   liveness, readiness and startup probes (Kubernetes httpGet cannot send a secret header),
#             compose's healthcheck and the router's worker health checks
#   /metrics  Prometheus scrapes (counters and latencies, no request content)
PUBLIC = frozenset({"/health", "/metrics"})
PUBLIC_METHODS = frozenset({"GET", "HEAD"})
UNAUTHORIZED = json.dumps({"error": "Unauthorized"}).encode()


class KeyOnEveryRoute:
    """Pure ASGI middleware: 401 unless the bearer key matches, on every path outside PUBLIC."""

    def __init__(self, app) -> None:
        self.app = app
        key = os.environ.get(KEY_VARIABLE, "")
        if not key:
            # NB: vLLM would serve without a key; refuse to build the app instead.
            raise RuntimeError(f"vllm-deploy: {KEY_VARIABLE} is empty or unset; refusing to serve without a key")
        self.digest = hashlib.sha256(key.encode()).digest()

    def _authorized(self, scope) -> bool:
        values = [v for k, v in scope.get("headers", ()) if k.lower() == b"authorization"]
        if len(values) != 1:  # none, or several (which one would a proxy behind us read?)
            return False
        scheme, _, token = values[0].decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time: compare digests of equal length, as vLLM's own check does.
        return hmac.compare_digest(hashlib.sha256(token.encode("latin-1")).digest(), self.digest)

    @staticmethod
    def _is_cors_preflight(scope) -> bool:
        # Answered by vLLM's CORS middleware itself, which never calls a route for it.
        if scope.get("method") != "OPTIONS":
            return False
        names = {k.lower() for k, _ in scope.get("headers", ())}
        return b"origin" in names and b"access-control-request-method" in names

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):  # lifespan: start-up and shutdown
            await self.app(scope, receive, send)
            return
        public = kind == "http" and scope["path"] in PUBLIC and scope.get("method") in PUBLIC_METHODS
        if public or self._is_cors_preflight(scope) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation: the server answers 403
            return
        await _respond(send, 401, UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])


# EngineWatch's settings, from the environment the profile renders (0 for the window: off).
WINDOW_VARIABLE = "VLLM_DEPLOY_HANG_WINDOW_SECONDS"  # no progress this long: probe
PROBE_TIMEOUT_VARIABLE = "VLLM_DEPLOY_HANG_PROBE_TIMEOUT_SECONDS"  # no token within this: hung
EXIT_VARIABLE = "VLLM_DEPLOY_HANG_EXIT_SECONDS"  # hung this long: the process exits (restarted)
PROGRESS_COUNTERS = ("vllm:prompt_tokens_total", "vllm:generation_tokens_total")  # vLLM's own, per engine step
HUNG_BODY = json.dumps({"error": "engine hung: no progress, and no token for a probe"}).encode()
EXIT_CODE = 75  # EX_TEMPFAIL: restart me
log = logging.getLogger("vllm_deploy_edge")


def token_count() -> float | None:
    """The engine's progress as the API process has received it: vLLM's token counters, summed (None: no
    prometheus_client, or no counter yet)."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return None
    # NB: /health is asked every few seconds by several callers: collect the two counters, not every histogram.
    counters = REGISTRY.restricted_registry(PROGRESS_COUNTERS)
    found = [sample.value for metric in counters.collect() for sample in metric.samples]
    return sum(found) if found else None


class EngineWatch:
    """Pure ASGI middleware: /health answers 503 while the engine is hung (see the module's docstring)."""

    def __init__(self, app, clock=time.monotonic, progress=token_count, exit_process=os._exit, gauge=None) -> None:
        self.app = app
        self.window = float(os.environ.get(WINDOW_VARIABLE, "0"))
        self.probe_timeout = float(os.environ.get(PROBE_TIMEOUT_VARIABLE, "10"))
        self.exit_after = float(os.environ.get(EXIT_VARIABLE, "10"))
        self.key = os.environ.get(KEY_VARIABLE, "")
        self.clock, self.progress, self.exit_process = clock, progress, exit_process
        self.tokens: float | None = None
        self.observed = False
        self.moved_at = clock()  # NB: the server answers only once loaded: its start is progress
        self.hung_since: float | None = None
        self.probe: asyncio.Task | None = None
        self.probes = 0
        self.gauge = gauge or _hung_gauge()

    async def __call__(self, scope, receive, send) -> None:
        if self.window and scope["type"] == "http" and scope["path"] == "/health":
            self.check(scope.get("server") or ("127.0.0.1", 8000))
            if self.hung_since is not None:
                await _respond(send, 503, HUNG_BODY)
                return
        await self.app(scope, receive, send)

    def check(self, server) -> None:
        now = self.clock()
        tokens = self.progress()
        if tokens != self.tokens:
            if self.observed:  # NB: the first reading is the baseline, not progress
                self.moved_at = now
                self._verdict(hung=False)
            self.tokens, self.observed = tokens, True
        if self.hung_since is not None and now - self.hung_since >= self.exit_after:
            log.error(
                "vllm-deploy: the engine has been hung for %.0f s: exiting, to be restarted", now - self.hung_since
            )
            self.exit_process(EXIT_CODE)
        if now - self.moved_at >= self.window and (self.probe is None or self.probe.done()):
            self.probes += 1
            self.probe = asyncio.get_running_loop().create_task(self._probe(int(server[1])))

    async def _probe(self, port: int) -> None:
        try:
            answered = await asyncio.wait_for(one_token(port, self.key), self.probe_timeout)
        except (asyncio.TimeoutError, OSError):
            answered = False
        if answered:
            self.moved_at = self.clock()
        elif self.hung_since is None:
            log.error(
                "vllm-deploy: no progress for %.0f s and no token within %.0f s: the engine is hung",
                self.window,
                self.probe_timeout,
            )
        self._verdict(hung=not answered)

    def _verdict(self, hung: bool) -> None:
        if hung and self.hung_since is None:
            self.hung_since = self.clock()
        elif not hung:
            self.hung_since = None
        if self.gauge is not None:
            self.gauge.set(1 if hung else 0)


_gauges: dict = {}


def _hung_gauge():
    """vllm_deploy_engine_hung in the registry vLLM serves on /metrics (one for the process); None without
    prometheus_client."""
    if "hung" not in _gauges:
        try:
            from prometheus_client import Gauge
        except ImportError:
            return None
        _gauges["hung"] = Gauge("vllm_deploy_engine_hung", "1 while the engine makes no progress and answers no probe")
    return _gauges["hung"]


async def one_token(port: int, key: str) -> bool:
    """One token from the engine through the server's own front door on loopback: True on a 200."""
    body = json.dumps({"prompt": "ok", "max_tokens": 1}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nAuthorization: Bearer "
            + key.encode("latin-1")
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        await writer.drain()
        status = await reader.readline()
        return status.split(b" ", 2)[1:2] == [b"200"]
    finally:
        writer.close()


async def _respond(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole JSON answer from the middleware itself (the request goes no further)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
