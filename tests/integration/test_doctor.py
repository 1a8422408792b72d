"""Preflight against the real Docker daemon of this machine (no GPU here): what `gather` reads off it."""

from __future__ import annotations

import json

import pytest

from deploy.plan import resolve
from deploy.runtime.net import free_port
from deploy.runtime.preflight import failures, gather, judge
from deploy.runtime.stack import Stack
from deploy.spec import load_profile
from deploy.spec.variant import write_variant

pytestmark = pytest.mark.docker


def checks(profile_ref: str, root) -> dict:
    stack = Stack(resolve(load_profile(profile_ref)), root)
    return {c.name: c for c in judge(stack.plan, gather(stack.plan, stack.compose, stack.docker))}


def test_cuda_profile_on_a_host_without_gpu_or_model(cli):
    result = cli("doctor", "minicpm-v-2_6")
    assert result.code == 1
    assert "✓ docker daemon: version" in result.out
    assert "✓ compose v2: 2." in result.out
    assert "✗ nvidia runtime: no NVIDIA container runtime" in result.out
    assert "✗ model path: /root/ld/ld_model_pretrained/Minicpmv2_6 does not exist on this host" in result.out
    assert "fix: copy the model there, or point model.source at it" in result.out


def test_gather_reads_the_models_config(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 3584,
                "num_hidden_layers": 28,
                "num_attention_heads": 28,
                "num_key_value_heads": 4,
                "intermediate_size": 18944,
                "vocab_size": 151666,
            }
        )
    )
    profile = write_variant("minicpm-v-2_6", tmp_path / "p.yaml", {"model": {"source": str(model)}})
    found = checks(str(profile), tmp_path)
    assert found["model path"].verdict == "ok"
    memory = found["gpu memory"]
    assert memory.verdict == "warn" and memory.detail.startswith("needs ~14.")
    assert "no GPU visible" in memory.detail


def test_cpu_profile_passes_preflight_here(tmp_path):
    # A free port: a developer's own `make up` may hold 8000.
    profile = write_variant("tiny-cpu", tmp_path / "p.yaml", {"server": {"port": free_port()}})
    found = checks(str(profile), tmp_path)
    assert set(found) == {"docker daemon", "compose v2", "port"}
    assert failures(list(found.values())) == []
