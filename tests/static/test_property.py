"""Property: any mutation of a real profile either renders files the real validators accept, or exits 2
with `file:line` problems; never a traceback, never the key in the output, never more than a few seconds.

Hypothesis mutates the built-in and fixture profiles (types, values, structure, YAML features) and runs
the CLI in-process. Renders that succeed are collected and checked afterwards in one batch by Compose
v2, kubernetes-validate and hadolint. Derandomized, so CI sees the same cases every run.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.spec import builtin_names
from deploy.spec.load import BUILTIN_DIR
from tests.conftest import FIXTURE_PROFILES, compose_binary, venv_tool

pytestmark = pytest.mark.slow  # NB: ~20 s; `make test` and `make validate-rendered` run it, `make test-fast` does not
CANARY = "sk-canary-0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a"
SOURCES = [BUILTIN_DIR / f"{n}.yaml" for n in builtin_names()] + sorted(FIXTURE_PROFILES.glob("*.yaml"))
BASES = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in SOURCES]
RENDERED: list[Path] = []  # valid renders, validated in one batch by the next test
MAX_VALIDATED = 25

NASTY_STRINGS = [
    "",
    " ",
    "yes",
    "no",
    "on",
    "0",
    "1.5",
    "-1",
    "null",
    "~",
    "$(VLLM_API_KEY)",
    "${VLLM_API_KEY}",
    "$$",
    "`id`",
    "a\nb",
    "x; rm -rf /",
    "../../etc/passwd",
    "/models/x",
    "Qwen/Qwen2.5-VL-7B-Instruct",
    "--api-key",
    "--api-ke",
    "--config",
    "--enable-prefix-caching",
    "0.0.0.0",
    "::1",
    "vllm/vllm-openai:v0.32.0",
    "timm==1.0.15",
    CANARY,
    "VLLM_API_KEY=" + CANARY,
    "é" * 300,
    "\t",
    "\x00",
]
scalars = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.text(max_size=20),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "key", "image", "--x"]), inner, max_size=3)
    ),
    max_leaves=6,
)


def leaves(node: Any, path: tuple = ()) -> list[tuple]:
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += leaves(value, (*path, index))
    return found


def set_at(node: Any, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def delete_at(node: Any, path: tuple) -> None:
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]


@st.composite
def mutated_profile_text(draw) -> str:
    data = yaml.safe_load(yaml.safe_dump(draw(st.sampled_from(BASES))))
    for _ in range(draw(st.integers(1, 3))):
        paths = leaves(data)
        kind = draw(st.sampled_from(["set", "set", "nudge", "nudge", "delete", "add"]))
        numbers = [p for p in paths if isinstance(_get(data, p), int) and not isinstance(_get(data, p), bool)]
        if kind == "nudge" and numbers:  # a plausible value: more mutations then render for real
            set_at(data, draw(st.sampled_from(numbers)), draw(st.integers(1, 64)))
        elif kind == "set" and paths:
            set_at(data, draw(st.sampled_from(paths)), draw(values))
        elif kind == "delete" and paths:
            delete_at(data, draw(st.sampled_from(paths)))
        else:
            sections = [p for p in paths if isinstance(_get(data, p), dict)] or [()]
            target = _get(data, draw(st.sampled_from(sections)))
            if isinstance(target, dict):
                target[draw(st.sampled_from(["extra", "replicas", "port", CANARY, "<<"]))] = draw(values)
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    feature = draw(st.sampled_from(["none", "none", "anchor", "binary", "date", "duplicate", "tab", "truncate"]))
    if feature == "anchor":
        text = "x-common: &common {a: 1}\n" + text + "x-ref: *common\n"
    elif feature == "binary":
        text += "extra: !!binary aGVsbG8=\n"
    elif feature == "date":
        text = text.replace("name:", "name: 2024-01-01\nxname:", 1)
    elif feature == "duplicate":
        text += text.splitlines()[0] + "\n"
    elif feature == "tab":
        text = text.replace("  ", "\t", 1)
    elif feature == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    return text


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


@settings(
    max_examples=250,
    deadline=3000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=mutated_profile_text())
def test_a_mutated_profile_renders_or_fails_with_lines(cli, tmp_path_factory, monkeypatch, text):
    monkeypatch.setenv("VLLM_API_KEY", CANARY)
    case = tmp_path_factory.mktemp("case")
    (case / "p.yaml").write_text(text, encoding="utf-8")
    result = cli("render", "p.yaml", "--out", "out", cwd=case)
    output = result.out + result.err
    assert "Traceback" not in output
    assert CANARY not in output, output
    if result.code == 0:
        assert (case / "out").is_dir()
        RENDERED.append(case / "out")
    else:
        assert result.code == 2, output
        assert re.search(r"p\.yaml(:\d+)?: ", result.err), result.err
        assert not (case / "out").exists(), "a failed render wrote files"


@pytest.fixture(scope="module")
def validated_renders():
    if not RENDERED:
        pytest.fail("the property test rendered nothing valid: its mutations are too aggressive to check anything")
    return RENDERED[:MAX_VALIDATED]


def test_every_valid_mutation_passes_the_real_validators(validated_renders, measured):
    measured["property test: valid renders validated"] = len(validated_renders)
    manifests = [
        str(p) for out in validated_renders for p in out.glob("k8s/*/*.yaml") if p.name != "kustomization.yaml"
    ]
    done = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "-k", "1.33.0", *manifests],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for out in validated_renders:
        for project in out.glob("compose/*"):
            env = {"PATH": "/usr/bin:/bin", "HOME": str(out), "VLLM_API_KEY": "x", "MINICPM_KEY": "x"}
            env.update(
                dict.fromkeys(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", (project / "compose.yaml").read_text()), "x")
            )
            done = subprocess.run(
                [compose_binary(), "config", "-q"], cwd=project, env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, f"{project}: {done.stderr}"
            dockerfile = project / "Dockerfile"
            if dockerfile.exists():
                done = subprocess.run(
                    [venv_tool("hadolint"), "--failure-threshold", "info", str(dockerfile)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, f"{dockerfile}: {done.stdout}"
