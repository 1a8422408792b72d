"""Prometheus' own checker over every rendered monitoring file: the compose config with its rules, the
PrometheusRule's groups, and every PromQL expression of the dashboard (Debian's promtool 2.42, `make prometheus`)."""

from __future__ import annotations

import json
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


# The engine-down alerts under `promtool test rules`, on the rules rendered from tiny-cpu-x2 with a GPU's load
# budget (qwen2_5-vl-7b's): minutes of loading, during which vLLM's /metrics does not answer yet.
GPU_BUDGET_SECONDS = 1200
STEP_SECONDS = 5  # tiny-cpu-x2's scrape and evaluation interval
DOWN_SECONDS = 20  # tiny-cpu-x2's monitoring.alerts.engine-down-seconds
# A target's labels as compose's static config gives them, and as a ServiceMonitor gives them for two pods.
COMPOSE_TARGET = {"job": "vllm-engine", "instance": "vllm-0:8000"}
POD = {"job": "vllm-engine", "namespace": "vllm", "service": "tiny-cpu-x2-engine", "endpoint": "http"}
OLD_POD = {**POD, "instance": "10.1.0.7:8000", "pod": "tiny-cpu-x2-6d9f-abcde"}
NEW_POD = {**POD, "instance": "10.1.0.9:8000", "pod": "tiny-cpu-x2-6d9f-fghij"}


def samples(*runs: tuple[int, int]) -> str:
    """promtool's series notation for runs of (value, seconds) at the scrape interval."""
    return " ".join(f"{value}x{seconds // STEP_SECONDS - 1}" for value, seconds in runs)


def series(labels: dict[str, str], *runs: tuple[int, int]) -> dict[str, str]:
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"up{{{selector}}}", "values": samples(*runs)}


@pytest.fixture(scope="module", params=["compose", "kubernetes"])
def gpu_budget_rules(request, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """The engine-down rules as rendered for compose's Prometheus or as the PrometheusRule, and each alert."""
    from deploy.render import render

    base = load_profile("tiny-cpu-x2")
    profile = base.model_copy(
        update={"kubernetes": base.kubernetes.model_copy(update={"load_budget_seconds": GPU_BUDGET_SECONDS})}
    )
    plan = resolve(profile)
    assert plan.monitoring is not None and plan.monitoring.scrape_interval == f"{STEP_SECONDS}s"
    assert profile.monitoring.alerts.engine_down_seconds == DOWN_SECONDS
    files = render(plan)
    if request.param == "compose":
        groups = yaml.safe_load(files[f"compose/{plan.name}/prometheus/rules.yml"])
    else:
        groups = yaml.safe_load(files[f"k8s/{plan.name}/prometheusrule.yaml"])["spec"]
    path = tmp_path_factory.mktemp(request.param) / "rules.yml"
    path.write_text(yaml.safe_dump(groups), encoding="utf-8")
    alerts = {r["alert"]: r for g in groups["groups"] for r in g["rules"] if "alert" in r}
    return path, alerts


def expect(alerts: dict[str, dict], name: str, labels: dict[str, str]) -> dict:
    """A firing alert as promtool reports it: the target's labels, the rule's, its annotations expanded."""
    rule = alerts[name]
    annotations = {k: v.replace("{{ $labels.instance }}", labels["instance"]) for k, v in rule["annotations"].items()}
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}


