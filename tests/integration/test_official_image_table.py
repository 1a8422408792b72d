"""The official image's facts are current: regenerating them from the pinned vllm sdist's docker/Dockerfile
(downloaded from PyPI, its sha256 checked) gives the committed bytes (deploy/data/vllm-official-image.json), so a
release that changes the image's entrypoint, user, workdir or python shows up as a diff, and
tests/unit/test_official_image.py checks this project's choices against the new facts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_committed_official_image_facts_are_what_the_pinned_dockerfile_gives():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "vllm_official_image.py")],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    committed = (REPO / "deploy" / "data" / "vllm-official-image.json").read_text(encoding="utf-8")
    assert result.stdout == committed, "deploy/data/vllm-official-image.json drifted: run `make vllm-official-image`"
