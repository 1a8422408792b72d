"""The Kubernetes projection: the neutral Plan in Kubernetes' spellings (sizes like "8Gi", labels, probes,
policies, the router's discovery by label), and the manifest table.

The table is the one list of manifests: each row a file, its template and when the profile gets it. render()
writes the rows that apply, and the kustomization lists the same rows as its resources. A new Kubernetes
object is one row here and one template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from deploy.plan.constants import (
    COMPONENT_LABEL,
    CONTAINER_PORT,
    ENGINE_NAME,
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    PART_OF,
    PART_OF_LABEL,
    ROUTER_NAME,
    VERSION_LABEL,
)
from deploy.plan.frozen import Frozen
from deploy.plan.model import EgressPlan, Plan
from deploy.plan.monitoring import ENGINE_JOB, ROUTER_JOB
from deploy.plan.router import PRESTOP_SECONDS

CPUS_PER_GPU = 4  # the CPU request per GPU when the profile names none: tokenizing, images, the API server
CPUS_WITHOUT_GPU = 2
FETCH_MEMORY, FETCH_CPU = "2Gi", "1"  # the fetch step: a streamed download, hashing as it goes
GRACE_MARGIN_SECONDS = 10  # after preStop and vLLM's drain, before SIGKILL
# The driver's major version as NVIDIA GPU feature discovery labels GPU nodes (k8s-device-plugin,
# internal/lm/nvml.go): since v0.15 both, the second marked deprecated; before, only the second.
DRIVER_MAJOR_LABELS = ("nvidia.com/cuda.driver-version.major", "nvidia.com/cuda.driver.major")


class IngressRule(Frozen):
    from_labels: dict[str, str] | None  # pods (same namespace) allowed in; None: any pod
    from_namespace: str | None = None  # instead: every pod of that namespace (Prometheus')
    ports: list[str]  # named container ports


class NodeRequirement(Frozen):
    """One matchExpression of a required node affinity."""

    key: str
    operator: Literal["In", "Gt"]
    values: list[str]


class NetworkPolicyPlan(Frozen):
    name: str
    comment: str
    selector: dict[str, str]  # the pods this policy covers
    ingress: list[IngressRule]
    egress: EgressPlan | None  # engine pods only: they fetch image URLs


class ServiceMonitorPlan(Frozen):
    name: str
    job: str  # the job label its targets get, the same as compose's scrape jobs
    selector: dict[str, str]  # the Service it scrapes
    port: str  # that Service's named port


class RouterObjects(Frozen):
    """The router's Deployment, Service, ServiceAccount and Role."""

    object_name: str
    labels: dict[str, str]
    selector: dict[str, str]
    argv: list[str]  # service discovery of the engine pods by label, then the router's own flags
    pull_policy: str  # the router image is always built here: see pull_policy()


class Manifest(Frozen):
    file: str  # beside the kustomization, listed in its resources
    template: str
    note: str | None = None  # a comment above its line in the kustomization


