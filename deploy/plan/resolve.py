"""`resolve(profile) -> Plan`: pure; every derived value computed once, here."""

from __future__ import annotations

import math

from deploy.facts import device_facts
from deploy.plan.engine import (
    API_KEY_VARIABLE,
    CONTAINER_PORT,
    CPUS_PER_GPU,
    CPUS_WITHOUT_GPU,
    ENTRYPOINT,
    HEALTH_PATH,
    HUB_CACHE_DIR,
    STARTUP_PROBE_PERIOD_SECONDS,
    WRITABLE_CACHE_DIR,
    container_environment,
    edge_plan,
    egress_plan,
    engine_flags,
    host_literal,
    local_endpoint,
    plan_warnings,
    serve_args,
)
from deploy.plan.generation import generation_plan, vision_plan
from deploy.plan.image import image_plan
from deploy.plan.model import (
    EngineSettings,
    HealthPlan,
    IngressRule,
    KubernetesPlan,
    NetworkPolicyPlan,
    Plan,
    SecretEnv,
    SmokePlan,
    StoragePlan,
)
from deploy.plan.monitoring import monitoring
from deploy.plan.router import PRESTOP_SECONDS, engine_environment, replicas, router, router_enabled
from deploy.spec import Profile, gpu_count, model_storage


