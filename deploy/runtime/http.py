"""Bounded HTTP, the one client under every request the runtime and the bench send (status, router, load,
health waits): a total deadline, a body cap, and a check of the shape of what came back.

Every failure is an `HttpError` (a UserError: exit 2) naming the endpoint and what was wrong, with the
server's own words escaped and truncated; `kind` lets a caller count failures (the load generator).

NB: not `requests`: its timeout bounds each socket read, so a server that trickles one byte a second (in
its headers or its body) holds it forever. Here the exchange runs on plain http.client over a socket
whose every send and read gets only what is left of one deadline for the whole exchange, and the body
is read as it arrives (`read1`) and dropped past the cap. No proxy support: the endpoints are the
profile's own (loopback) or a server the user names. A TLS handshake is bounded per step by what was
left when it started.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import select
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from deploy.errors import UserError, shown

T = TypeVar("T")
KIB = 1024
MIB = 1024 * KIB
DEFAULT_CAP = 1 * MIB  # a JSON answer of an API; /metrics texts ask for more
READ_CHUNK = 64 * KIB


# ------------------------------------------------------------------------ text from outside


# ------------------------------------------------------------------------ errors and deadlines


class HttpError(UserError):
    """One exchange that failed. `kind`: unreachable, deadline, too-large, status, content-type, not-json, shape,
    malformed (not HTTP), request (could not be sent). `brief` is the problem without the endpoint."""

    def __init__(
        self,
        endpoint: str,
        kind: str,
        problem: str,
        said: str = "",
        status: int | None = None,
        hint: str = "",
        what: str = "",
    ):
        self.endpoint, self.kind, self.problem, self.said, self.status, self.hint, self.what = (
            endpoint,
            kind,
            problem,
            said,
            status,
            hint,
            what,
        )
        super().__init__(
            (f"{what}: " if what else "")
            + f"{endpoint}: {problem}"
            + (f"; it said: {said}" if said else "")
            + (f" ({hint})" if hint else "")
        )

    @property
    def brief(self) -> str:
        return self.problem + (f": {shown(self.said, 80)}" if self.said and self.kind == "status" else "")

    def about(self, what: str, hint: str = "") -> HttpError:
        """The same failure, saying whose endpoint it is (`Prometheus`) and what to do."""
        return HttpError(self.endpoint, self.kind, self.problem, self.said, self.status, hint or self.hint, what)


class Deadline:
    """A point in time an exchange (or several: one `status` screen) must be done by."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = float(seconds), clock
        self.ends = clock() + self.seconds

    def left(self) -> float:
        return self.ends - self.clock()


class _DeadlineExpiredError(TimeoutError):
    pass


class _Bounded:
    """A socket whose every send and read waits at most what is left of its deadline."""

    deadline: Deadline | None = None

    def _limit(self) -> None:
        left = self.deadline.left() if self.deadline is not None else None
        if left is not None and left <= 0:
            raise _DeadlineExpiredError()
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


def _tls_context() -> ssl.SSLContext:
    context = _TlsContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_default_certs()
    return context


class _Connection(http.client.HTTPConnection):
    def __init__(self, scheme: str, host: str, port: int):
        super().__init__(host, port)
        self.scheme = scheme
        self.deadline: Deadline | None = None

    def connect(self) -> None:
        left = self.deadline.left() if self.deadline else None
        if left is not None and left <= 0:
            raise _DeadlineExpiredError()
        raw = socket.create_connection((self.host, self.port), timeout=left)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: Any = _Socket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        if self.scheme == "https":
            sock.settimeout(self.deadline.left() if self.deadline else None)
            sock = _tls_context().wrap_socket(sock, server_hostname=self.host)
        sock.deadline = self.deadline
        self.sock = sock

    def bound(self, deadline: Deadline) -> None:
        self.deadline = deadline
        if self.sock is not None:
            self.sock.deadline = deadline  # type: ignore[union-attr]  # NB: always our _Socket (connect sets it)

    def dropped(self) -> bool:
        """A kept-alive connection the server closed (or wrote to unasked) since its last answer."""
        return self.sock is not None and bool(select.select([self.sock], [], [], 0)[0])


