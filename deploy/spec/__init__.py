"""The profile: one YAML file per deployment, validated into a frozen `Profile`. Validated input only,
nothing derived; the data it checks against comes from deploy/facts. Each module imports only those
listed before it.

redact       values from the input in messages: shown when harmless, else only their kind
kube         Kubernetes names and tolerations, as the API server checks them
yaml_lines   bounded, safe YAML that remembers the line of every key
base         the patterns values must match (and their meaning in words), value types, the section class
names        the key variable, host paths, the registry, refused by the rule of the component that reads them
flags        the engine.extra-args guard: deny by default, from vLLM's option table and its classification
generation   the model-aware sections: generation defaults, processor settings
serving      the router in front of the replicas, the media the server fetches
schema       the model: the one place for defaults, bounds and descriptions
model_facts  what one image costs a model, and the checks that follow (architecture, processor keys)
messages     pydantic's errors as sentences, secrets never echoed
checks       cross-field checks, once every field has the right type
load         the entry points: read -> parse -> validate -> cross-field checks -> one UserError
variant      a copy of a built-in profile with some keys changed (tests, `make bench`)
"""

from deploy.spec.checks import default_storage, engine_image_built, gpu_count, model_storage, router_on
from deploy.spec.load import builtin_names, json_schema, load_profile, locate, parse_profile
from deploy.spec.schema import Profile

__all__ = [
    "Profile",
    "builtin_names",
    "default_storage",
    "engine_image_built",
    "gpu_count",
    "json_schema",
    "load_profile",
    "locate",
    "model_storage",
    "parse_profile",
    "router_on",
]
