"""Check prometheus-operator's and KEDA's custom resources against their CRDs' published schemas, strictly.

The schemas are the CRDs' own `openAPIV3Schema`s, vendored as JSON in tests/data/crds/: ServiceMonitor and
PrometheusRule from prometheus-operator v0.80.1, ScaledObject from KEDA v2.16.1. SOURCE.md there gives
each file's upstream repository, tag, commit and path, and says how to regenerate them.

jsonschema (Draft 2020-12) checks a document the way an API server with strict field validation would:
- a key that a schema's `properties` does not declare is an error, unless that schema has
  `additionalProperties` or `x-kubernetes-preserve-unknown-fields: true`. The server would prune or refuse
  the key. This is done on a copy of the schema, by adding `additionalProperties: false`;
- `metadata`, which a CRD types as a bare object, is checked against ObjectMeta's fields;
- `pattern` is Go (RE2) syntax. It is translated for Python's `re`: `$` means the end of the text, and an
  inline `(?i)` applies until the end of its group;
- formats int32, int64 and date-time, and `x-kubernetes-list-type` set or map (no duplicate entries).
Not checked: CEL rules (`x-kubernetes-validations`, which these three schemas do not have) and anything
done by an admission webhook (KEDA's, for example).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

DATA = Path(__file__).resolve().parents[1] / "data" / "crds"
KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.v1alpha1.json",
}

# ObjectMeta, which the API server itself checks on every object (apimachinery's validation).
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_QUALIFIED_NAME = rf"^((?=[^/]{{1,253}}/){_DNS_SUBDOMAIN}/)?{_NAME}$"  # a label or annotation key
_STRING = {"type": "string"}
METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": rf"^{_DNS_SUBDOMAIN}$"},
        "generateName": _STRING,
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": _QUALIFIED_NAME},
            "additionalProperties": {"type": "string", "pattern": rf"^({_NAME})?$"},
        },
        "annotations": {
            "type": "object",
            "propertyNames": {"pattern": _QUALIFIED_NAME},
            "additionalProperties": _STRING,
        },
        "finalizers": {"type": "array", "items": _STRING},
        "ownerReferences": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["apiVersion", "kind", "name", "uid"],
                "properties": {
                    "apiVersion": _STRING,
                    "kind": _STRING,
                    "name": _STRING,
                    "uid": _STRING,
                    "controller": {"type": "boolean"},
                    "blockOwnerDeletion": {"type": "boolean"},
                },
            },
        },
        # Set by the server, so present in an object read back from a cluster.
        "uid": _STRING,
        "resourceVersion": _STRING,
        "selfLink": _STRING,
        "generation": {"type": "integer"},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    },
}


def _strict(schema: dict) -> dict:
    """A copy of a structural schema where an object with no `additionalProperties` or
    `x-kubernetes-preserve-unknown-fields` refuses keys its `properties` does not declare."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {key: _strict(sub) for key, sub in schema["properties"].items()}
    for key in ("additionalProperties", "items", "not"):
        if isinstance(schema.get(key), dict):
            schema[key] = _strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [_strict(sub) for sub in schema[key]]
    if (
        (schema.get("type") == "object" or "properties" in schema)
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


@functools.cache
def _python_regex(pattern: str) -> re.Pattern:
    """Go's RE2 syntax as Python's: `$` and `\\z` are the end of the text (Python's `$` also matches before a
    final newline), an inline `(?flags)` becomes `(?flags:…)` up to the end of its group or alternative, and
    `\\d`, `\\w` and `\\s` are ASCII only."""
    out: list[str] = []
    flags: list[list[str]] = [[]]  # per open group: the inline flags set in it so far
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(r"\Z" if pattern[i + 1 : i + 2] == "z" and not in_class else pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
            out.append(char)
        elif char == "[":
            in_class = True
            start = i + 1 + (pattern[i + 1 : i + 2] == "^")
            out.append(pattern[i : start + (pattern[start : start + 1] == "]")])  # `[]…]`: a literal `]`
            i = start + (pattern[start : start + 1] == "]")
            continue
        elif inline := re.match(r"\(\?([imsU-]+)\)", pattern[i:]):
            if "U" in inline[1]:
                raise ValueError(f"Go's ungreedy flag has no Python equivalent: {pattern!r}")
            out.append(f"(?{inline[1]}:")
            flags[-1].append(inline[1])
            i += inline.end()
            continue
        elif char == "(":
            flags.append([])
            out.append(char)
        elif char == ")":
            out.append(")" * len(flags.pop()) + ")")
        elif char == "|":
            out.append(")" * len(flags[-1]) + "|" + "".join(f"(?{f}:" for f in flags[-1]))
        elif char == "$":
            multiline = any("m" in f.split("-")[0] for group in flags for f in group)
            out.append("$" if multiline else r"\Z")
        else:
            out.append(char)
        i += 1
    out.append(")" * len(flags.pop()))
    return re.compile("".join(out), re.ASCII)


def _pattern(validator, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _python_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _list_type(validator, kind: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    """`set`: no two equal items; `map`: no two items with the same `x-kubernetes-list-map-keys`."""
    if not validator.is_type(instance, "array") or kind not in ("set", "map"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen = set()
    for index, item in enumerate(instance):
        identity = json.dumps(
            item if kind == "set" or not isinstance(item, dict) else [item.get(key) for key in keys], sort_keys=True
        )
        if identity in seen:
            what = "value" if kind == "set" else f"value of {', '.join(keys)}"
            yield ValidationError(f"duplicate {what} in a list of type {kind}", path=[index])
        seen.add(identity)


FORMATS = FormatChecker(formats=())


@FORMATS.checks("int32")
def _int32(value: Any) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def _int64(value: Any) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: Any) -> bool:  # RFC 3339
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", value):
        return False
    return bool(datetime.fromisoformat(value.upper().replace("Z", "+00:00")))


Validator = validators.extend(Draft202012Validator, {"pattern": _pattern, "x-kubernetes-list-type": _list_type})


@functools.cache
def _schema(filename: str) -> dict:
    schema = json.loads((DATA / filename).read_text(encoding="utf-8"))
    if schema["properties"]["metadata"] == {"type": "object"}:
        schema["properties"]["metadata"] = METADATA
    return _strict(schema)


def model_of(document: dict) -> dict | None:
    """The strict schema of a kind this checker knows (truthy), or None. The name is older than the
    schemas: it once returned a pydantic model."""
    filename = KINDS.get((document.get("apiVersion", ""), document.get("kind", "")))
    return _schema(filename) if filename else None


schema_of = model_of


def _pointer(path) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path) or "/"


def problems(document: dict) -> list[str]:
    """Everything wrong with one custom resource, as '<JSON pointer>: <message>'. [] when valid."""
    schema = model_of(document)
    if schema is None:
        return [f"not a custom resource this checker knows: {document.get('apiVersion')}/{document.get('kind')}"]
    found = []
    for error in Validator(schema, format_checker=FORMATS).iter_errors(document):
        if error.validator == "additionalProperties" and error.validator_value is False:
            declared = error.schema.get("properties", {})
            found += [
                f"{_pointer([*error.absolute_path, key])}: unknown field (not in the CRD's schema)"
                for key in error.instance
                if key not in declared
            ]
        else:
            found.append(f"{_pointer(error.absolute_path)}: {error.message}")
    return sorted(found)
