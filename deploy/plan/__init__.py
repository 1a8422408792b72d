"""Everything derived from a profile, computed once and target-neutral: the vLLM argument list above all.

`resolve(profile) -> Plan` is pure. Templates and the runtime see only the Plan (and deploy/targets/' projections
of it), so nothing downstream maps a setting to a flag, picks a default or parses an argument list back.

model (the frozen types) · constants (ports, paths, names, label keys) · engine (flags, argv, environment) ·
image (what runs, what is built, the build recipe's digest) · parts (storage, secrets, health, settings, smoke,
cluster settings) · router (the engine copies, the router) · monitoring (rules, dashboard, scrape targets) ·
generation (the server's generation config, the image estimate) · memory (GPU memory arithmetic) · resolve
(composes the planners)
"""

from deploy.plan.constants import CONTAINER_PORT
from deploy.plan.engine import (
    API_KEY_VARIABLE,
    ENTRYPOINT,
    engine_flags,
    host_command,
    host_environment,
    serve_args,
)
from deploy.plan.image import build_recipe_digest
from deploy.plan.model import Plan
from deploy.plan.resolve import resolve
from deploy.spec import device_facts

__all__ = [
    "API_KEY_VARIABLE",
    "CONTAINER_PORT",
    "ENTRYPOINT",
    "Plan",
    "build_recipe_digest",
    "device_facts",
    "engine_flags",
    "host_command",
    "host_environment",
    "resolve",
    "serve_args",
]
