"""The manifest table (deploy/targets/kubernetes.py), one condition at a time: for each row a profile that
gets the manifest and one that does not, checked in what render() writes and in the kustomization's
resources, the way production-stack tests its Helm chart's conditions."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from deploy.paths import TEMPLATE_DIR
from deploy.plan import resolve
from deploy.render import render
from deploy.spec import Profile, builtin_names, load_profile
from deploy.targets import MANIFESTS, kubernetes_plan
from tests.conftest import REPO

FIXTURES = sorted(str(p) for p in (REPO / "tests" / "profiles").glob("*.yaml"))


def variant(ref: str, **sections: dict[str, Any]) -> Profile:
    """A profile with a few settings changed, section by section (replicas is a top-level number)."""
    profile = load_profile(ref)
    update: dict[str, Any] = {}
    for section, values in sections.items():
        if section == "top":
            update |= values
        else:
            update[section] = getattr(profile, section).model_copy(update=values)
    return profile.model_copy(update=update)


def k8s_files(profile: Profile) -> tuple[set[str], list[str]]:
    """The manifests render() writes (resources only) and the kustomization's resources, in its order."""
    files = render(resolve(profile))
    root = f"k8s/{profile.name}/"
    kustomization = yaml.safe_load(files[root + "kustomization.yaml"])
    written = {path.removeprefix(root) for path in files if path.startswith(root)}
    return written, kustomization["resources"]


def assert_present(profile: Profile, manifest: str) -> None:
    written, resources = k8s_files(profile)
    assert manifest in written and manifest in resources, (manifest, sorted(written), resources)


def assert_absent(profile: Profile, manifest: str) -> None:
    written, resources = k8s_files(profile)
    assert manifest not in written and manifest not in resources, (manifest, sorted(written), resources)


MONITORED = {"enabled": True, "prometheus_operator": False, "autoscaler": "none"}

# file -> (a profile that gets it, profiles that do not): one case per way the condition can fail.
CASES: dict[str, tuple[Profile, list[Profile]]] = {
    "namespace.yaml": (
        variant("tiny-cpu", kubernetes={"create_namespace": True}),
        [variant("tiny-cpu", kubernetes={"create_namespace": False})],
    ),
    "pvc.yaml": (load_profile("qwen2_5-vl-7b"), [load_profile("minicpm-v-2_6"), load_profile("tiny-cpu")]),
    "router-deployment.yaml": (
        load_profile("tiny-cpu-x2"),
        [load_profile("tiny-cpu"), variant("tiny-cpu", router={"enabled": False})],
    ),
    "router-service.yaml": (load_profile("tiny-cpu-x2"), [load_profile("tiny-cpu")]),
    "router-rbac.yaml": (
        variant("tiny-cpu", router={"enabled": True}),  # one replica, the router on by the profile's word
        [load_profile("tiny-cpu")],
    ),
    "pdb.yaml": (
        load_profile("tiny-cpu-x2"),
        [
            load_profile("tiny-cpu"),
            variant("tiny-cpu", router={"enabled": True}),  # one pod: nothing to budget
            variant("tiny-cpu", monitoring=MONITORED | {"autoscaler": "keda", "max_replicas": 1}),
            variant("tiny-cpu", monitoring={"enabled": False, "autoscaler": "hpa", "max_replicas": 4}),
        ],
    ),
    "servicemonitor.yaml": (
        variant("tiny-cpu", monitoring=MONITORED | {"prometheus_operator": True}),
        [
            variant("tiny-cpu", monitoring=MONITORED),
            variant("tiny-cpu", monitoring={"enabled": False, "prometheus_operator": True}),
        ],
    ),
    "prometheusrule.yaml": (
        variant("tiny-cpu", monitoring=MONITORED | {"prometheus_operator": True}),
        [
            variant("tiny-cpu", monitoring=MONITORED),
            variant("tiny-cpu", monitoring={"enabled": False, "prometheus_operator": True}),
        ],
    ),
    "scaledobject.yaml": (
        variant("tiny-cpu", monitoring=MONITORED | {"autoscaler": "keda"}),
        [
            variant("tiny-cpu", monitoring=MONITORED | {"autoscaler": "hpa"}),
            variant("tiny-cpu", monitoring=MONITORED),
            variant("tiny-cpu", monitoring={"enabled": False, "autoscaler": "keda"}),
        ],
    ),
    "hpa.yaml": (
        variant("tiny-cpu", monitoring=MONITORED | {"autoscaler": "hpa"}),
        [
            variant("tiny-cpu", monitoring=MONITORED | {"autoscaler": "keda"}),
            variant("tiny-cpu", monitoring={"enabled": False, "autoscaler": "hpa"}),
        ],
    ),
}
ALWAYS = ["deployment.yaml", "service.yaml", "networkpolicy.yaml"]


# Further profiles that get a manifest: the other ways its condition holds.
MORE_PRESENT: dict[str, list[Profile]] = {
    # One replica, but an autoscaler can scale out: once it has, Recreate would take every pod down at once.
    "pdb.yaml": [
        variant("tiny-cpu", monitoring=MONITORED | {"autoscaler": "keda", "max_replicas": 3}),
        variant("tiny-cpu", monitoring=MONITORED | {"autoscaler": "hpa", "max_replicas": 2}),
    ],
}


