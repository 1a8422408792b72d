"""Monitoring, derived once: what Prometheus scrapes, the recording and alerting rules, the Grafana
dashboard, and the autoscaling settings. Compose and Kubernetes render the same rules from here.

Jobs are named the same everywhere (compose's scrape config and the ServiceMonitors' relabeling), so
one set of rules and one dashboard fit both: `vllm-engine` for the engines, `vllm-router` for the router.
"""

from __future__ import annotations

import hashlib
import json

from deploy.facts import device_facts
from deploy.paths import TEMPLATE_DIR
from deploy.plan.constants import PROMETHEUS_CONFIG_DIR, PROMETHEUS_PORT
from deploy.plan.engine import local_endpoint
from deploy.plan.model import InstancePlan, MonitoringPlan, Panel, PanelQuery, RouterPlan, Rule, RuleGroup
from deploy.spec import Profile

ENGINE_JOB = "vllm-engine"
ROUTER_JOB = "vllm-router"
WINDOW = "5m"  # rates and quantiles in the rules; the dashboard uses the grafana interval


def _quantile(q: float, histogram: str, window: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[{window}])))"


def engine_down_rules(profile: Profile) -> list[Rule]:
    """An engine that stopped answering, and one that never started answering within the load budget.

    vLLM answers /metrics only once the model is loaded, which takes the load budget's minutes on a GPU, so a
    plain `up == 0` for engine-down-seconds fires on every start. NB: a start is a target that has not been up
    yet: on Kubernetes a new or replacement pod is a new target (its own pod and instance labels), on compose
    the first start of a service. A target that answered within the lookback and does not now was lost: a crash,
    a hang, a container restart in the same pod (it then reloads for minutes, which is worth knowing). Matching
    the two sides on all their labels (the default) is matching the same target wherever it runs; on compose a
    target keeps its name across a recreate, so a rollout's reload reads as a loss too.
    The lookback is the load budget plus the loss's own `for`, so that a lost engine that does not come back
    stays alerted until VllmEngineNotReady (down for the whole budget) has taken over, with no gap between.
    Kubernetes scrapes a pod from when it has an address, so an image pull counts toward that budget."""
    a = profile.monitoring.alerts
    budget = profile.kubernetes.load_budget_seconds
    up = f'up{{job="{ENGINE_JOB}"}}'
    return [
        Rule(
            alert="VllmEngineDown",
            expr=f"{up} == 0 and max_over_time({up}[{budget + a.engine_down_seconds}s]) == 1",
            for_=f"{a.engine_down_seconds}s",
            severity="critical",
            summary="A vLLM engine stopped answering /metrics",
            description="{{ $labels.instance }} answered before and has not been scraped for a while: the process "
            "is down, hung or reloading after a restart.",
        ),
        Rule(
            alert="VllmEngineNotReady",
            expr=f"{up} == 0",
            for_=f"{budget}s",
            severity="critical",
            summary="A vLLM engine has not answered /metrics for its whole load budget",
            description=f"{{{{ $labels.instance }}}} has not answered for {budget} s "
            "(kubernetes.load-budget-seconds): the model does not load, or the engine never came back.",
        ),
    ]


def engine_hung_rules(profile: Profile) -> list[Rule]:
    """An engine whose API answered while its core was stuck (EngineWatch in the edge module). NB: the hung
    server exits server.hang-exit-seconds later and comes back as the same target, so the alert looks back
    over the hold (for-minutes) and fires at once: a hang that ended in a restart is still seen."""
    if not profile.server.hang_window_seconds:
        return []
    hold = f"{profile.monitoring.alerts.for_minutes}m"
    return [
        Rule(
            alert="VllmEngineHung",
            expr=f'max_over_time(vllm_deploy_engine_hung{{job="{ENGINE_JOB}"}}[{hold}]) == 1',
            for_="0s",
            severity="critical",
            summary="A vLLM engine made no progress and answered no probe",
            description="{{ $labels.instance }}'s engine was hung: its /health answered 503, and the server exits "
            "to be restarted (server.hang-exit-seconds).",
        )
    ]


