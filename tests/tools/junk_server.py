"""A loopback HTTP server that answers badly on purpose, for the hostile-client corpus (tests/unit/test_clients.py).

One threaded server on 127.0.0.1 with an ephemeral port serves every kind of junk at once: the first path
segment picks the answer, so `junk.url("html")` is a base URL any client can append its own paths to
(`/api/v1/query`, `/v1/chat/completions`, `/health`). `junk.closed_url()` is a port nothing listens on.

The never-ending answers stop when the client hangs up or the server is shut down.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, cast

T = TypeVar("T")

# Server text with terminal escapes and a bidi override: a client must never show it raw.
NASTY = "boom\x1b[31m red\x1b[0m \u202eevil\u202c\r\nsecond line\x07" + "x" * 5000
TRICKLE_PAUSE = 0.05  # seconds between bytes of the slow answers


def _answer(status: str, content_type: str | None, body: bytes, extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + (f"Content-Type: {content_type}\r\n" if content_type else "")
    return (head + f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode() + body


def _json(text: str) -> bytes:
    return _answer("200 OK", "application/json", text.encode())


# Answers sent whole: the bytes on the wire after the request.
WHOLE: dict[str, bytes] = {
    "html": _answer(
        "200 OK", "text/html; charset=utf-8", b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"
    ),
    "text-200": _answer("200 OK", "text/plain", b"OK"),
    "no-content-type": _answer("200 OK", None, b'{"choices": [{"message": {"role": "assistant"}}]}'),
    "wrong-content-type": _answer("200 OK", "application/xml", b"<choices><message/></choices>"),
    "invalid-json": _json('{"choices": [{"message": '),
    "wrong-shape": _json('{"unexpected": {"nothing": ["here"]}, "status": 7}'),
    "json-list": _json("[1, 2, 3]"),
    "empty-choices": _json('{"choices": [], "data": [], "status": "success"}'),
    "nan": _json('{"choices": NaN, "data": NaN, "status": NaN, "healthy_workers": NaN}'),
    "deep-json": _json("[" * 100_000 + "]" * 100_000),
    "error-500": _answer("500 Internal Server Error", "text/plain; charset=utf-8", NASTY.encode()),
    "error-503-json": _answer("503 Service Unavailable", "application/json", json.dumps({"error": NASTY}).encode()),
    "not-http": b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
    "redirect-loop": _answer("302 Found", "text/plain", b"", "Location: /redirect-loop/again\r\n"),
}

# Answers that take their time or never end.
STREAMED = ("trickle-body", "trickle-headers", "endless", "huge", "huge-undeclared", "reset", "close", "stall")
MODES = tuple(WHOLE) + STREAMED


class QuietServer(ThreadingHTTPServer):
    """A threaded HTTP server that prints nothing when a client hangs up under a handler (a stub's test
    would otherwise see another test's traceback on its stderr)."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # NB: a junk answer ends in a socket closed under the handler's feet: that is the point


class JunkServer:
    def __init__(self) -> None:
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                mode = self.path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
                self.close_connection = True
                if mode in ("reset", "close"):
                    self.wfile.flush()
                    self.rfile.close()
                    self.wfile.close()
                    if mode == "reset":  # an RST instead of an answer
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    else:  # closed without a byte of answer
                        self.connection.shutdown(socket.SHUT_RDWR)
                    self.connection.close()
                    return
                with contextlib.suppress(OSError):  # the client hung up: what it should do with junk
                    server.answer(mode, self.wfile.write)

            do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815 (http.server's own method names)

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def answer(self, mode: str, write: Callable[[bytes], object]) -> None:
        if mode in WHOLE:
            write(WHOLE[mode])
        elif mode == "trickle-body":  # valid headers, then a JSON body one byte at a time until closed
            write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
            self._trickle(write, itertools.chain(b'{"choices": [', itertools.repeat(ord(" "))))
        elif mode == "trickle-headers":  # a status line, then headers one byte at a time, for ever
            write(b"HTTP/1.1 200 OK\r\n")
            self._trickle(
                write,
                itertools.chain(
                    b"X-Slow: ", itertools.repeat(ord("a"), 60_000), b"\r\n", itertools.cycle(b"X-More: b\r\n")
                ),
            )
        elif mode == "endless":  # a chunked body as fast as the client takes it, never ending
            write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"[" * 65536
            while not self.stopping.is_set():
                write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        elif mode == "huge":  # 1 GiB said up front; sent until the client stops reading
            write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
            chunk = b" " * 65536
            while not self.stopping.is_set():
                write(chunk)
        elif mode == "huge-undeclared":  # no length: a body until closed, as fast as the client takes it
            write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
            chunk = b"[" * 65536
            while not self.stopping.is_set():
                write(chunk)
        elif mode == "stall":  # the request read, then silence
            self.stopping.wait(600)
        else:
            write(_answer("404 Not Found", "text/plain", f"no junk mode {mode!r}".encode()))

    def _trickle(self, write: Callable[[bytes], object], payload: Iterable[int]) -> None:
        """One byte of `payload` every TRICKLE_PAUSE seconds, until the client hangs up or the server stops."""
        for byte in payload:
            if self.stopping.wait(TRICKLE_PAUSE):
                return
            write(bytes((byte,)))

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mode}"

    @staticmethod
    def closed_url() -> str:
        """A loopback port nothing listens on (bound, then released)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{sock.getsockname()[1]}/nothing"

    def __enter__(self) -> JunkServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def within(seconds: float, call: Callable[[], T]) -> tuple[T, BaseException | None]:
    """Run `call` in a thread; its result or exception, or an AssertionError when it has not finished
    within `seconds` (a hang)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise AssertionError(f"still running after {time.monotonic() - started:.0f} s: a hang")
    # NB: the result is None when the call raised: callers look at the error first.
    return cast(T, outcome.get("result")), outcome.get("error")