class Connections:
    """Kept-alive connections of one thread, one per scheme, host and port (the load generator's)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str, int], _Connection] = {}

    def take(self, scheme: str, host: str, port: int) -> _Connection:
        conn = self._open.pop((scheme, host, port), None)
        if conn is not None and conn.dropped():
            conn.close()
            conn = None
        return conn or _Connection(scheme, host, port)

    def keep(self, conn: _Connection) -> None:
        self._open[(conn.scheme, conn.host, conn.port)] = conn

    def close(self) -> None:
        for conn in self._open.values():
            conn.close()
        self._open.clear()


# ------------------------------------------------------------------------ answers and their shape


class ShapeError(ValueError):
    """JSON that is not what the caller expects; the message names the path, e.g. `choices[0].message`."""


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40], ensure_ascii=True)}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "an object" if isinstance(value, dict) else type(value).__name__


KIND_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
}


def pick(data: Any, path: str, kind: type | tuple[type, ...] = object) -> Any:
    """The value at `path` (`choices[0].message`, `data.result`) in JSON data, checked to be of `kind`.

    Numbers are never booleans, and a float must be finite. ShapeError names the first step that is missing."""
    value, walked = data, ""
    for name, index in re.findall(r"([A-Za-z_][\w-]*)|\[(\d+)\]", path):
        if name:
            if not isinstance(value, dict):
                raise ShapeError(f"{walked or 'the answer'} is {_describe(value)}, not an object")
            if name not in value:
                raise ShapeError(f"{walked or 'the answer'} has no {name!r}")
            value, walked = value[name], f"{walked}.{name}" if walked else name
        else:
            if not isinstance(value, list):
                raise ShapeError(f"{walked or 'the answer'} is {_describe(value)}, not a list")
            if int(index) >= len(value):
                raise ShapeError(
                    f"{walked or 'the answer'} has no item {index}"
                    + (" (it is empty)" if not value else f" (it has {len(value)})")
                )
            value, walked = value[int(index)], f"{walked}[{index}]"
    kinds = kind if isinstance(kind, tuple) else (kind,)
    numeric = any(k in (int, float) for k in kinds)
    wrong = (
        not isinstance(value, kinds)
        or (isinstance(value, bool) and bool not in kinds)
        or (numeric and isinstance(value, float) and not math.isfinite(value))
    )
    if wrong:
        wanted = " or ".join(KIND_NAMES.get(k, k.__name__) for k in kinds)
        raise ShapeError(f"{walked or 'the answer'} is {_describe(value)}, not {wanted}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True)
class Answer:
    endpoint: str  # "GET http://host:port/path", for messages
    status: int
    content_type: str  # the media type, lowercase, without parameters
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def fail(self, kind: str, problem: str, said: bool = True) -> HttpError:
        return HttpError(self.endpoint, kind, problem, shown(self.text()) if said else "", self.status)

    def ok(self) -> Answer:
        """Itself when the status is 2xx."""
        if not 200 <= self.status < 300:
            raise self.fail("status", f"HTTP {self.status}")
        return self

    def json(self) -> Any:
        """The body as JSON; the content type must say JSON. NaN and Infinity are not JSON."""
        if not (self.content_type == "application/json" or self.content_type.endswith("+json")):
            what = (
                "HTML"
                if self.content_type == "text/html" or self.body.lstrip()[:1] == b"<"
                else repr(self.content_type or "no content type")
            )
            raise self.fail("content-type", f"answered {what}, not JSON (HTTP {self.status})")
        try:
            return json.loads(self.body.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            reason = "deeply nested" if isinstance(error, RecursionError) else shown(str(error), 80)
            raise self.fail("not-json", f"answered invalid JSON ({reason})") from None

    def read(self, reader: Callable[[Any], T]) -> T:
        """The JSON body through `reader`, which picks what it needs (`pick`); a ShapeError is an HttpError."""
        data = self.json()
        try:
            return reader(data)
        except ShapeError as error:
            raise self.fail("shape", f"unexpected answer: {error}") from None


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def fetch(
    method: str,
    url: str,
    *,
    deadline: Deadline | float,
    cap: int = DEFAULT_CAP,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    connections: Connections | None = None,
) -> Answer:
    """One HTTP exchange, done by `deadline` (a Deadline, or seconds from now) and at most `cap` body bytes.

    Any status comes back as an Answer (`.ok()` checks it); everything else that goes wrong is an HttpError."""
    deadline = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if params:
        target += ("&" if "?" in target else "?") + urlencode(params)
    host = parts.hostname or ""
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    except ValueError:  # not a number, or out of range
        port = 0
    # NB: the label leaves out a user:password@ and the query.
    where = f"[{host}]" if ":" in host else host
    endpoint = shown(
        f"{method} {parts.scheme}://{where}:{port}{parts.path or '/'}" if host and port else f"{method} {url}", 300
    )
    if parts.scheme not in ("http", "https") or not host or not port:
        raise HttpError(endpoint, "request", "not an http:// or https:// URL with a host and a valid port")
    body = None
    send_headers = {"Accept": "application/json, text/plain;q=0.5, */*;q=0.1", **(headers or {})}
    if json_body is not None:
        body = json.dumps(json_body).encode()
        send_headers["Content-Type"] = "application/json"
    conn = connections.take(parts.scheme, host, port) if connections else _Connection(parts.scheme, host, port)
    conn.bound(deadline)
    keep = False
    try:
        try:
            conn.request(method, target, body=body, headers=send_headers)
        except (ValueError, http.client.InvalidURL) as error:
            if isinstance(error, OSError):  # a TLS certificate that does not verify is both
                raise
            # NB: says nothing of the values: a header may hold the key.
            raise HttpError(
                endpoint,
                "request",
                "the request could not be sent: the URL or a header holds characters HTTP does not allow",
            ) from None
        response = conn.getresponse()
        length = response.getheader("Content-Length", "")
        if length.strip().isdigit() and int(length) > cap:
            raise HttpError(endpoint, "too-large", f"the answer is {int(length)} bytes, over the {cap}-byte cap")
        chunks, size = [], 0
        while True:
            chunk = response.read1(READ_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                raise HttpError(endpoint, "too-large", f"the answer goes on past the {cap}-byte cap")
            chunks.append(chunk)
        response.close()  # NB: read to its end: the connection is free for the next request
        keep = connections is not None and not response.will_close
        return Answer(endpoint, response.status, _media_type(response.getheader("Content-Type")), b"".join(chunks))
    except TimeoutError:  # NB: our deadline, or a socket timeout set from it
        raise HttpError(endpoint, "deadline", f"no complete answer within {deadline.seconds:g} s") from None
    except ConnectionRefusedError:
        raise HttpError(endpoint, "unreachable", "connection refused (nothing listens there)") from None
    except http.client.HTTPException as error:
        if isinstance(error, ConnectionError):  # RemoteDisconnected
            raise HttpError(endpoint, "malformed", "the server closed the connection without an answer") from None
        raise HttpError(endpoint, "malformed", f"not a valid HTTP answer ({type(error).__name__})") from None
    except OSError as error:
        reason = shown(error.strerror or str(error) or type(error).__name__, 120)
        raise HttpError(endpoint, "unreachable", f"connection failed ({type(error).__name__}: {reason})") from None
    finally:
        if keep and connections is not None:
            connections.keep(conn)
        else:
            conn.close()