def resolve(profile: Profile) -> Plan:
    facts = device_facts()[profile.image.device]
    kind = model_storage(profile)
    if kind == "host":
        storage = StoragePlan(kind=kind, host_path=profile.model.source, container_path=profile.model.source)
    elif kind == "hub":
        storage = StoragePlan(kind=kind, host_path=None, container_path=HUB_CACHE_DIR)
    else:
        storage = StoragePlan(kind=kind, host_path=None, container_path=None)
    image = image_plan(profile)
    served = profile.model.served_name or profile.model.source

    secrets = [SecretEnv(name=API_KEY_VARIABLE, source=profile.api_key.env, required=True)]
    if kind == "hub":
        secrets.append(SecretEnv(name="HF_TOKEN", source="HF_TOKEN", required=False))

    budget = profile.kubernetes.load_budget_seconds
    health = HealthPlan(
        path=HEALTH_PATH,
        interval_seconds=profile.server.health_interval_seconds,
        timeout_seconds=5,
        retries=3,
        start_period_seconds=budget,
        startup_period_seconds=STARTUP_PROBE_PERIOD_SECONDS,
        startup_failure_threshold=math.ceil(budget / STARTUP_PROBE_PERIOD_SECONDS),
        # NB: readiness reacts within ~30 s; liveness waits ~60 s before restarting a server that stopped answering.
        readiness_period_seconds=10,
        liveness_period_seconds=20,
        failure_threshold=3,
    )

    k8s_name = profile.name.replace("_", "-")  # NB: Kubernetes object names are DNS-1123: no "_"
    selector = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": k8s_name}
    labels = {
        **selector,
        "app.kubernetes.io/version": image.vllm_version,
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/part-of": "vllm-deploy",
        "app.kubernetes.io/managed-by": "vllm-deploy",
    }
    k = profile.kubernetes
    r = profile.resources
    e = profile.engine
    replica_plans = replicas(profile)
    router_labels = {
        "app.kubernetes.io/name": "vllm-router",
        "app.kubernetes.io/instance": k8s_name,
        "app.kubernetes.io/version": device_facts()["router"]["version"],
        "app.kubernetes.io/component": "router",
        "app.kubernetes.io/part-of": "vllm-deploy",
        "app.kubernetes.io/managed-by": "vllm-deploy",
    }
    engine_service = f"{k8s_name}-engine" if router_enabled(profile) else k8s_name
    router_plan = router(
        profile, selector, f"{k8s_name}-router", router_labels, [replica.url for replica in replica_plans]
    )
    shutdown = e.shutdown_timeout_seconds
    clients = dict(k.network_policy_from) if k.network_policy_from is not None else None
    # Prometheus scrapes the engines' /metrics on the server port, from its own namespace.
    scrapers = (
        [IngressRule(from_labels=None, from_namespace=profile.monitoring.prometheus_namespace, ports=["http"])]
        if profile.monitoring.enabled and (router_plan or clients)
        else []
    )
    if router_plan:
        policies = [
            NetworkPolicyPlan(
                name=f"{k8s_name}-engine",
                comment="Engine pods: only the router reaches the server port.",
                selector=selector,
                ingress=[IngressRule(from_labels=router_plan.selector, ports=["http"]), *scrapers],
                egress=egress_plan(profile),
            ),
            NetworkPolicyPlan(
                name=f"{k8s_name}-router",
                comment="The router: its port "
                + ("for the listed clients only" if clients else "for any pod")
                + ", and its metrics.",
                selector=router_plan.selector,
                ingress=[
                    IngressRule(from_labels=clients, ports=["http"]),
                    IngressRule(from_labels=None, ports=["metrics"]),
                ],
                egress=None,
            ),
        ]
    else:
        policies = [
            NetworkPolicyPlan(
                name=k8s_name,
                selector=selector,
                egress=egress_plan(profile),
                comment="Only the server port is reachable"
                + (", and only from the listed clients" if clients else "")
                + "; everything else is dropped at the pod.",
                ingress=[IngressRule(from_labels=clients, ports=["http"]), *scrapers],
            )
        ]
    kubernetes = KubernetesPlan(
        namespace=k.namespace,
        replicas=profile.replicas,
        engine_service_name=engine_service,
        engine_service_type="ClusterIP" if router_plan else k.service_type,
        engine_service_port=CONTAINER_PORT if router_plan else profile.server.port,
        rolling=profile.replicas > 1,
        prestop_seconds=PRESTOP_SECONDS,
        # NB: preStop, then vLLM drains for --shutdown-timeout, then a margin before SIGKILL.
        termination_grace_seconds=PRESTOP_SECONDS + shutdown + 10,
        labels=labels,
        selector=selector,
        object_name=k8s_name,
        secret_name=f"{k8s_name}-secrets",
        pvc_name=f"{k8s_name}-models" if kind == "hub" else None,
        storage_class=k.storage_class,
        storage_size=f"{k.storage_size_gib}Gi",
        node_selector=dict(k.node_selector),
        node_affinity={label: list(values) for label, values in k.node_affinity.items()},
        tolerations=[t.model_dump(exclude_none=True) for t in k.tolerations],
        runtime_class_name=k.runtime_class_name,
        service_type=k.service_type,
        network_policy_from=dict(k.network_policy_from) if k.network_policy_from is not None else None,
        egress=egress_plan(profile),
        network_policies=policies,
        # NB: request = limit makes the pod Guaranteed for memory: vLLM's footprint is fixed once loaded.
        memory_request=f"{r.memory_gib}Gi",
        memory_limit=f"{r.memory_gib}Gi",
        shm_size=f"{r.shm_size_gib}Gi",
        cpu_request=str(r.cpus or (CPUS_PER_GPU * gpu_count(profile) or CPUS_WITHOUT_GPU)),
        cpu_limit=str(r.cpus) if r.cpus else None,
        create_namespace=k.create_namespace,
    )
    generation = generation_plan(profile, k8s_name)
    vision = vision_plan(profile)
    smoke = SmokePlan(
        stop_token_ids=list(profile.smoke.stop_token_ids),
        prompt=profile.smoke.prompt,
        image_url=profile.smoke.image_url,
        max_images=e.limit_mm_per_prompt.get("image"),
        server_stop_token_ids=list(profile.generation.stop_token_ids) if profile.generation else [],
        image_tokens=vision.image_prompt_tokens if vision else None,
    )
    flags = engine_flags(profile)
    return Plan(
        name=profile.name,
        description=profile.description,
        device=profile.image.device,
        image=image,
        model=profile.model.source,
        served_model_name=served,
        engine=EngineSettings(
            dtype=e.dtype,
            max_model_len=e.max_model_len,
            gpu_memory_utilization=e.gpu_memory_utilization,
            tensor_parallel_size=e.tensor_parallel_size,
            max_num_seqs=e.max_num_seqs,
            trust_remote_code=e.trust_remote_code,
        ),
        engine_flags=flags,
        entrypoint=list(ENTRYPOINT),
        argv=serve_args(
            profile.model.source, served, "0.0.0.0", CONTAINER_PORT, flags, generation.directory if generation else None
        ),
        api_key_variable=API_KEY_VARIABLE,
        environment={**container_environment(profile, storage), **engine_environment(profile)},
        secrets=secrets,
        writable_dirs={"tmp": "/tmp", "cache": WRITABLE_CACHE_DIR},
        bind_address=profile.server.bind_address,
        published_port=f"{host_literal(profile.server.bind_address)}:{profile.server.port}:{CONTAINER_PORT}",
        local_endpoint=local_endpoint(profile.server.bind_address, profile.server.port),
        port=profile.server.port,
        container_port=CONTAINER_PORT,
        gpus=gpu_count(profile),
        shm_size=f"{r.shm_size_gib}g",
        memory_limit=f"{r.memory_gib}g",
        cpus=r.cpus,
        storage=storage,
        health=health,
        health_command=[
            "CMD",
            facts["python"],
            "-c",
            f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{HEALTH_PATH}', "
            f"timeout={health.timeout_seconds - 1})",
        ],
        kubernetes=kubernetes,
        replicas=replica_plans,
        router=router_plan,
        stop_grace_seconds=shutdown + 10,
        smoke=smoke,
        warnings=plan_warnings(profile, kind),
        generation=generation,
        edge=edge_plan(k8s_name),
        vision=vision,
        monitoring=monitoring(profile, replica_plans, router_plan, selector, k8s_name, host_literal, local_endpoint),
    )
