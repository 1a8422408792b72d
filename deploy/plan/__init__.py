"""Everything derived from a profile, computed once and target-neutral: the vLLM argument list above all.

`resolve(profile) -> Plan` is pure. Templates and the runtime see only the Plan (and deploy/targets/' projections
of it), so nothing downstream maps a setting to a flag, picks a default or parses an argument list back.

Each module imports only those listed before it.

constants   ports, container paths, names and label keys: each written once
frozen      the base of the Plan's types: frozen records, keyword fields, no validation (derived, not input)
model       the frozen types of the Plan (sizes in GiB, health checks as commands, no target's spelling)
memory      GPU memory arithmetic (weights, KV cache, what fits)
engine      vLLM's flags, its argument list (built once) and its environment
generation  the server's generation config, the vision estimate
image       what runs, what is built, the build recipe's digest
fetch       hub storage's fetch step: Hugging Face's client into the cache volume once, before the engines
parts       small planners: storage, secrets, health, engine settings, smoke, cluster settings
router      the engine copies (instances) and vLLM's router in front of them
monitoring  scrape targets, recording and alerting rules, the dashboard, autoscaling
resolve     resolve(profile) -> Plan: composes the planners above
"""

from deploy.facts import device_facts
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
