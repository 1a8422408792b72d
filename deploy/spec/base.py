"""What every profile section shares: the patterns values must match (and their meaning in words), the
value types built on them, and the section base class (kebab-case keys, strict, frozen, no unknown key)."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from deploy.spec.kube import QUALIFIED_KEY_MAX, qualified_name_problem

Dtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
Modality = Literal["image", "video", "audio"]

# DNS-1123 label, for Kubernetes namespaces; DNS-1123 subdomain, for most other object names (apimachinery's
# validation.go, see deploy/spec/kube.py).
DNS_LABEL = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A compose project and image name; Kubernetes names take it with "_" turned into "-".
PROFILE_NAME = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"
ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
# A registry host (with an optional port) and path, lowercase, as image references require.
REGISTRY_PATH = r"^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
# An image reference as Docker's reference grammar has it, with a tag or a digest.
IMAGE_REFERENCE = (
    r"^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]{1,5})?/)?"
    r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
# Kubernetes label keys ([prefix/]name: IsQualifiedName) and values (IsValidLabelValue), apimachinery's patterns.
LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A Hugging Face repository id.
HUB_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$"
# A host name as allowed-media-domains compares it (vLLM matches the URL's hostname exactly).
HOST_NAME = r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
# An absolute path of plain characters: it is mounted, written into manifests and passed to a shell.
ABSOLUTE_PATH = r"^(/[A-Za-z0-9._+-]+)+/?$"

# What each pattern means, in words, for error messages.
PATTERN_WORDS = {
    DNS_LABEL: "lowercase letters, digits and '-', starting and ending with a letter or digit",
    DNS_SUBDOMAIN: "a Kubernetes name: lowercase letters, digits, '-' and '.', starting and ending with a letter "
    "or digit, e.g. fast-ssd or nvidia",
    PROFILE_NAME: "lowercase letters, digits, '-' and '_', starting and ending with a letter or digit",
    ENV_NAME: "an environment variable name: capital letters, digits and '_', e.g. VLLM_API_KEY",
    REGISTRY_PATH: "a registry host and path in lowercase, e.g. registry.example.com/ml or 127.0.0.1:5000/team",
    IMAGE_REFERENCE: "an image reference like vllm/vllm-openai:v0.32.0 or registry.example.com/vllm@sha256:…",
    LABEL_KEY: "a Kubernetes label key like app.kubernetes.io/name or gpu-type",
    LABEL_VALUE: "a Kubernetes label value: up to 63 letters, digits, '-', '_' or '.', starting and ending "
    "with a letter or digit",
    HUB_ID: "a Hugging Face id like Qwen/Qwen2.5-VL-7B-Instruct",
    HOST_NAME: "a host name like images.example.com (no scheme, port or path)",
    ABSOLUTE_PATH: "an absolute path of letters, digits and '.', '_', '+', '-', e.g. /models/minicpm-v-2_6",
}


def _pattern(pattern: str, max_length: int) -> Any:
    # NB: pydantic's regex engine anchors `$` at the very end, so a trailing newline never passes.
    return Field(pattern=pattern, max_length=max_length)


def _qualified_name(key: str) -> str:
    problem = qualified_name_problem(key)
    if problem:
        raise ValueError(problem)
    return key


DnsLabel = Annotated[str, _pattern(DNS_LABEL, 63)]
DnsSubdomain = Annotated[str, _pattern(DNS_SUBDOMAIN, 253)]
ProfileName = Annotated[str, _pattern(PROFILE_NAME, 40)]
EnvName = Annotated[str, _pattern(ENV_NAME, 100)]
RegistryPath = Annotated[str, _pattern(REGISTRY_PATH, 200)]
ImageReference = Annotated[str, _pattern(IMAGE_REFERENCE, 255)]
LabelKey = Annotated[str, _pattern(LABEL_KEY, QUALIFIED_KEY_MAX), AfterValidator(_qualified_name)]
LabelValue = Annotated[str, _pattern(LABEL_VALUE, 63)]
HostName = Annotated[str, _pattern(HOST_NAME, 253)]
AbsolutePath = Annotated[str, _pattern(ABSOLUTE_PATH, 1024)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=64)]
# Prose that ends up in comments, smoke prompts and descriptions: one line, no control characters.
Line = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$", max_length=2000)]


# NB: default factories are plain functions, never the builtins list and dict: pydantic reads each factory's
# signature, and a builtin's is text that inspect parses with the tokenizer (~10 ms of every command).
def empty_list() -> list[Any]:
    return []


def empty_dict() -> dict[Any, Any]:
    return {}


class Section(BaseModel):
    # NB: keys are kebab-case like vLLM's own flags; unknown keys are errors, never ignored.
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, alias_generator=lambda n: n.replace("_", "-"), validate_default=True
    )


def model_class(annotation: Any) -> type[BaseModel] | None:
    """The section class an annotation holds: `Section` itself, or `Section | None` (an optional section)."""
    candidates = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return found[0] if len(found) == 1 else None
