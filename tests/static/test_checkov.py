"""An IaC scanner, checkov, over everything vllm-deploy renders, in one run:

- dockerfile: every rendered Dockerfile;
- kubernetes: what `kubectl apply -k k8s/<name>` would send, i.e. the real kustomize's build of each
  rendered directory (namespace applied, Secret generated; secrets.env copied from its example, as the
  deployment comment says), since the namespace lives in kustomization.yaml, not in the manifests;
- secrets: every rendered file (compose.yaml, .env.example, Dockerfiles, scripts) and the built
  manifests: no key, token or other credential is ever written into them.

checkov has no Docker Compose framework: compose files are covered by the secrets scan alone (and by
`docker compose config` in test_validators.py).

Checks that do not apply are skipped HERE, each with its reason; a check pointing at a real weakness
is not skipped but fixed in the templates. A deliberately bad Dockerfile, Deployment and compose file
ride in the same run and must fail, proving the scan really checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from deploy.plan import resolve
from deploy.render import render, write_files
from deploy.spec import builtin_names, load_profile
from tests.conftest import FIXTURE_PROFILES, kubectl, venv_tool

pytestmark = [pytest.mark.static, pytest.mark.slow]  # NB: checkov alone takes ~8 s to start
PROFILES = builtin_names() + [str(p) for p in sorted(FIXTURE_PROFILES.glob("*.yaml"))]
FRAMEWORKS = ("dockerfile", "kubernetes", "secrets")
CHECKOV_TIMEOUT_SECONDS = 300

# check id -> why it does not apply to what vllm-deploy renders. Nothing else may fail.
SKIPPED = {
    "CKV_DOCKER_2": "no image HEALTHCHECK: compose's healthcheck and the Deployment's startup/readiness/"
    "liveness probes check /health (Kubernetes ignores an image HEALTHCHECK); one definition, the plan's",
    "CKV_K8S_43": "images are pinned by tag, not digest: a built image's tag is the hash of its build inputs and "
    "it has no registry digest when `render` (pure, offline) runs; the official image by its release tag",
    "CKV_K8S_15": "imagePullPolicy IfNotPresent on purpose: tags never move (content hash, release); images loaded "
    "onto the nodes by hand (kubernetes.local-images, localhost/…) exist in no registry and run with Never, so "
    "Always could never start them",
    "CKV_K8S_11": "no CPU limit unless the profile caps resources.cpus: vLLM's engine loop busy-polls, and a CFS "
    "quota throttles it into latency spikes; the CPU request (4 per GPU, 2 on CPU) reserves the cores",
    "CKV_K8S_35": "the API key is an environment variable because vLLM reads it from VLLM_API_KEY only (argv, "
    "the sole alternative, is worse); a mounted file would still have to be exported into vLLM's env",
}

BAD_DOCKERFILE = """\
FROM ubuntu:latest
ADD https://example.invalid/tool.tar.gz /opt/
USER root
"""
# Checks the bad files must fail, and no rendered file of that kind may fail.
MUST_CATCH = {
    "dockerfile": {"CKV_DOCKER_7": "latest tag", "CKV_DOCKER_4": "ADD from a URL", "CKV_DOCKER_8": "USER root last"},
    "kubernetes": {"CKV_K8S_16": "privileged", "CKV_K8S_20": "allowPrivilegeEscalation"},
}


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def build_scan_tree(root: Path) -> dict[str, list[str]]:
    """The files checkov scans, laid out by kind; returns the scan-relative paths of each kind."""
    rendered = root / "rendered"
    scan = root / "scan"
    expected: dict[str, list[str]] = defaultdict(list)
    for ref in PROFILES:
        plan = resolve(load_profile(ref))
        write_files(render(plan), rendered)
        # The compose directory as rendered: compose.yaml, .env.example, Dockerfile, build scripts.
        shutil.copytree(rendered / "compose" / plan.name, scan / "compose" / plan.name)
        if plan.image.build:
            expected["dockerfile"].append(f"/compose/{plan.name}/Dockerfile")
        if plan.router:
            expected["dockerfile"].append(f"/compose/{plan.name}/Dockerfile.router")
        if plan.monitoring:
            expected["dockerfile"].append(f"/compose/{plan.name}/Dockerfile.prometheus")
        # The Kubernetes objects as `kubectl apply -k` would send them.
        k8s = rendered / "k8s" / plan.name
        shutil.copy(k8s / "secrets.env.example", k8s / "secrets.env")
        built = run([kubectl(), "kustomize", str(k8s)], timeout=120)
        assert built.returncode == 0, f"kubectl kustomize {k8s}: {built.stderr}"
        (scan / "k8s").mkdir(parents=True, exist_ok=True)
        (scan / "k8s" / f"{plan.name}.yaml").write_text(built.stdout, encoding="utf-8")
        expected["kubernetes"].append(f"/k8s/{plan.name}.yaml")

    # The deliberately bad files: derived from a good one, so only the injected faults differ.
    negative = scan / "negative"
    negative.mkdir()
    (negative / "Dockerfile").write_text(BAD_DOCKERFILE, encoding="utf-8")
    objects = list(yaml.safe_load_all((scan / "k8s" / "tiny-cpu.yaml").read_text(encoding="utf-8")))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["metadata"]["name"] = "bad"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"].update(privileged=True, allowPrivilegeEscalation=True, runAsUser=0)
    (negative / "deployment.yaml").write_text(yaml.safe_dump(deployment), encoding="utf-8")
    (negative / "compose.yaml").write_text(
        "services:\n  vllm:\n    environment:\n"
        '      AWS_ACCESS_KEY_ID: "AKIAIOSFODNN7EXAMPLE"\n'
        '      AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n',
        encoding="utf-8",
    )
    return expected


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkov")
    expected = build_scan_tree(root)
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",  # no call to the vendor's guidelines API (no network here)
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",  # no call to PyPI for a newer checkov
        "LOG_LEVEL": "WARNING",
    }
    env.pop("BC_API_KEY", None)
    started = time.monotonic()
    result = run(
        [
            venv_tool("checkov"),
            "-d",
            str(root / "scan"),
            "--framework",
            *FRAMEWORKS,
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        env=env,
        cwd=root,
        timeout=CHECKOV_TIMEOUT_SECONDS,
    )
    seconds = time.monotonic() - started
    assert result.returncode in (0, 1), f"checkov crashed ({result.returncode}):\n{result.stderr[-4000:]}"
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_framework = {r["check_type"]: r for r in reports if "check_type" in r}
    assert sorted(by_framework) == sorted(FRAMEWORKS), f"checkov reported {sorted(by_framework)}:\n{result.stderr}"
    return by_framework, expected, f"{seconds:.1f} s"


@pytest.fixture
def reports(scan, measured):
    by_framework, expected, seconds = scan
    measured["checkov scan (dockerfile, kubernetes, secrets; all profiles)"] = seconds
    return by_framework, expected


def is_negative(check: dict) -> bool:
    return check["file_path"].startswith("/negative/")


def failures(report: dict, negative: bool) -> list[dict]:
    return [c for c in report["results"]["failed_checks"] if is_negative(c) == negative]


def test_checkov_parsed_every_file(reports):
    by_framework, _ = reports
    for framework, report in by_framework.items():
        assert report["summary"]["parsing_errors"] == 0, (framework, report["results"].get("parsing_errors"))


@pytest.mark.parametrize("framework", ["dockerfile", "kubernetes"])
def test_checkov_scanned_every_rendered_file(reports, framework):
    """A plausible scan: each rendered Dockerfile / built manifest had many checks pass, not zero."""
    by_framework, expected = reports
    passed = defaultdict(set)
    for check in by_framework[framework]["results"]["passed_checks"]:
        passed[check["file_path"]].add(check["check_id"])
    assert expected[framework]
    for path in expected[framework]:
        assert len(passed[path]) >= 20, f"only {sorted(passed[path])} passed on {path}"


def test_rendered_files_have_no_failures_beyond_the_skip_list(reports):
    by_framework, _ = reports
    unexpected: dict[str, list[str]] = defaultdict(list)
    for report in by_framework.values():
        for check in failures(report, negative=False):
            if check["check_id"] not in SKIPPED:
                unexpected[f"{check['check_id']} ({check['check_name']})"].append(
                    f"{check['file_path']} {check['resource']}"
                )
    assert not unexpected, (
        "checkov failures in the rendered files (fix the templates; skip only what does not apply):\n"
        + "\n".join(f"{check}:\n    " + "\n    ".join(sorted(where)) for check, where in sorted(unexpected.items()))
    )


def test_every_skipped_check_still_applies(reports):
    """A skip whose check no longer fails anywhere has gone stale: remove it from SKIPPED."""
    by_framework, _ = reports
    failing = {c["check_id"] for r in by_framework.values() for c in failures(r, negative=False)}
    assert set(SKIPPED) <= failing, f"stale skips: {sorted(set(SKIPPED) - failing)}"


@pytest.mark.parametrize("framework", sorted(MUST_CATCH))
def test_checkov_catches_the_bad_files(reports, framework):
    by_framework, expected = reports
    report = by_framework[framework]
    caught = {c["check_id"] for c in failures(report, negative=True)}
    missing = set(MUST_CATCH[framework]) - caught
    assert not missing, f"checkov did not flag {sorted(missing)} in the bad {framework} file: {sorted(caught)}"
    # … while no rendered file of that kind fails any of them.
    for path in expected[framework]:
        failed = {c["check_id"] for c in report["results"]["failed_checks"] if c["file_path"] == path}
        assert not set(MUST_CATCH[framework]) & failed, (path, sorted(set(MUST_CATCH[framework]) & failed))


def test_checkov_catches_a_credential_in_a_compose_file(reports):
    by_framework, _ = reports
    caught = failures(by_framework["secrets"], negative=True)
    assert {c["file_path"] for c in caught} == {"/negative/compose.yaml"}
    assert "CKV_SECRET_2" in {c["check_id"] for c in caught}  # AWS access key
