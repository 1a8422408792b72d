"""Bounded raw HTTP for the suite's own requests (the /health wait, Raw, the image download): a total
deadline, a body cap, and one error type with the server's words escaped and truncated.

The suite imports nothing from `deploy`, so this is its own minimal copy of deploy/runtime/http.py's idea:
`requests` bounds each socket read, so a server trickling a byte at a time would hold a case forever;
here every send and read on the socket waits only what is left of one deadline for the whole exchange,
and the body is read as it arrives and dropped past the cap. The openai client of the chat cases keeps its
own per-request timeout with retries off; `vllm-deploy smoke` bounds the whole run besides.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

MIB = 1024 * 1024
DEFAULT_CAP = 4 * MIB  # an API answer (chat completions here ask for a few tokens)
IMAGE_CAP = 32 * MIB  # the image the suite downloads once to send as base64
REDIRECTS = 5


def shown(text: str, limit: int = 300) -> str:
    """Server text for a message: control, bidi and invisible characters escaped, one line, truncated."""
    out = "".join(
        "\\\\" if c == "\\" else c if unicodedata.category(c)[0] not in "CZ" or c == " " else f"\\u{ord(c):04x}"
        for c in text
    )
    return out if len(out) <= limit else out[:limit] + f"… ({len(out) - limit} more characters)"


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class HttpFailureError(AssertionError):
    """An exchange that failed (no answer in time, too large, not HTTP) or an answer not of the expected kind.
    An AssertionError, so a case that meets one fails with this message rather than erroring."""


class _Bounded:
    ends: float = float("inf")

    def _limit(self) -> None:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline")
        self.settimeout(left)  # type: ignore[attr-defined]

    def recv_into(self, *args, **kwargs):
        self._limit()
        return super().recv_into(*args, **kwargs)  # type: ignore[misc]

    def sendall(self, *args, **kwargs):
        self._limit()
        return super().sendall(*args, **kwargs)  # type: ignore[misc]


class _Socket(_Bounded, socket.socket):
    pass


class _TlsSocket(_Bounded, ssl.SSLSocket):
    pass


class _TlsContext(ssl.SSLContext):
    sslsocket_class = _TlsSocket


class _Connection(http.client.HTTPConnection):
    def __init__(self, scheme: str, host: str, port: int, ends: float):
        super().__init__(host, port)
        self.scheme, self.ends = scheme, ends

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), timeout=max(self.ends - time.monotonic(), 0.001))
        sock: Any = _Socket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        if self.scheme == "https":
            sock.settimeout(max(self.ends - time.monotonic(), 0.001))
            context = _TlsContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_default_certs()
            sock = context.wrap_socket(sock, server_hostname=self.host)
        sock.ends = self.ends
        self.sock = sock


@dataclass(frozen=True)
class Answer:
    method: str
    url: str
    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; HttpFailureError (naming the request and quoting the body) when it is not."""
        media = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise HttpFailureError(
                f"{self.method} {self.url} -> {self.status_code} {media or 'no content type'}, "
                f"not JSON: {shown(self.text)}"
            )
        try:
            return json.loads(self.text, parse_constant=_not_json)
        except (ValueError, RecursionError) as exc:
            raise HttpFailureError(
                f"{self.method} {self.url} -> {self.status_code}: invalid JSON "
                f"({type(exc).__name__}: {shown(str(exc), 100)}): {shown(self.text)}"
            ) from None


def fetch(
    method: str,
    url: str,
    *,
    deadline: float,
    cap: int = DEFAULT_CAP,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    follow: bool = False,
) -> Answer:
    """One exchange within `deadline` seconds (redirects followed within it when `follow`), at most `cap` body
    bytes. Any status is an Answer; no answer, a too large or a malformed one is an HttpFailureError."""
    ends = time.monotonic() + deadline
    for _ in range(REDIRECTS + 1):
        answer = _once(method, url, ends, deadline, cap, headers or {}, json_body)
        location = answer.headers.get("location")
        if not (follow and answer.status_code in (301, 302, 303, 307, 308) and location):
            return answer
        url = urljoin(url, location)
    raise HttpFailureError(f"{method} {url}: more than {REDIRECTS} redirects")


def _once(
    method: str, url: str, ends: float, deadline: float, cap: int, headers: Mapping[str, str], json_body: Any
) -> Answer:
    parts = urlsplit(url)
    label = shown(f"{method} {parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}")
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port:
        raise HttpFailureError(f"{label}: not an http(s) URL with a host and a valid port")
    body = None if json_body is None else json.dumps(json_body).encode()
    sent = {**headers, **({"Content-Type": "application/json"} if body is not None else {})}
    conn = _Connection(parts.scheme, parts.hostname, port, ends)
    try:
        conn.request(method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body=body, headers=sent)
        resp = conn.getresponse()
        chunks, size = [], 0
        while True:
            chunk = resp.read1(64 * 1024)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                raise HttpFailureError(f"{label}: the answer goes on past {cap} bytes")
            chunks.append(chunk)
        return Answer(method, url, resp.status, {k.lower(): v for k, v in resp.getheaders()}, b"".join(chunks))
    except TimeoutError:
        raise HttpFailureError(f"{label}: no complete answer within {deadline:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise HttpFailureError(f"{label}: {type(exc).__name__}: {shown(str(exc), 200)}") from None
    except ValueError:  # a header or URL with characters HTTP does not allow (a header may hold the key)
        raise HttpFailureError(f"{label}: the request could not be sent (characters HTTP does not allow)") from None
    finally:
        conn.close()
