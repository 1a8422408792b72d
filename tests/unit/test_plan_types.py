"""The Plan and the targets' projections are plain frozen records (deploy/plan/frozen.py): nothing validates them
at run time, so here every value of every profile's plan is checked against its annotation. Strictly: no int
where a float is declared (pydantic used to turn 1 into 1.0, and templates would write "1"), no tuple for a list."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import pytest

from deploy.plan import resolve
from deploy.plan.frozen import Frozen
from deploy.spec import builtin_names, load_profile
from deploy.targets import build_files, compose_plan, kubernetes_plan
from tests.conftest import REPO

REFS = [*builtin_names(), *sorted(str(p) for p in (REPO / "tests" / "profiles").glob("*.yaml"))]


def problems(value: Any, annotation: Any, where: str) -> list[str]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return []
    if origin in (typing.Union, types.UnionType):
        found = [problems(value, arg, where) for arg in args]
        return [] if any(not f for f in found) else [f"{where}: {value!r} is none of {annotation}"]
    if origin is Literal:
        return [] if value in args else [f"{where}: {value!r} is not one of {args}"]
    if origin is list:
        if type(value) is not list:
            return [f"{where}: {type(value).__name__}, not a list"]
        return [p for i, item in enumerate(value) for p in problems(item, args[0], f"{where}[{i}]")]
    if origin is dict:
        if type(value) is not dict:
            return [f"{where}: {type(value).__name__}, not a dict"]
        return [
            p
            for key, item in value.items()
            for p in [*problems(key, args[0], f"{where} key"), *problems(item, args[1], f"{where}[{key!r}]")]
        ]
    if annotation is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    if isinstance(annotation, type) and issubclass(annotation, Frozen):
        return record_problems(value, where) if type(value) is annotation else [f"{where}: not a {annotation}"]
    # NB: exact types: bool is an int to isinstance, and an int where a float belongs renders differently
    return [] if type(value) is annotation else [f"{where}: {value!r} is a {type(value).__name__}, not {annotation}"]


def record_problems(record: Frozen, where: str) -> list[str]:
    hints = typing.get_type_hints(type(record))
    return [p for name in record._fields for p in problems(getattr(record, name), hints[name], f"{where}.{name}")]


@pytest.mark.parametrize("ref", REFS)
def test_every_value_of_the_plan_and_its_projections_has_its_declared_type(ref):
    plan = resolve(load_profile(ref))
    found = record_problems(plan, "plan") + record_problems(compose_plan(plan), "compose")
    found += record_problems(kubernetes_plan(plan), "kube")
    found += [p for i, build in enumerate(build_files(plan)) for p in record_problems(build, f"build[{i}]")]
    assert found == []


def test_a_record_takes_its_fields_by_keyword_once_and_nothing_else():
    from deploy.plan.model import SecretEnv

    secret = SecretEnv(name="A", source="B", required=True)
    assert secret == SecretEnv(name="A", source="B", required=True) and len({secret, secret}) == 1
    assert secret.model_copy(update={"required": False}).required is False and secret.required is True
    assert secret.model_dump() == {"name": "A", "source": "B", "required": True}
    assert secret.model_dump_json() == '{"name":"A","source":"B","required":true}'
    with pytest.raises(TypeError, match="unexpected field"):
        SecretEnv(name="A", source="B", required=True, extra=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing field"):
        SecretEnv(name="A", source="B")  # type: ignore[call-arg]
    with pytest.raises(AttributeError, match="frozen"):
        secret.name = "C"  # type: ignore[misc]
