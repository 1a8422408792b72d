"""A copy of a built-in profile with some keys changed: for runs that must not collide with the
built-in's own stack (tests and `make bench` use another name, another port)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.spec.load import BUILTIN_DIR


def write_variant(builtin: str, path: Path, changes: dict[str, Any]) -> Path:
    """Write the built-in profile `builtin` with `changes` merged in (nested mappings merge) to `path`."""
    data = yaml.safe_load((BUILTIN_DIR / f"{builtin}.yaml").read_text(encoding="utf-8"))

    def merge(into: dict[str, Any], new: dict[str, Any]) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(data, changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
