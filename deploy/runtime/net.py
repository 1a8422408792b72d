"""Loopback network helpers: a free port, whether a port is taken, waiting for an HTTP health endpoint."""

from __future__ import annotations

import socket
from collections.abc import Callable

from deploy.runtime.http import KIB, HttpError, fetch
from deploy.runtime.process import wait_until

HEALTH_CAP = 64 * KIB


def free_port() -> int:
    """A port no one listens on at 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(address: str, port: int) -> bool:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """GET `url` answers 200 within `timeout` seconds, all told (a body past 64 KiB is no answer)."""
    try:
        return fetch("GET", url, deadline=timeout, cap=HEALTH_CAP).status == 200
    except HttpError:
        return False


def wait_for_http(url: str, timeout: float, alive: Callable[[], bool] = lambda: True, interval: float = 0.25) -> float:
    """Seconds until GET `url` answers 200. RuntimeError when `alive()` turns false, TimeoutError after `timeout`
    (plus at most one probe's 2 s)."""

    def probe() -> bool | None:
        if not alive():
            raise RuntimeError(f"the server behind {url} exited while starting")
        return True if http_ok(url) else None

    return wait_until(probe, timeout=timeout, interval=interval)[1]
