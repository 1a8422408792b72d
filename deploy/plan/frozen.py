"""`Frozen`: the base of the Plan's types and of the targets' projections. Frozen records with keyword-only
fields, typed as dataclasses are (dataclass_transform), built without any code generation.

NB: not pydantic: the Plan is derived by our own code, so it needs no validation (tests/unit/test_plan_types.py
checks every built-in plan's values against the annotations instead), and 40 pydantic classes were a quarter of
`render --all`. Not dataclasses either: each one compiles six methods with exec() when its module is imported,
which cost as much. The methods keep pydantic's names (model_copy, model_dump, model_dump_json): the same spelling
as the profile's models, which tests and the runtime call on both.
"""

from __future__ import annotations

import json
import sys
from typing import Any, ClassVar, Literal, TypeVar

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover
    from typing_extensions import dataclass_transform

_F = TypeVar("_F", bound="Frozen")
_IMMUTABLE_DEFAULTS = (type(None), str, int, float, bool)


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Frozen:
    """Fields are the class's annotations (its bases' first); a field with a value in the class body has that
    default. Construction checks that every field is given once, and nothing else."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [
            name
            for name, annotation in cls.__dict__.get("__annotations__", {}).items()
            if not str(annotation).startswith(("ClassVar", "typing.ClassVar"))
        ]
        defaults = dict(cls._defaults)
        for name in own:
            if name in cls.__dict__:
                default = cls.__dict__[name]
                # NB: one default object is shared by every instance: only immutable ones are safe
                assert isinstance(default, _IMMUTABLE_DEFAULTS), f"{cls.__name__}.{name}: a mutable default"
                defaults[name] = default
        cls._fields = (*cls._fields, *(name for name in own if name not in cls._fields))
        cls._defaults = defaults

    def __init__(self, **values: Any) -> None:
        unknown = [name for name in values if name not in self._defaults and name not in self._fields]
        missing = [name for name in self._fields if name not in values and name not in self._defaults]
        if unknown or missing:
            problems = [f"unexpected field(s) {', '.join(unknown)}"] if unknown else []
            problems += [f"missing field(s) {', '.join(missing)}"] if missing else []
            raise TypeError(f"{type(self).__name__}: {'; '.join(problems)}")
        self.__dict__.update(self._defaults)
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(self.__dict__[name] for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def model_copy(self: _F, *, update: dict[str, Any] | None = None) -> _F:
        """A copy with some fields changed (shallow, like pydantic's)."""
        return type(self)(**{**self.__dict__, **(update or {})})

    def model_dump(self, *, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The fields as plain data, in their order, nested records as dicts; mode="json": tuples as lists."""
        return {name: _plain(self.__dict__[name], mode) for name in self._fields}

    def model_dump_json(self) -> str:
        """Compact JSON, as pydantic writes it."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))


def _plain(value: Any, mode: str) -> Any:
    if isinstance(value, Frozen):
        return value.model_dump(mode=mode)  # type: ignore[arg-type]
    if isinstance(value, dict):
        return {key: _plain(item, mode) for key, item in value.items()}
    if isinstance(value, list) or (mode == "json" and isinstance(value, tuple)):
        return [_plain(item, mode) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item, mode) for item in value)
    return value