def run_alert_tests(rules: Path, input_series: list[dict], checks: list[tuple[int, str, list[dict]]]) -> None:
    test_file = rules.parent / f"test-{abs(hash(json.dumps(input_series, sort_keys=True)))}.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [rules.name],
                "evaluation_interval": f"{STEP_SECONDS}s",
                "tests": [
                    {
                        "interval": f"{STEP_SECONDS}s",
                        "input_series": input_series,
                        "alert_rule_test": [
                            {"eval_time": f"{at}s", "alertname": name, "exp_alerts": expected}
                            for at, name, expected in checks
                        ],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def quiet(*times: int) -> list[tuple[int, str, list[dict]]]:
    return [(at, name, []) for at in times for name in ("VllmEngineDown", "VllmEngineNotReady")]


def test_a_normal_start_shorter_than_the_budget_alerts_nothing(gpu_budget_rules):
    """Loading for 1100 s of a 1200 s budget (no /metrics meanwhile), then serving."""
    rules, _ = gpu_budget_rules
    start = GPU_BUDGET_SECONDS - 100
    run_alert_tests(
        rules,
        [series(COMPOSE_TARGET, (0, start), (1, 600))],
        quiet(DOWN_SECONDS * 2, 600, start - STEP_SECONDS, start + 60, GPU_BUDGET_SECONDS + 60, start + 590),
    )


def test_an_engine_that_was_up_and_went_down_alerts_after_engine_down_seconds(gpu_budget_rules):
    """Up for 300 s, then no answer: pending for engine-down-seconds, then firing; not 'never ready'."""
    rules, alerts = gpu_budget_rules
    down_at = 300
    run_alert_tests(
        rules,
        [series(COMPOSE_TARGET, (1, down_at), (0, 600))],
        [
            (down_at + DOWN_SECONDS - 2 * STEP_SECONDS, "VllmEngineDown", []),
            (
                down_at + DOWN_SECONDS + STEP_SECONDS,
                "VllmEngineDown",
                [expect(alerts, "VllmEngineDown", COMPOSE_TARGET)],
            ),
            (down_at + 590, "VllmEngineDown", [expect(alerts, "VllmEngineDown", COMPOSE_TARGET)]),
            (down_at + 590, "VllmEngineNotReady", []),
        ],
    )


def test_an_engine_never_up_within_the_budget_alerts_not_ready(gpu_budget_rules):
    """No answer at all: silent for the whole load budget, then VllmEngineNotReady (never VllmEngineDown)."""
    rules, alerts = gpu_budget_rules
    run_alert_tests(
        rules,
        [series(COMPOSE_TARGET, (0, GPU_BUDGET_SECONDS + 300))],
        [
            (GPU_BUDGET_SECONDS - STEP_SECONDS, "VllmEngineNotReady", []),
            (
                GPU_BUDGET_SECONDS + 2 * STEP_SECONDS,
                "VllmEngineNotReady",
                [expect(alerts, "VllmEngineNotReady", COMPOSE_TARGET)],
            ),
            (GPU_BUDGET_SECONDS + 2 * STEP_SECONDS, "VllmEngineDown", []),
            (GPU_BUDGET_SECONDS + 290, "VllmEngineDown", []),
        ],
    )


def test_a_lost_engine_that_never_comes_back_stays_alerted_without_a_gap(gpu_budget_rules):
    """Lost, then down beyond the budget: VllmEngineDown holds until VllmEngineNotReady fires, both meanwhile."""
    rules, alerts = gpu_budget_rules
    down_at = 300
    handover = down_at + GPU_BUDGET_SECONDS + STEP_SECONDS  # NotReady has held for the budget; Down still on
    run_alert_tests(
        rules,
        [series(COMPOSE_TARGET, (1, down_at), (0, GPU_BUDGET_SECONDS + 300))],
        [
            (handover, "VllmEngineDown", [expect(alerts, "VllmEngineDown", COMPOSE_TARGET)]),
            (handover, "VllmEngineNotReady", [expect(alerts, "VllmEngineNotReady", COMPOSE_TARGET)]),
            (handover + DOWN_SECONDS + STEP_SECONDS, "VllmEngineDown", []),
            (
                handover + DOWN_SECONDS + STEP_SECONDS,
                "VllmEngineNotReady",
                [expect(alerts, "VllmEngineNotReady", COMPOSE_TARGET)],
            ),
        ],
    )


def test_a_replacement_pod_is_a_start_and_a_restart_in_the_same_pod_a_loss(gpu_budget_rules):
    """Kubernetes: a rollout's new pod is a new target (its own pod and instance labels) that loads in silence
    while the old one leaves; a container restarted in place keeps its labels, so its reload is a loss."""
    rules, alerts = gpu_budget_rules
    load = 900
    run_alert_tests(
        rules,
        [
            # The old pod serves, then leaves the endpoints: its series ends (stale), never 0.
            {"series": series(OLD_POD, (1, 600))["series"], "values": samples((1, 600)) + " " + "_x200"},
            series(NEW_POD, (0, load), (1, 600)),
        ],
        quiet(DOWN_SECONDS * 2, load - STEP_SECONDS, load + 60, load + 590),
    )
    run_alert_tests(
        rules,
        [series(OLD_POD, (1, 300), (0, load), (1, 300))],
        [
            (300 + DOWN_SECONDS + STEP_SECONDS, "VllmEngineDown", [expect(alerts, "VllmEngineDown", OLD_POD)]),
            (300 + load + 60, "VllmEngineDown", []),
            (300 + load + 60, "VllmEngineNotReady", []),
        ],
    )
