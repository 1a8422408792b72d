"""A generated, deterministic JPEG and a tiny threaded HTTP server that serves it to the vLLM server."""

from __future__ import annotations

import io
import threading
import urllib.parse
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

IMAGE_PATH = "/stop_sign.jpg"
TEXT_PATH = "/not-an-image.txt"
MISSING_PATH = "/no-such-image.jpg"
REDIRECT_PATH = "/redirect"  # /redirect?to=URL answers 302 to URL
TEXT_BODY = b"This is plain text, not an image.\n"


@cache
def generated_jpeg() -> bytes:
    """A 224x224 stop-sign-like picture; same bytes on every call (no randomness, no metadata)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (224, 224), (120, 170, 230))
    draw = ImageDraw.Draw(img)
    draw.rectangle((106, 150, 118, 224), fill=(110, 110, 110))  # post
    c, r, k = 112, 80, 0.4142  # octagon around (c, c - 32)
    cy = c - 32
    draw.polygon(
        [
            (c - r * k, cy - r),
            (c + r * k, cy - r),
            (c + r, cy - r * k),
            (c + r, cy + r * k),
            (c + r * k, cy + r),
            (c - r * k, cy + r),
            (c - r, cy + r * k),
            (c - r, cy - r * k),
        ],
        fill=(200, 20, 30),
        outline=(255, 255, 255),
        width=4,
    )
    draw.rectangle((62, cy - 12, 162, cy + 12), fill=(255, 255, 255))  # where the word STOP would be
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


LARGE_SIZE = (4000, 3000)  # a phone photo
_large_lock = threading.Lock()


def large_jpeg(width: int = LARGE_SIZE[0], height: int = LARGE_SIZE[1]) -> bytes:
    """A large photo-sized picture (gradients and lines, ~0.8 MB at 4000x3000); same bytes on every call.

    NB: made once (~0.4 s) and kept; the suite starts making it in a thread early in the session (Pillow
    releases the GIL while it resizes and encodes): a case that asks sooner waits for that one."""
    with _large_lock:
        return _large_jpeg(width, height)


@cache
def _large_jpeg(width: int, height: int) -> bytes:
    from PIL import Image, ImageDraw

    ramp = Image.linear_gradient("L")
    img = Image.merge(
        "RGB",
        (ramp.resize((width, height)), ramp.rotate(90).resize((width, height)), Image.new("L", (width, height), 128)),
    )
    draw = ImageDraw.Draw(img)
    for x in range(0, width, max(width // 16, 1)):
        draw.line((x, 0, width - x, height), fill=(255, 255, 255), width=9)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


ServerT = TypeVar("ServerT", bound="BackgroundServer")


class BackgroundServer:
    """An HTTP server on a daemon thread of its own, as a context manager; `root` is the base URL a client uses
    (`advertised_host`, default the bound address). The image server here and the bench's loopback hub share it."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], bind: str, port: int, name: str, advertised_host: str | None = None
    ) -> None:
        self._httpd = ThreadingHTTPServer((bind, port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        host = advertised_host or bind
        self.root = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        # NB: a short poll interval makes shutdown() take ~50 ms instead of ~0.5 s
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )

    def __enter__(self: ServerT) -> ServerT:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class ImageServer(BackgroundServer):
    """Serves IMAGE_PATH (JPEG), TEXT_PATH (text/plain) and 404 for anything else; records request paths."""

    def __init__(self, bind: str, advertised_host: str, port: int = 0) -> None:
        self.requests: list[str] = []
        body = generated_jpeg()
        hits = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                if self.path.split("?", 1)[0] == IMAGE_PATH:
                    self._send(200, "image/jpeg", body)
                elif self.path.startswith(REDIRECT_PATH + "?to="):
                    self.send_response(302)
                    self.send_header("Location", urllib.parse.unquote(self.path.split("?to=", 1)[1]))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == TEXT_PATH:
                    self._send(200, "text/plain", TEXT_BODY)
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, ctype: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # NB: keep pytest's output clean; `requests` keeps the record

        super().__init__(Handler, bind, port, "smoke-image-server", advertised_host)

    def url(self, path: str) -> str:
        return self.root + path
