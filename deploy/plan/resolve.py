"""`resolve(profile) -> Plan`: pure; every derived value computed once, by one planner per part, composed here."""

from __future__ import annotations

from deploy.plan.constants import CONTAINER_PORT, TMP_DIR, WRITABLE_CACHE_DIR
from deploy.plan.engine import (
    API_KEY_VARIABLE,
    ENTRYPOINT,
    container_environment,
    edge_plan,
    engine_flags,
    local_endpoint,
    plan_warnings,
    serve_args,
)
from deploy.plan.fetch import fetch_plan
from deploy.plan.generation import generation_plan, vision_plan
from deploy.plan.image import image_plan
from deploy.plan.model import Plan
from deploy.plan.monitoring import monitoring
from deploy.plan.parts import (
    cluster_settings,
    engine_settings,
    health_command,
    health_plan,
    secrets,
    smoke_plan,
    storage_plan,
)
from deploy.plan.router import engine_environment, instances, router
from deploy.spec import Profile, gpu_count


def resolve(profile: Profile) -> Plan:
    storage = storage_plan(profile)
    image = image_plan(profile)
    health = health_plan(profile)
    served = profile.model.served_name or profile.model.source
    # A host directory is loaded from its mount point; a hub id or the image's tiny model by its own name.
    model = storage.container_path if storage.kind == "host" and storage.container_path else profile.model.source
    flags = engine_flags(profile)
    generation = generation_plan(profile)
    vision = vision_plan(profile)
    copies = instances(profile)
    router_plan = router(profile)
    server, resources = profile.server, profile.resources
    return Plan(
        name=profile.name,
        description=profile.description,
        twin_of=profile.twin_of,
        device=profile.image.device,
        image=image,
        model=model,
        served_model_name=served,
        engine=engine_settings(profile),
        engine_flags=flags,
        entrypoint=list(ENTRYPOINT),
        argv=serve_args(model, served, "0.0.0.0", CONTAINER_PORT, flags, generation.directory if generation else None),
        api_key_variable=API_KEY_VARIABLE,
        environment={**container_environment(profile, storage), **engine_environment(profile)},
        secrets=secrets(profile),
        writable_dirs={"tmp": TMP_DIR, "cache": WRITABLE_CACHE_DIR},
        bind_address=server.bind_address,
        local_endpoint=local_endpoint(server.bind_address, server.port),
        port=server.port,
        container_port=CONTAINER_PORT,
        gpus=gpu_count(profile),
        shm_size_gib=resources.shm_size_gib,
        memory_gib=resources.memory_gib,
        cpus=resources.cpus,
        storage=storage,
        fetch=fetch_plan(profile, storage, image),
        health=health,
        health_command=health_command(image.python, CONTAINER_PORT, health),
        replicas=profile.replicas,
        instances=copies,
        router=router_plan,
        drain_seconds=profile.engine.shutdown_timeout_seconds,
        cluster=cluster_settings(profile, image.cuda),
        smoke=smoke_plan(profile, vision),
        warnings=plan_warnings(profile, storage.kind),
        generation=generation,
        edge=edge_plan(),
        vision=vision,
        monitoring=monitoring(profile, copies, router_plan),
    )