class KubernetesPlan(Frozen):
    object_name: str  # DNS-1123: the profile's name without "_"
    namespace: str
    namespace_labels: dict[str, str]
    replicas: int
    engine_pull_policy: str  # see pull_policy()
    engine_service_name: str  # the engines' Service: the public one without a router, internal behind it
    engine_service_type: str  # ClusterIP behind a router
    engine_service_port: int  # the router reaches the engines on the container port
    rolling: bool  # RollingUpdate and a PodDisruptionBudget where most_replicas() > 1, else Recreate
    prestop_seconds: int  # endpoints drop the pod before SIGTERM reaches vLLM
    termination_grace_seconds: int
    labels: dict[str, str]
    selector: dict[str, str]
    secret_name: str
    pvc_name: str | None
    storage_class: str | None
    storage_size: str
    storage_access_mode: str
    node_selector: dict[str, str]
    # Required node affinity: a node matches a term when it meets all of its requirements, and any one term will do.
    node_selector_terms: list[list[NodeRequirement]]
    min_driver_major: int | None  # spelled in node_selector_terms, a term per GFD driver label; None: no driver need
    tolerations: list[dict[str, Any]]
    runtime_class_name: str | None
    service_type: str
    network_policies: list[NetworkPolicyPlan]
    create_namespace: bool
    memory_request: str
    memory_limit: str
    shm_size: str
    cpu_request: str
    cpu_limit: str | None  # NB: none unless the profile caps cpus: a CFS quota throttles vLLM's busy loop
    fetch_memory: str  # the fetch step's init container: a download streams, it holds no model in memory
    fetch_cpu: str
    edge_configmap: str  # kustomize appends its own content hash to ConfigMap names
    generation_configmap: str | None
    dashboard_configmap: str | None
    router: RouterObjects | None
    service_monitors: list[ServiceMonitorPlan]
    operator_labels: dict[str, str]  # the ServiceMonitors' and the PrometheusRule's: ours and the profile's
    scale_query: str | None  # the autoscaler's: requests waiting in this namespace's engines
    manifests: list[Manifest]  # the table's rows this profile gets, in the kustomization's order


@dataclass(frozen=True)
class Row:
    manifest: Manifest
    condition: Callable[[Plan, KubernetesPlan], bool]
    when: str  # the condition in words


def _always(plan: Plan, kube: KubernetesPlan) -> bool:
    return True


def _row(file: str, condition: Callable[[Plan, KubernetesPlan], bool], when: str, note: str | None = None) -> Row:
    manifest = Manifest(file=f"{file}.yaml", template=f"k8s/{file}.yaml.j2", note=note)
    return Row(manifest=manifest, condition=condition, when=when)


def _operator(plan: Plan, kube: KubernetesPlan) -> bool:
    return plan.monitoring is not None and plan.monitoring.prometheus_operator


def _autoscaler(kind: str) -> Callable[[Plan, KubernetesPlan], bool]:
    return lambda plan, kube: plan.monitoring is not None and plan.monitoring.autoscaler == kind


# The manifest table, in the kustomization's order.
MANIFESTS = [
    _row("namespace", lambda plan, kube: kube.create_namespace, "kubernetes.create-namespace"),
    _row("deployment", _always, "always"),
    _row("service", _always, "always"),
    _row("pvc", lambda plan, kube: kube.pvc_name is not None, "hub storage"),
    _row("networkpolicy", _always, "always"),
    _row("router-deployment", lambda plan, kube: plan.router is not None, "the router is on"),
    _row("router-service", lambda plan, kube: plan.router is not None, "the router is on"),
    _row("router-rbac", lambda plan, kube: plan.router is not None, "the router is on"),
    _row("pdb", lambda plan, kube: kube.rolling, "more than one replica, or an autoscaler up to more than one"),
    _row(
        "servicemonitor",
        _operator,
        "monitoring with prometheus-operator",
        note="prometheus-operator's CRDs (monitoring.coreos.com) must be installed.",
    ),
    _row("prometheusrule", _operator, "monitoring with prometheus-operator"),
    _row(
        "scaledobject",
        _autoscaler("keda"),
        "monitoring with autoscaler keda",
        note="KEDA's CRDs (keda.sh) must be installed.",
    ),
    _row(
        "hpa",
        _autoscaler("hpa"),
        "monitoring with autoscaler hpa",
        note="Needs prometheus-adapter serving vllm_num_requests_waiting as a pods metric.",
    ),
]


def labels(name: str, instance: str, version: str, component: str) -> dict[str, str]:
    return {
        NAME_LABEL: name,
        INSTANCE_LABEL: instance,
        VERSION_LABEL: version,
        COMPONENT_LABEL: component,
        PART_OF_LABEL: PART_OF,
        MANAGED_BY_LABEL: PART_OF,
    }


