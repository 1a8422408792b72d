"""Fixtures of the unit tests: the junk server every network client is run against (tests/tools/junk_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tools.junk_server import JunkServer


@pytest.fixture(scope="module")
def junk() -> Iterator[JunkServer]:
    """A loopback server answering every kind of junk at once: `junk.url(mode)` is a base URL per answer."""
    with JunkServer() as server:
        yield server