def rules(profile: Profile, router: RouterPlan | None) -> list[RuleGroup]:
    a = profile.monitoring.alerts
    hold = f"{a.for_minutes}m"
    chat = f'job="{ENGINE_JOB}",handler="/v1/chat/completions"'
    recording = [
        Rule(record="vllm_deploy:requests_waiting:sum", expr="sum(vllm:num_requests_waiting)"),
        Rule(record="vllm_deploy:requests_running:sum", expr="sum(vllm:num_requests_running)"),
        Rule(record="vllm_deploy:ttft_seconds:p95", expr=_quantile(0.95, "vllm:time_to_first_token_seconds", WINDOW)),
        Rule(record="vllm_deploy:e2e_seconds:p95", expr=_quantile(0.95, "vllm:e2e_request_latency_seconds", WINDOW)),
        Rule(
            record="vllm_deploy:chat_error_ratio",
            expr=f'sum(rate(http_requests_total{{{chat},status="5xx"}}[{WINDOW}])) '
            f"/ clamp_min(sum(rate(http_requests_total{{{chat}}}[{WINDOW}])), 1e-9)",
        ),
    ]
    alerting = [
        *engine_down_rules(profile),
        *engine_hung_rules(profile),
        Rule(
            alert="VllmRequestsQueued",
            expr=f"vllm:num_requests_waiting > {a.queue_waiting_requests}",
            for_=hold,
            severity="warning",
            summary="Requests wait in a vLLM engine's queue",
            description="{{ $labels.instance }} has {{ $value }} requests waiting: add replicas or lower the load.",
        ),
        Rule(
            alert="VllmKvCacheNearlyFull",
            expr=f"vllm:kv_cache_usage_perc > {a.kv_cache_usage}",
            for_=hold,
            severity="warning",
            summary="A vLLM engine's KV cache is nearly full",
            description="{{ $labels.instance }} uses {{ $value | humanizePercentage }} of its KV cache: requests "
            "will queue or be preempted.",
        ),
        Rule(
            alert="VllmSlowFirstToken",
            expr=f"vllm_deploy:ttft_seconds:p95 > {a.ttft_p95_seconds}",
            for_=hold,
            severity="warning",
            summary="The 95th percentile time to first token is over budget",
            description=f"p95 time to first token is {{{{ $value }}}} s (budget {a.ttft_p95_seconds} s).",
        ),
        Rule(
            alert="VllmServerErrors",
            expr=f"vllm_deploy:chat_error_ratio > {a.error_ratio}",
            for_=hold,
            severity="critical",
            summary="Chat requests end in server errors",
            description=f"{{{{ $value | humanizePercentage }}}} of chat requests fail (budget {a.error_ratio}).",
        ),
    ]
    if router:
        alerting.append(
            Rule(
                alert="VllmRouterDown",
                expr=f'up{{job="{ROUTER_JOB}"}} == 0',
                for_=f"{a.engine_down_seconds}s",
                severity="critical",
                summary="vLLM's router stopped answering",
                description="No request reaches any engine.",
            )
        )
    return [
        RuleGroup(name="vllm-deploy.recording", rules=recording),
        RuleGroup(name="vllm-deploy.alerts", rules=alerting),
    ]


def panels(router: RouterPlan | None) -> list[Panel]:
    q = "$__rate_interval"
    found = [
        Panel(
            title="Requests running and waiting",
            unit="short",
            queries=[
                PanelQuery(legend="running {{instance}}", expr="vllm:num_requests_running"),
                PanelQuery(legend="waiting {{instance}}", expr="vllm:num_requests_waiting"),
            ],
        ),
        Panel(
            title="KV cache usage",
            unit="percentunit",
            queries=[PanelQuery(legend="{{instance}}", expr="vllm:kv_cache_usage_perc")],
        ),
        Panel(
            title="Time to first token",
            unit="s",
            queries=[
                PanelQuery(legend="p50", expr=_quantile(0.5, "vllm:time_to_first_token_seconds", q)),
                PanelQuery(legend="p95", expr=_quantile(0.95, "vllm:time_to_first_token_seconds", q)),
            ],
        ),
        Panel(
            title="Time per output token",
            unit="s",
            queries=[
                PanelQuery(legend="p50", expr=_quantile(0.5, "vllm:request_time_per_output_token_seconds", q)),
                PanelQuery(legend="p95", expr=_quantile(0.95, "vllm:request_time_per_output_token_seconds", q)),
            ],
        ),
        Panel(
            title="End-to-end request latency",
            unit="s",
            queries=[
                PanelQuery(legend="p50", expr=_quantile(0.5, "vllm:e2e_request_latency_seconds", q)),
                PanelQuery(legend="p95", expr=_quantile(0.95, "vllm:e2e_request_latency_seconds", q)),
            ],
        ),
        Panel(
            title="Tokens per second",
            unit="short",
            queries=[
                PanelQuery(legend="prompt", expr=f"sum(rate(vllm:prompt_tokens_total[{q}]))"),
                PanelQuery(legend="generated", expr=f"sum(rate(vllm:generation_tokens_total[{q}]))"),
            ],
        ),
        Panel(
            title="Images per second",
            unit="short",
            queries=[PanelQuery(legend="images", expr=f"sum(rate(vllm:mm_cache_queries_total[{q}]))")],
        ),
        Panel(
            title="Chat requests by status",
            unit="reqps",
            queries=[
                PanelQuery(
                    legend="{{status}}",
                    expr=f'sum by (status) (rate(http_requests_total{{handler="/v1/chat/completions"}}[{q}]))',
                )
            ],
        ),
    ]
    if router:
        found.append(
            Panel(
                title="Router: healthy workers and errors",
                unit="short",
                queries=[
                    PanelQuery(legend="active workers", expr="vllm_router_active_workers"),
                    PanelQuery(
                        legend="errors {{error_type}}",
                        expr=f"sum by (error_type) (rate(vllm_router_request_errors_total[{q}]))",
                    ),
                ],
            )
        )
    return found