def selector(found: dict[str, str]) -> dict[str, str]:
    """The labels that pick a component's pods: its name and instance (never its version)."""
    return {k: v for k, v in found.items() if k in (NAME_LABEL, INSTANCE_LABEL)}


def pull_policy(plan: Plan, built: bool) -> str:
    """Never for an image built here and loaded onto the nodes by hand (kubernetes.local-images): a node without
    it fails at once with ErrImageNeverPull instead of trying to pull localhost/…. Else IfNotPresent: tags never
    move (a content hash, a release tag), so a node that has the image need not ask the registry again."""
    return "Never" if built and plan.image.local else "IfNotPresent"


def _router(plan: Plan, object_name: str, engine_selector: dict[str, str]) -> RouterObjects | None:
    if plan.router is None:
        return None
    found = labels(ROUTER_NAME, object_name, plan.router.version, "router")
    discovery = [
        "--service-discovery",
        "--selector",
        *(f"{k}={v}" for k, v in engine_selector.items()),
        "--service-discovery-port",
        str(CONTAINER_PORT),
        "--service-discovery-namespace",
        plan.cluster.namespace,
    ]
    return RouterObjects(
        object_name=f"{object_name}-router",
        labels=found,
        selector=selector(found),
        argv=[*discovery, *plan.router.argv],
        pull_policy=pull_policy(plan, built=True),
    )


def network_policies(
    plan: Plan, object_name: str, engine_selector: dict[str, str], router: RouterObjects | None
) -> list[NetworkPolicyPlan]:
    clients = plan.cluster.clients
    # Prometheus scrapes the engines' /metrics on the server port, from its own namespace.
    scrapers = (
        [IngressRule(from_labels=None, from_namespace=plan.cluster.prometheus_namespace, ports=["http"])]
        if plan.monitoring and (router or clients)
        else []
    )
    if router is None:
        return [
            NetworkPolicyPlan(
                name=object_name,
                selector=engine_selector,
                egress=plan.cluster.egress,
                comment="Only the server port is reachable"
                + (", and only from the listed clients" if clients else "")
                + "; everything else is dropped at the pod.",
                ingress=[IngressRule(from_labels=clients, ports=["http"]), *scrapers],
            )
        ]
    return [
        NetworkPolicyPlan(
            name=f"{object_name}-engine",
            comment="Engine pods: only the router reaches the server port.",
            selector=engine_selector,
            ingress=[IngressRule(from_labels=router.selector, ports=["http"]), *scrapers],
            egress=plan.cluster.egress,
        ),
        NetworkPolicyPlan(
            name=f"{object_name}-router",
            comment="The router: its port "
            + ("for the listed clients only" if clients else "for any pod")
            + ", and its metrics.",
            selector=router.selector,
            ingress=[
                IngressRule(from_labels=clients, ports=["http"]),
                IngressRule(from_labels=None, ports=["metrics"]),
            ],
            egress=None,
        ),
    ]


def service_monitors(
    plan: Plan, object_name: str, engine_selector: dict[str, str], router: RouterObjects | None
) -> list[ServiceMonitorPlan]:
    if plan.monitoring is None:
        return []
    found = [ServiceMonitorPlan(name=f"{object_name}-engine", job=ENGINE_JOB, selector=engine_selector, port="http")]
    if router:
        found.append(
            ServiceMonitorPlan(name=f"{object_name}-router", job=ROUTER_JOB, selector=router.selector, port="metrics")
        )
    return found


def node_selector_terms(affinity: dict[str, list[str]], min_driver_major: int | None) -> list[list[NodeRequirement]]:
    """The profile's node-affinity (label In values), and with a driver minimum one term per driver label name:
    terms are ORed, so a node labelled by an older or a newer GFD qualifies, and each keeps the profile's."""
    wanted = [NodeRequirement(key=label, operator="In", values=values) for label, values in affinity.items()]
    if min_driver_major is None:
        return [wanted] if wanted else []
    # NB: Gt compares the label as an integer; the driver's major is what GFD labels separately.
    return [
        [*wanted, NodeRequirement(key=label, operator="Gt", values=[str(min_driver_major - 1)])]
        for label in DRIVER_MAJOR_LABELS
    ]


