"""Loading reads like a spec: read bytes -> parse YAML (bounded, with lines) -> validate with pydantic
(every error at once, dotted key paths, "did you mean") -> cross-field checks -> one UserError."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deploy.errors import Problem, UserError
from deploy.spec import yaml_lines
from deploy.spec.checks import cross_checks
from deploy.spec.messages import dotted, sentence, show
from deploy.spec.schema import Profile

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "profiles"
SCHEMA_URL = "https://vllm-deploy.invalid/profile.schema.json"  # NB: only an $id; the schema ships in schema/


def builtin_names() -> list[str]:
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))


def locate(ref: str) -> Path:
    """A built-in profile name or a path to a YAML file."""
    if ref in builtin_names():
        return BUILTIN_DIR / f"{ref}.yaml"
    if not ref.strip() or "\0" in ref:
        raise UserError(f"{ref!r}: expected a profile name or a path to a profile YAML file")
    path = Path(ref)
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:  # a name too long, a loop of links, a directory it may not look into
        raise UserError(f"{ref}: cannot read profile: {exc.strerror}") from None
    if path.is_dir():
        raise UserError(f"{ref}: is a directory; expected a profile YAML file or one of: {', '.join(builtin_names())}")
    if not path.exists():
        close = difflib.get_close_matches(ref, builtin_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"{ref}: no such profile file or built-in profile{hint}; built-in profiles: {', '.join(builtin_names())}"
        )
    return path


def parse_profile(text: str | bytes, source: str) -> Profile:
    """Validate profile text; raise one UserError listing every problem."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{source}: profile is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
            ) from None
    try:
        document, problems = yaml_lines.parse(text)
    except UserError as exc:
        raise UserError(f"{source} is invalid:", exc.problems, source) from None
    if document.data is None:
        raise UserError(
            f"{source} is invalid:",
            [Problem(0, "", "profile is empty; expected a mapping with at least name, model, engine, api-key")],
            source,
        )
    if not isinstance(document.data, dict):
        raise UserError(
            f"{source} is invalid:",
            [Problem(1, "", f"expected a mapping of keys at the top level, got {show(document.data)}")],
            source,
        )
    profile = None
    try:
        profile = Profile.model_validate(document.data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            problems.append(Problem(document.line_of(loc), dotted(loc), sentence(error)))
    if profile is not None:
        for loc, message in cross_checks(profile):
            problems.append(Problem(document.line_of(loc), ".".join(loc), message))
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise UserError(f"{source} is invalid ({count}):", problems, source)
    assert profile is not None
    return profile


def load_profile(ref: str) -> Profile:
    path = locate(ref)
    return parse_profile(yaml_lines.read_bytes(path, ref), str(path))


def json_schema() -> dict[str, Any]:
    schema = Profile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_URL
    return schema