def dashboard(name: str, found: list[Panel]) -> dict:
    """A Grafana dashboard (JSON model) of the panels, two a row, on a Prometheus data source to choose."""
    source = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "title": f"vLLM · {name}",
        "uid": f"vllm-deploy-{hashlib.sha256(name.encode()).hexdigest()[:10]}",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "tags": ["vllm", "vllm-deploy"],
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": [
            {
                "id": index + 1,
                "type": "timeseries",
                "title": panel.title,
                "datasource": source,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "targets": [
                    {"refId": chr(65 + i), "datasource": source, "expr": query.expr, "legendFormat": query.legend}
                    for i, query in enumerate(panel.queries)
                ],
            }
            for index, panel in enumerate(found)
        ],
    }


def status_queries(router: RouterPlan | None) -> dict[str, str]:
    """What `vllm-deploy status` shows, over the last minute (an instant query each)."""
    found = {
        "engines_up": f'sum(up{{job="{ENGINE_JOB}"}})',
        "engines": f'count(up{{job="{ENGINE_JOB}"}})',
        "engines_hung": f'sum(vllm_deploy_engine_hung{{job="{ENGINE_JOB}"}})',
        "running": "sum(vllm:num_requests_running)",
        "waiting": "sum(vllm:num_requests_waiting)",
        "kv_cache_usage": "max(vllm:kv_cache_usage_perc)",
        "prompt_tokens_per_second": "sum(rate(vllm:prompt_tokens_total[1m]))",
        "generated_tokens_per_second": "sum(rate(vllm:generation_tokens_total[1m]))",
        "requests_per_second": "sum(rate(vllm:e2e_request_latency_seconds_count[1m]))",
        "p95_e2e_seconds": _quantile(0.95, "vllm:e2e_request_latency_seconds", "1m"),
        "p95_ttft_seconds": _quantile(0.95, "vllm:time_to_first_token_seconds", "1m"),
    }
    if router:
        found["router_workers"] = "max(vllm_router_active_workers)"
    return found


def monitoring(profile: Profile, instances: list[InstancePlan], router: RouterPlan | None) -> MonitoringPlan | None:
    m = profile.monitoring
    if not m.enabled:
        return None
    facts = device_facts()["prometheus"]
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode())
    digest.update((TEMPLATE_DIR / "docker" / "Dockerfile.prometheus.j2").read_bytes())
    repository = profile.image.registry or device_facts()["local-registry"]
    groups = rules(profile, router)
    found = panels(router)
    targets = {ENGINE_JOB: [r.url.removeprefix("http://") for r in instances]}
    if router:
        targets[ROUTER_JOB] = [f"router:{router.metrics_port}"]
    status = status_queries(router)
    content = json.dumps([targets, [g.model_dump() for g in groups], m.scrape_interval_seconds], sort_keys=True)
    return MonitoringPlan(
        image=f"{repository}/prometheus:{digest.hexdigest()[:12]}",
        base=facts["base-image"],
        run_as_user=facts["run-as-user"],
        scrape_interval=f"{m.scrape_interval_seconds}s",
        retention=f"{m.retention_hours}h",
        argv=[
            f"--config.file={PROMETHEUS_CONFIG_DIR}/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={m.retention_hours}h",
            f"--web.listen-address=0.0.0.0:{PROMETHEUS_PORT}",
        ],
        health_command=[
            "python3",
            "-c",
            f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PROMETHEUS_PORT}/-/ready', timeout=4)",
        ],
        container_port=PROMETHEUS_PORT,
        host_port=m.port,
        local_endpoint=local_endpoint(profile.server.bind_address, m.port),
        targets=targets,
        config_digest=hashlib.sha256(content.encode()).hexdigest()[:10],
        rule_groups=groups,
        dashboard=dashboard(profile.name, found),
        queries=[r.expr for g in groups for r in g.rules]
        + [q.expr.replace("$__rate_interval", "1m") for p in found for q in p.queries]
        + list(status.values()),
        status_queries=status,
        prometheus_operator=m.prometheus_operator,
        operator_labels=dict(m.operator_labels),
        autoscaler=m.autoscaler,
        min_replicas=m.min_replicas,
        max_replicas=m.max_replicas,
        waiting_per_replica=m.waiting_per_replica,
        prometheus_url=m.prometheus_url,
    )
