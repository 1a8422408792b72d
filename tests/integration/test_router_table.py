"""The router's route table is current: regenerating it from the pinned vllm-router sdist (downloaded by pip)
gives the committed bytes (deploy/data/vllm-router-routes.json), so a release that adds a route cannot
slip past the front's allowlist unnoticed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_committed_route_table_is_what_the_pinned_router_generates():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "vllm_router_routes.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    committed = (REPO / "deploy" / "data" / "vllm-router-routes.json").read_text(encoding="utf-8")
    assert result.stdout == committed, "deploy/data/vllm-router-routes.json drifted: run `make vllm-router-routes`"
