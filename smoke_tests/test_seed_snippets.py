"""The user's guide, run as written: both seed snippets as a subprocess against the server under test."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("seed_snippets.py")


@pytest.mark.parametrize("snippet", ["1", "2"], ids=["image-url", "local-image"])
def test_seed_snippet_runs(snippet, smoke, model, image, tmp_path):
    picture = tmp_path / "pic.jpg"
    picture.write_bytes(image.payload)
    env = {
        **os.environ,
        "SMOKE_BASE_URL": smoke.base_url,
        "SMOKE_MODEL": model,
        "SMOKE_IMAGE_URL": image.url,
        "SMOKE_IMAGE_PATH": str(picture),
        "PYTHONIOENCODING": "utf-8",
    }
    env.pop("SMOKE_API_KEY", None)
    env.pop("VLLM_API_KEY", None)
    if smoke.api_key:
        env["SMOKE_API_KEY"] = smoke.api_key
    # NB: the seed sets no max_tokens, so the server generates up to --max-model-len; allow for that
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), snippet],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=max(300.0, smoke.request_timeout * 5),
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
    lines = proc.stdout.splitlines()
    assert any(line.startswith("Chat response: ChatCompletion(") for line in lines), proc.stdout[-2000:]
    assert any(line.startswith("Chat response content:") for line in lines), proc.stdout[-2000:]