def most_replicas(plan: Plan) -> int:
    """The most engine pods there can be: the replicas, or an autoscaler's maximum above them."""
    if plan.monitoring is not None and plan.monitoring.autoscaler != "none":
        return max(plan.replicas, plan.monitoring.max_replicas)
    return plan.replicas


def kubernetes_plan(plan: Plan) -> KubernetesPlan:
    c = plan.cluster
    object_name = plan.name.replace("_", "-")  # NB: Kubernetes object names are DNS-1123: no "_"
    engine_labels = labels(ENGINE_NAME, object_name, plan.image.vllm_version, "inference-server")
    engine_selector = selector(engine_labels)
    router = _router(plan, object_name, engine_selector)
    monitoring = plan.monitoring
    kube = KubernetesPlan(
        object_name=object_name,
        namespace=c.namespace,
        namespace_labels={PART_OF_LABEL: PART_OF},
        replicas=plan.replicas,
        engine_pull_policy=pull_policy(plan, built=plan.image.build),
        engine_service_name=f"{object_name}-engine" if router else object_name,
        engine_service_type="ClusterIP" if router else c.service_type,
        engine_service_port=CONTAINER_PORT if router else plan.port,
        # NB: from the most pods, not the replicas: once scaled out, Recreate would take every pod down at once.
        rolling=most_replicas(plan) > 1,
        prestop_seconds=PRESTOP_SECONDS,
        # NB: preStop, then vLLM drains for --shutdown-timeout, then a margin before SIGKILL.
        termination_grace_seconds=PRESTOP_SECONDS + plan.drain_seconds + GRACE_MARGIN_SECONDS,
        labels=engine_labels,
        selector=engine_selector,
        secret_name=f"{object_name}-secrets",
        pvc_name=f"{object_name}-models" if plan.storage.kind == "hub" else None,
        storage_class=c.storage_class,
        storage_size=f"{c.storage_size_gib}Gi",
        storage_access_mode=c.storage_access_mode,
        node_selector=c.node_selector,
        node_selector_terms=node_selector_terms(c.node_affinity, c.min_driver_major),
        min_driver_major=c.min_driver_major,
        tolerations=c.tolerations,
        runtime_class_name=c.runtime_class_name,
        service_type=c.service_type,
        network_policies=network_policies(plan, object_name, engine_selector, router),
        create_namespace=c.create_namespace,
        # NB: request = limit makes the pod Guaranteed for memory: vLLM's footprint is fixed once loaded.
        memory_request=f"{plan.memory_gib}Gi",
        memory_limit=f"{plan.memory_gib}Gi",
        shm_size=f"{plan.shm_size_gib}Gi",
        cpu_request=str(plan.cpus or (CPUS_PER_GPU * plan.gpus or CPUS_WITHOUT_GPU)),
        cpu_limit=str(plan.cpus) if plan.cpus else None,
        fetch_memory=FETCH_MEMORY,
        fetch_cpu=FETCH_CPU,
        edge_configmap=f"{object_name}-edge",
        generation_configmap=f"{object_name}-generation" if plan.generation else None,
        dashboard_configmap=f"{object_name}-dashboard" if monitoring else None,
        router=router,
        service_monitors=service_monitors(plan, object_name, engine_selector, router),
        # NB: kube-prometheus-stack's Prometheus selects monitors and rules by label (release: <its release>).
        operator_labels={**engine_labels, **(monitoring.operator_labels if monitoring else {})},
        scale_query=(
            f'sum(vllm:num_requests_waiting{{namespace="{c.namespace}",job="{ENGINE_JOB}"}})' if monitoring else None
        ),
        manifests=[],
    )
    return kube.model_copy(update={"manifests": [row.manifest for row in MANIFESTS if row.condition(plan, kube)]})
