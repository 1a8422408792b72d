"""Pydantic's errors as sentences a user can act on, that never repeat a value that could be a secret.

Input values go through deploy.spec.redact: shown when short, one line and not shaped like a
credential; everything under api-key is never shown.
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from deploy.spec.base import PATTERN_WORDS, model_class
from deploy.spec.redact import looks_secret, show
from deploy.spec.schema import Profile, section_class


@cache
def _known_keys() -> frozenset[str]:
    """Every key the schema defines: those are shown as they are."""
    keys: set[str] = set()
    pending: list[type[BaseModel]] = [Profile]
    while pending:
        cls = pending.pop()
        for name, field in cls.model_fields.items():
            keys.add(name.replace("_", "-"))
            section = model_class(field.annotation)
            if section is not None:
                pending.append(section)
    return frozenset(keys)


def shown_key(key: Any) -> str:
    text = str(key)
    return "(a key that may be a secret)" if text not in _known_keys() and looks_secret(text) else text


def dotted(loc: tuple[Any, ...]) -> str:
    # NB: pydantic marks a bad mapping key with a "[key]" step; the key itself already names the place.
    return ".".join(shown_key(p) for p in loc if p != "[key]")


def expected(loc: tuple[Any, ...]) -> str:
    """What a missing key should hold, from the model's own annotation."""
    cls = section_class(loc[:-1])
    field = next((f for n, f in (cls.model_fields.items() if cls else ()) if n.replace("_", "-") == loc[-1]), None)
    annotation = getattr(field, "annotation", None)
    if annotation is None:
        return "a value"
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if model_class(annotation) is not None:
        return "a mapping"
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return words.get(annotation, "a value")


# Where any string is treated as secret: the key reference, and anything under it.
SECRET_PATHS = ("api-key",)


def sentence(error: ErrorDetails) -> str:
    kind, loc, got = error["type"], tuple(error["loc"]), error.get("input")
    ctx = error.get("ctx") or {}
    secret = bool(loc) and loc[0] in SECRET_PATHS
    shown = show(got, secret)
    if kind == "missing":
        return f"required key is missing; expected {expected(loc)}"
    if kind == "extra_forbidden":
        cls = section_class(loc[:-1])
        allowed = sorted(n.replace("_", "-") for n in cls.model_fields) if cls else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if not looks_secret(str(loc[-1])) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key{hint}; expected one of: {', '.join(allowed)}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {shown}"
    simple = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "invalid-json-value": "plain YAML values (strings, numbers, true/false, lists, mappings)",
        "finite_number": "a finite number",
    }
    if kind in simple:
        return f"expected {simple[kind]}, got {shown}"
    if kind == "greater_than":
        return f"expected a number greater than {ctx['gt']}, got {shown}"
    if kind == "greater_than_equal":
        return f"expected a number of at least {ctx['ge']}, got {shown}"
    if kind == "less_than_equal":
        return f"expected a number of at most {ctx['le']}, got {shown}"
    if kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(ctx["pattern"], "a string of letters, digits and punctuation, on one line")
        return f"expected {words}, got {shown}"
    if kind == "string_too_long":
        return f"expected at most {ctx['max_length']} characters, got {len(got)}"
    if kind == "string_too_short":
        return "expected a non-empty string"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} items, got {ctx.get('actual_length')}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item{'s' if ctx.get('min_length') != 1 else ''}, got none"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("ip_v4_network", "ip_v6_network", "is_instance_of"):
        return f"expected a network like 10.0.0.0/8, got {shown}"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {shown}"
