"""Kubernetes names and fields, validated as the API server validates them.

The rules and regular expressions are apimachinery's (k8s.io/apimachinery/pkg/util/validation/validation.go:
IsQualifiedName, IsValidLabelValue, IsDNS1123Label, IsDNS1123Subdomain) and the core API's
(k8s.io/kubernetes/pkg/apis/core/validation/validation.go: ValidateTolerations, ValidateNamespaceName).
The patterns in deploy/spec/base.py are these, for the published JSON schema; the length rules a
pattern cannot say are checked here.
"""

from __future__ import annotations

import re

# validation.go: dns1123LabelFmt, DNS1123LabelMaxLength
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_MAX = 63
# validation.go: dns1123SubdomainFmt, DNS1123SubdomainMaxLength
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
DNS1123_SUBDOMAIN_MAX = 253
# validation.go: qualifiedNameFmt, qualifiedNameMaxLength (the name part of a label key or annotation key)
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_MAX = 63
# validation.go: labelValueFmt, LabelValueMaxLength
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
LABEL_VALUE_MAX = 63
# A qualified name in full: [DNS-1123 subdomain prefix "/"] name.
QUALIFIED_KEY_MAX = DNS1123_SUBDOMAIN_MAX + 1 + QUALIFIED_NAME_MAX
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def qualified_name_problem(value: str) -> str | None:
    """IsQualifiedName: an optional DNS-1123 subdomain prefix (at most 253 characters) and '/', then a name of
    at most 63 characters. The pattern checks the characters; this checks the parts' lengths."""
    prefix, slash, name = value.rpartition("/")
    if slash and len(prefix) > DNS1123_SUBDOMAIN_MAX:
        return (
            f"expected a Kubernetes label key whose prefix (before '/') is at most {DNS1123_SUBDOMAIN_MAX} "
            f"characters, got {len(prefix)}"
        )
    if len(name) > QUALIFIED_NAME_MAX:
        return f"expected a Kubernetes label key whose name (after '/') is at most {QUALIFIED_NAME_MAX} characters"
    if (slash and not re.fullmatch(DNS1123_SUBDOMAIN, prefix)) or not re.fullmatch(QUALIFIED_NAME, name):
        return "expected a Kubernetes label key like app.kubernetes.io/name or gpu-type"
    return None


def toleration_problems(
    key: str | None, operator: str, value: str | None, effect: str | None, seconds: int | None
) -> list[str]:
    """ValidateTolerations' cross-field rules (each field's own syntax is the schema's)."""
    found = []
    if not key and operator != "Exists":
        found.append(
            "operator Equal (the default) needs a key: name the taint's key, e.g. {key: nvidia.com/gpu, "
            "operator: Exists, effect: NoSchedule}, or write operator: Exists alone to tolerate every taint"
        )
    if operator == "Exists" and value:
        found.append(
            "value must be empty with operator Exists (it matches every value of the key); use operator "
            "Equal to match one value"
        )
    if seconds is not None and effect != "NoExecute":
        found.append(
            "tolerationSeconds needs effect NoExecute (it bounds how long the pod stays on a node tainted NoExecute)"
        )
    return found


def namespace_problem(name: str) -> str | None:
    """Namespaces with the kube- prefix are Kubernetes' own (kube-system, kube-public, kube-node-lease); the
    Kubernetes documentation reserves the prefix. The syntax is the DNS-1123 label pattern's."""
    if name.startswith("kube-"):
        return (
            "the kube- prefix is reserved for Kubernetes' own namespaces (kube-system, kube-public, "
            "kube-node-lease): deploy into a namespace of its own, e.g. vllm"
        )
    return None
