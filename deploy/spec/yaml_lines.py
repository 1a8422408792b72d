"""Reading a profile file: bounded, safe YAML that remembers the line of every key.

Hostile input is stopped before it costs anything: only regular files up to MAX_BYTES are opened
(a FIFO or /dev/zero would block or fill memory), aliases may not expand the document beyond
MAX_NODES or recurse, nesting stops at MAX_DEPTH, keys must be plain scalars, and every parser
error becomes a `file:line` problem.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.errors import Problem, UserError

MAX_BYTES = 1 << 20  # a profile is a page of YAML; 1 MiB is generous
MAX_NODES = 20_000  # after alias expansion: a "billion laughs" document stops here
MAX_DEPTH = 40
# NB: Python turns an integer into text only up to 4,300 digits (sys.get_int_max_str_digits) and a hex or
# binary YAML integer has no such limit when read; no profile value comes near this many characters.
MAX_INT_CHARS = 1000
INT_TAG = "tag:yaml.org,2002:int"
# libyaml's parser where PyYAML was built with it (its wheels are): the same events and nodes, marks included,
# ten times faster than the pure-Python one (which, on any error, parses again for its more precise message);
# construction stays PyYAML's SafeLoader either way.
FAST_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A parsed YAML mapping plus the line of every key path, for messages that point at lines."""

    data: Any
    lines: dict[Location, int]

    def line_of(self, loc: Location) -> int:
        # Walk up to the nearest located ancestor: a missing key is reported at its parent.
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 0)


def read_bytes(path: Path, shown: str) -> bytes:
    """The file's bytes, if it is a regular file of a profile's size; never blocks, never reads unbounded."""
    try:
        # NB: O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UserError(f"{shown}: cannot read profile: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise UserError(f"{shown}: is {kind}; expected a profile YAML file")
        if info.st_size > MAX_BYTES:
            raise UserError(f"{shown}: is {info.st_size} bytes; a profile may be at most {MAX_BYTES} bytes (1 MiB)")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise UserError(f"{shown}: grew past {MAX_BYTES} bytes while being read; a profile may be at most 1 MiB")
        return data
    finally:
        os.close(fd)


def _problem(exc: yaml.YAMLError, what: str) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return Problem(mark.line + 1 if mark else 0, "", f"{what}: {detail}")


def _check_depth(text: str, parser: type) -> None:
    """Refuse deep nesting before composing: PyYAML composes recursively, and a recursion error is slow."""
    depth = 0
    for event in yaml.parse(text, Loader=parser):  # NB: the parser itself keeps a stack, no recursion
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 0  # NB: the parser always sets it
                raise UserError(
                    "profile is not valid YAML", [Problem(line, "", f"nested deeper than {MAX_DEPTH} levels")]
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _compose(text: str) -> yaml.Node | None:
    try:
        _check_depth(text, FAST_PARSER)
        return yaml.compose(text, Loader=FAST_PARSER)
    except yaml.YAMLError:
        if FAST_PARSER is yaml.SafeLoader:
            raise
    _check_depth(text, yaml.SafeLoader)  # NB: libyaml's messages are vaguer ("found character that cannot…")
    return yaml.compose(text, Loader=yaml.SafeLoader)


def parse(text: str) -> tuple[Document, list[Problem]]:
    """Parse YAML text; raise UserError for text that is not a usable document, return key problems too."""
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        raise UserError("profile is not valid YAML", [_problem(exc, "YAML syntax error")]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise UserError("profile is not valid YAML", [Problem(0, "", f"YAML error: {type(exc).__name__}")]) from None

    problems: list[Problem] = []
    too_large: list[Problem] = []
    lines: dict[Location, int] = {}
    count = 0

    def walk(n: yaml.Node, loc: Location, path: tuple[int, ...]) -> None:
        nonlocal count
        count += 1
        line = n.start_mark.line + 1
        if count > MAX_NODES:
            raise UserError(
                "profile is not valid YAML",
                [
                    Problem(
                        line, "", f"the document expands to more than {MAX_NODES} values (aliases?); a profile is small"
                    )
                ],
            )
        if id(n) in path:
            raise UserError(
                "profile is not valid YAML", [Problem(line, "", "an alias refers to itself (recursive alias)")]
            )
        if len(loc) > MAX_DEPTH:
            raise UserError("profile is not valid YAML", [Problem(line, "", f"nested deeper than {MAX_DEPTH} levels")])
        lines.setdefault(loc, line)
        inner = (*path, id(n))
        if isinstance(n, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in n.value:
                here = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    raise UserError(
                        "profile is not valid YAML",
                        [Problem(here, "", "keys must be plain names (no lists, mappings or merge keys as keys)")],
                    )
                key = key_node.value
                if key in seen:
                    dotted = ".".join(str(p) for p in (*loc, key))
                    problems.append(Problem(here, dotted, f"duplicate key (first defined on line {seen[key]})"))
                seen.setdefault(key, here)
                key_loc = (*loc, key)  # NB: mypy 2.4 takes `lines[(*loc, key)]` for 3.11's `lines[*loc, key]`
                lines[key_loc] = here
                walk(value_node, key_loc, inner)
        elif isinstance(n, yaml.SequenceNode):
            for index, item in enumerate(n.value):
                walk(item, (*loc, index), inner)
        elif n.tag == INT_TAG and len(n.value) > MAX_INT_CHARS:
            too_large.append(
                Problem(
                    line,
                    ".".join(str(p) for p in loc),
                    f"integer too large: {len(n.value)} characters (a profile value has at most {MAX_INT_CHARS})",
                )
            )

    if node is not None:
        walk(node, (), ())
    if too_large:  # NB: before constructing: a long decimal integer cannot even be read
        raise UserError("profile is not valid YAML", too_large)
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(node) if node is not None else None
    except yaml.constructor.ConstructorError as exc:
        raise UserError("profile is not valid YAML", [_problem(exc, "YAML error")]) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:  # e.g. an impossible date
        raise UserError(
            "profile is not valid YAML", [Problem(0, "", f"YAML error: a value cannot be read ({type(exc).__name__})")]
        ) from None
    finally:
        loader.dispose()
    return Document(data, lines), problems
