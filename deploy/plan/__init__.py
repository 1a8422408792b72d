"""Everything derived from a profile, computed once: the vLLM argument list above all.

`resolve(profile) -> Plan` is pure. Templates and the runtime see only the Plan, so nothing downstream
maps a setting to a flag, picks a default or parses an argument list back.

model (the frozen types) · engine (flags, argv, environment) · image (what runs, what is built) · generation
(the server's generation config, the image estimate) · memory (GPU memory arithmetic) · resolve
"""

from deploy.facts import device_facts
from deploy.plan.engine import (
    API_KEY_VARIABLE,
    CONTAINER_PORT,
    ENTRYPOINT,
    engine_flags,
    host_command,
    host_environment,
    serve_args,
)
from deploy.plan.image import build_recipe_digest
from deploy.plan.model import Plan
from deploy.plan.resolve import resolve

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
