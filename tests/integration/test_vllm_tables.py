"""The tables generated from the pinned vLLM are current: regenerating them in the engine venv gives the
committed bytes (deploy/data/vllm-serve-options.json, deploy/data/vllm-architectures.json)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.engine
TABLES = {
    "vllm-serve-options.json": ("scripts/vllm_serve_options.py", "make vllm-options"),
    "vllm-architectures.json": ("scripts/vllm_architectures.py", "make vllm-architectures"),
}


def engine_python() -> Path:
    value = os.environ.get("ENGINE_PYTHON")
    path = Path(value) if value else REPO / ".venv-engine" / "bin" / "python"
    if not path.exists():
        pytest.fail(f"no engine python at {path}: set ENGINE_PYTHON or run `make engine` (creates .venv-engine)")
    return path


@pytest.mark.parametrize("table", list(TABLES))
def test_the_committed_table_is_what_the_pinned_vllm_generates(table):
    script, target = TABLES[table]
    result = subprocess.run([str(engine_python()), str(REPO / script)], capture_output=True, text=True, timeout=600,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    committed = (REPO / "deploy" / "data" / table).read_text(encoding="utf-8")
    assert result.stdout == committed, f"deploy/data/{table} drifted from the engine venv's vLLM: run `{target}`"


def test_the_architecture_table_knows_the_built_in_models():
    import json

    table = json.loads((REPO / "deploy" / "data" / "vllm-architectures.json").read_text(encoding="utf-8"))
    assert {"MiniCPMV", "Qwen2_5_VLForConditionalGeneration", "Idefics3ForConditionalGeneration"} <= set(
        table["multimodal"])
