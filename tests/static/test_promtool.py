"""Prometheus' own checker over every rendered monitoring file: the compose config with its rules, the
PrometheusRule's groups, and every PromQL expression of the dashboard (Debian's promtool 2.42, `make prometheus`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.plan import resolve
from deploy.spec import builtin_names, load_profile
from tests.conftest import FIXTURE_PROFILES, REPO, render_into

pytestmark = pytest.mark.static
PROMTOOL = REPO / ".work" / "prometheus" / "usr" / "bin" / "promtool"
PROFILES = builtin_names() + [str(p) for p in sorted(FIXTURE_PROFILES.glob("*.yaml"))]
MONITORED = [ref for ref in PROFILES if resolve(load_profile(ref)).monitoring]


def promtool(*args: str | Path) -> subprocess.CompletedProcess:
    if not PROMTOOL.exists():
        # NB: a failure, not a skip: a validator that silently did not run would read as a pass.
        pytest.fail(
            f"promtool is missing ({PROMTOOL}): run `make prometheus` "
            "(make test, make test-fast, make check and make validate-rendered do)"
        )
    return subprocess.run([str(PROMTOOL), *map(str, args)], capture_output=True, text=True, timeout=60)


def name_of(ref: str) -> str:
    return resolve(load_profile(ref)).name


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return render_into(tmp_path_factory.mktemp("rendered"), MONITORED)


def test_monitoring_is_on_somewhere():
    """Built-in tiny-cpu-x2 and the fixtures exercise it; otherwise everything below checks nothing."""
    assert "tiny-cpu-x2" in MONITORED and len(MONITORED) >= 2, MONITORED


@pytest.mark.parametrize("ref", MONITORED)
def test_compose_config_and_rules_pass_promtool(out, ref):
    folder = out / "compose" / name_of(ref) / "prometheus"
    config = promtool("check", "config", folder / "prometheus.yml")  # also checks the rule_files it names
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS" in config.stdout + config.stderr and "rules.yml" in config.stdout + config.stderr
    rules = promtool("check", "rules", folder / "rules.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr


@pytest.mark.parametrize("ref", MONITORED)
def test_prometheus_rule_groups_pass_promtool(out, ref, tmp_path):
    plan = resolve(load_profile(ref))
    path = out / "k8s" / plan.name / "prometheusrule.yaml"
    assert plan.monitoring is not None, ref
    if not plan.monitoring.prometheus_operator:
        assert not path.exists()
        pytest.skip(f"{ref}: no prometheus-operator, no PrometheusRule rendered (checked it is absent)")
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))["spec"]
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = promtool("check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in spec["groups"])
    assert f"{count} rules found" in result.stdout, result.stdout


@pytest.mark.parametrize("ref", MONITORED)
def test_every_dashboard_and_rule_expression_parses(ref, tmp_path):
    """Each query the plan holds (the rules' and the dashboard's) as a recording rule: promtool parses it."""
    monitoring = resolve(load_profile(ref)).monitoring
    assert monitoring is not None, ref
    queries = monitoring.queries
    assert queries
    rules_file = tmp_path / "queries.yml"
    rules_file.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "queries",
                        "rules": [{"record": f"check:query_{i}", "expr": expr} for i, expr in enumerate(queries)],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    result = promtool("check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


@pytest.mark.parametrize(
    "broken",
    [
        "sum(rate(vllm:num_requests_waiting[5m]",  # unbalanced
        "histogram_quantile(0.95, vllm:e2e_request_latency_seconds_bucket[5m] by (le))",
    ],
)
def test_promtool_refuses_a_broken_expression(tmp_path, broken):
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"alert": "Broken", "expr": broken, "for": "1m"}]}]}),
        encoding="utf-8",
    )
    result = promtool("check", "rules", rules_file)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr, result.stdout + result.stderr
