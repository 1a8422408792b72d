"""Every rendered artefact passes the real tools: kubernetes-validate, hadolint, Compose v2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.plan import resolve
from deploy.render import render
from deploy.spec import builtin_names, load_profile
from tests.conftest import FIXTURE_PROFILES, compose_binary, render_into, venv_tool
from tests.tools import crds

pytestmark = pytest.mark.static
KUBERNETES_VERSION = "1.33.0"  # NB: pinned; the oldest minor still in upstream support when this was written
PROFILES = builtin_names() + [str(p) for p in sorted(FIXTURE_PROFILES.glob("*.yaml"))]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return render_into(tmp_path_factory.mktemp("rendered"), PROFILES)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def documents(paths: list[Path]) -> list[dict]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifest_paths(out: Path, custom: bool) -> list[Path]:
    """The rendered manifests (kustomization.yaml aside): those of custom resources, or the built-in kinds."""
    return sorted(
        p
        for p in out.glob("k8s/*/*.yaml")
        if p.name != "kustomization.yaml" and any(crds.model_of(doc) for doc in documents([p])) == custom
    )


def test_manifests_pass_kubernetes_validate_strict(out):
    manifests = manifest_paths(out, custom=False)
    expected = sum(
        1
        for ref in PROFILES
        for path in render(resolve(load_profile(ref)))
        if path.startswith("k8s/") and path.endswith(".yaml") and not path.endswith("kustomization.yaml")
    )
    assert len(manifests) + len(manifest_paths(out, custom=True)) == expected
    result = run([venv_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, *map(str, manifests)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(documents(manifests))


def test_custom_resources_match_their_crds(out):
    """ServiceMonitor, PrometheusRule (prometheus-operator v0.80) and ScaledObject (KEDA 2.16), strictly."""
    found = documents(manifest_paths(out, custom=True))
    kinds = sorted({doc["kind"] for doc in found})
    assert kinds == ["PrometheusRule", "ScaledObject", "ServiceMonitor"], kinds  # the fixtures cover all three
    for doc in found:
        assert crds.problems(doc) == [], (doc["kind"], doc["metadata"]["name"])


@pytest.mark.parametrize(
    "kind, change, expected",
    [
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(intervall="5s"), "/spec/endpoints/0/intervall"),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(scheme="gopher"), "scheme"),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr"), "expr"),
        ("ScaledObject", lambda d: d["spec"].update(minReplicaCount="two"), "minReplicaCount"),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0].pop("metadata"), "metadata"),
    ],
)
def test_the_crd_check_rejects_a_broken_resource(out, kind, change, expected):
    """The CRD check is strict for real: an unknown field, a bad enum, a missing or mistyped field fail."""
    doc = next(d for d in documents(manifest_paths(out, custom=True)) if d["kind"] == kind)
    change(doc)
    found = crds.problems(doc)
    assert found and any(expected in problem for problem in found), found


def test_kubernetes_validate_rejects_an_unknown_field(out, tmp_path):
    """The validator is strict for real: a misspelt field fails."""
    deployment = yaml.safe_load((out / "k8s/tiny-cpu/deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    result = run([venv_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(broken)])
    assert result.returncode != 0


def test_dockerfiles_pass_hadolint(out):
    dockerfiles = sorted(out.glob("compose/*/Dockerfile*"))
    plans = [resolve(load_profile(ref)) for ref in PROFILES]
    # The engine's where it is built, the router's and Prometheus' where the profile has them.
    expected = sum(bool(p.image.build) + bool(p.router) + bool(p.monitoring) for p in plans)
    assert len(dockerfiles) == expected and any("prometheus" in d.name for d in dockerfiles)
    for dockerfile in dockerfiles:
        result = run([venv_tool("hadolint"), "--failure-threshold", "info", str(dockerfile)])
        assert result.returncode == 0, f"{dockerfile}:\n{result.stdout}{result.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM vllm/vllm-openai:latest\nRUN apt-get install curl\n")
    assert run([venv_tool("hadolint"), str(bad)]).returncode != 0


@pytest.mark.parametrize("ref", PROFILES, ids=[Path(p).stem for p in PROFILES])
def test_compose_files_pass_compose_v2_config(out, ref):
    name = load_profile(ref).name
    env = {"PATH": "/usr/bin:/bin", "HOME": str(out), "VLLM_API_KEY": "x", "MINICPM_KEY": "x"}
    result = run([compose_binary(), "config", "-q"], cwd=out / "compose" / name, env=env)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_the_key(out):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(out)}
    result = run([compose_binary(), "config", "-q"], cwd=out / "compose" / "tiny-cpu", env=env)
    assert result.returncode != 0
    assert "set VLLM_API_KEY in the environment or in .env" in result.stderr


def test_compose_refuses_an_empty_key_in_dotenv(out, tmp_path):
    """`.env` copied from the example holds `VLLM_API_KEY=`: compose must refuse it like a missing key."""
    project = out / "compose" / "tiny-cpu"
    (project / ".env").write_text("VLLM_API_KEY=\n")
    try:
        result = run([compose_binary(), "config", "-q"], cwd=project, env={"PATH": "/usr/bin:/bin", "HOME": str(out)})
    finally:
        (project / ".env").unlink()
    assert result.returncode != 0
    assert "set VLLM_API_KEY in the environment or in .env" in result.stderr


def test_every_yaml_file_loads_safely_without_python_tags(out):
    files = sorted(out.rglob("*.yaml"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "!!python" not in text, path
        assert list(yaml.safe_load_all(text)), path
