"""The base of every profile section: strict, frozen, kebab-case keys, unknown keys refused."""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # NB: keys are kebab-case like vLLM's own flags; unknown keys are errors, never ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, alias_generator=lambda n: n.replace("_", "-"),
                              validate_default=True)


def model_class(annotation: Any) -> type[BaseModel] | None:
    """The section class an annotation holds: `Section` itself, or `Section | None` (an optional section)."""
    candidates = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return found[0] if len(found) == 1 else None