@pytest.mark.parametrize("manifest", sorted(MORE_PRESENT))
def test_a_manifest_is_present_whichever_way_its_condition_holds(manifest):
    for profile in MORE_PRESENT[manifest]:
        assert_present(profile, manifest)


def test_every_row_has_its_cases():
    """A new row in the table needs its present and absent cases here."""
    assert {row.manifest.file for row in MANIFESTS} == set(CASES) | set(ALWAYS)
    assert {row.manifest.file for row in MANIFESTS if row.when == "always"} == set(ALWAYS)


@pytest.mark.parametrize("manifest", sorted(CASES))
def test_a_manifest_is_present_when_its_condition_holds(manifest):
    assert_present(CASES[manifest][0], manifest)


@pytest.mark.parametrize("manifest", sorted(CASES))
def test_a_manifest_is_absent_when_its_condition_fails(manifest):
    for profile in CASES[manifest][1]:
        assert_absent(profile, manifest)


@pytest.mark.parametrize("manifest", ALWAYS)
@pytest.mark.parametrize("ref", [*builtin_names(), *FIXTURES])
def test_the_unconditional_manifests_are_always_present(manifest, ref):
    assert_present(load_profile(ref), manifest)


@pytest.mark.parametrize("ref", [*builtin_names(), *FIXTURES])
def test_render_and_the_kustomization_list_the_same_manifests_in_the_tables_order(ref):
    profile = load_profile(ref)
    written, resources = k8s_files(profile)
    order = [row.manifest.file for row in MANIFESTS]
    assert resources == [m.file for m in kubernetes_plan(resolve(profile)).manifests]
    assert resources == sorted(resources, key=order.index)
    # Everything else beside the kustomization is an input of its generators, not a resource.
    assert {f for f in written if f.endswith(".yaml")} - set(resources) == {"kustomization.yaml"}


def test_every_kubernetes_template_is_a_row_or_the_kustomizations_own():
    """A new Kubernetes object is one row and one template: a template without a row is never rendered."""
    templates = {p.name for p in (TEMPLATE_DIR / "k8s").glob("*.j2")}
    rows = {row.manifest.template.removeprefix("k8s/") for row in MANIFESTS}
    assert templates - rows == {"kustomization.yaml.j2", "secrets.env.example.j2"}
    assert rows <= templates


def pod_specs(profile: Profile) -> list[tuple[str, dict[str, Any]]]:
    """Every pod template render() writes: (object kind/name, its pod spec)."""
    found = []
    for path, text in render(resolve(profile)).items():
        if path.startswith("k8s/") and path.endswith(".yaml"):
            for doc in yaml.safe_load_all(text):
                if doc and "template" in doc.get("spec", {}):
                    found.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
    return found


@pytest.mark.parametrize("ref", [*builtin_names(), *FIXTURES])
def test_no_pod_gets_service_link_variables(ref):
    """Kubernetes would inject <SERVICE>_PORT=tcp://…; a Service named vllm makes VLLM_PORT, which vLLM refuses."""
    pods = pod_specs(load_profile(ref))
    assert pods
    assert {name: spec.get("enableServiceLinks") for name, spec in pods} == {name: False for name, _ in pods}


def test_a_profile_named_vllm_validates_and_renders(tmp_path):
    """Its Service is named vllm: without enableServiceLinks false, VLLM_PORT=tcp://… stops vLLM at start."""
    text = (REPO / "deploy" / "profiles" / "tiny-cpu-x2.yaml").read_text()
    source = tmp_path / "vllm.yaml"
    source.write_text(text.replace("name: tiny-cpu-x2\n", "name: vllm\n", 1))
    profile = load_profile(str(source))
    assert profile.name == "vllm"
    pods = pod_specs(profile)
    assert {name for name, _ in pods} == {"Deployment/vllm", "Deployment/vllm-router"}
    assert all(spec["enableServiceLinks"] is False for _, spec in pods)
    services = [
        doc["metadata"]["name"]
        for path, text in render(resolve(profile)).items()
        if path.startswith("k8s/vllm/") and path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "Service"
    ]
    assert "vllm" in services  # the router's: every pod in the namespace would get VLLM_PORT


def test_operator_labels_go_on_the_monitors_and_the_rule_only():
    """kube-prometheus-stack's Prometheus selects ServiceMonitors and PrometheusRules by `release`."""
    profile = variant(
        "tiny-cpu",
        monitoring={"enabled": True, "prometheus_operator": True, "operator_labels": {"release": "kps"}},
        router={"enabled": True},
    )
    files = render(resolve(profile))
    root = f"k8s/{profile.name}/"
    docs = [
        d
        for path, text in files.items()
        if path.startswith(root) and path.endswith(".yaml")
        for d in yaml.safe_load_all(text)
        if d
    ]
    kinds = {d["kind"]: d for d in docs}
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 2
    for doc in [*monitors, kinds["PrometheusRule"]]:
        assert doc["metadata"]["labels"]["release"] == "kps", doc["metadata"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"]
    others = [d for d in docs if d["kind"] not in ("ServiceMonitor", "PrometheusRule")]
    assert any(d["kind"] == "Deployment" for d in others)
    for doc in others:
        assert "release" not in (doc.get("metadata", {}).get("labels") or {}), doc["kind"]
