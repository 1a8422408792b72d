"""The profile: one YAML file per deployment, validated into a frozen `Profile`.

base (patterns, value types, the section class) · schema (the model, defaults, bounds) · serving (router,
media) · generation (the model-aware sections) · flags (the extra-args guard, deny by default from vLLM's
option table) · names (the key variable, host paths, the registry, by the components' rules) · kube
(Kubernetes names and tolerations, as the API server checks them) · yaml_lines (bounded YAML with lines) ·
messages (errors as sentences, secrets never echoed) · model_facts (what an image costs,
deploy/data/models.yaml) · checks (cross-field) · load (entry points)
"""

from deploy.spec.checks import gpu_count, model_storage
from deploy.spec.load import builtin_names, json_schema, load_profile, locate, parse_profile
from deploy.spec.schema import Profile

__all__ = [
    "Profile",
    "builtin_names",
    "gpu_count",
    "json_schema",
    "load_profile",
    "locate",
    "model_storage",
    "parse_profile",
]
