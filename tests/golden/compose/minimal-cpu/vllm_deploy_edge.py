# Copied by vllm-deploy from deploy/assets/edge/vllm_deploy_edge.py for the image build. Do not edit: change the original.
"""The API key on every route of vLLM's server, except a short public list (vLLM's `--middleware` hook).

vLLM 0.32 checks its key only on paths starting with /v1, /v2, /inference and /cohere
(vllm/entrypoints/serve/middleware/authenticate.py); its route table also serves inference and media
fetches elsewhere (/invocations, /tokenize, …) to anyone. This middleware turns that around: a request
passes without the key only to a path on PUBLIC, by exact match on the same path vLLM's router matches,
so a route a newer vLLM adds is guarded with no change here. vLLM's own check stays on behind it.

Loaded by `vllm serve --middleware vllm_deploy_edge.KeyOnEveryRoute` (outermost: the last middleware
added runs first) from a directory on PYTHONPATH. Standard library only: it runs in any vLLM image.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

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
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(UNAUTHORIZED)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": UNAUTHORIZED})
