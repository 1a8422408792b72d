"""The guard on engine.extra-args: deny by default, from vLLM's own option table.

Every flag is resolved against the option table generated from the pinned vLLM's parser
(deploy/data/vllm-serve-options.json, `make vllm-options`) exactly as vLLM reads it: its
FlexibleArgumentParser turns `_` into `-` in long flag names, reads `--flag.key value` as a JSON field
of `--flag`, rewrites `-O3` as `--optimization-level 3`; argparse then accepts any unambiguous prefix
(`--api-ke` is `--api-key`, `-as` is `-asc`) and a one-letter short option glued to its value (`-qfp8`).

What the resolved option's destination may do comes from a committed, human-reviewed classification
of every destination (deploy/data/vllm-serve-classes.yaml): allowed (perhaps only some values),
modelled by a profile key, or refused with a reason and what to use instead. A destination the table
has and the classification does not (a newer vLLM) is refused until it is classified.
"""

from __future__ import annotations

import difflib
import re

from deploy.facts import option_classes, option_table, option_table_version
from deploy.spec.redact import looks_secret

NUMBER = re.compile(r"^-\d")


def _flag_name(item: str) -> str:
    """`--gpu_memory_utilization=1` -> `--gpu-memory-utilization`; `--limit-mm-per-prompt.image` -> its base."""
    name = item.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].split(".", 1)[0].replace("_", "-")
    elif name.startswith("-O"):
        name = "--optimization-level"  # vLLM's parser rewrites -O3 / -O=3 / -O 3 this way
    else:
        name = name.split(".", 1)[0]
    return name.removesuffix("+")


def resolve(item: str) -> tuple[str | None, list[str]]:
    """The option a flag item means to vLLM's parser, and the candidates when it is unknown or ambiguous."""
    table = option_table()
    name = _flag_name(item)
    if name in table:
        return name, []
    if name.startswith("--"):  # NB: a long prefix only ever matches long options
        matches = sorted(option for option in table if option.startswith(name) and option.startswith("--"))
    elif name.startswith("-") and len(name) > 1:
        # NB: argparse matches a single-dash prefix (`-as` is `-asc`) and a one-letter option glued to its
        # value (`-qfp8` is `-q fp8`).
        matches = sorted(
            {option for option in table if option.startswith(name) and not option.startswith("--")}
            | ({name[:2]} if name[:2] in table else set())
        )
    else:
        matches = []
    if len(matches) == 1:
        return matches[0], []
    if matches:
        return None, matches
    return None, difflib.get_close_matches(name, list(table), n=1)


def _value(args: list[str], index: int) -> str | None:
    """The value of the long flag at args[index]: after `=`, else the next item (what argparse takes)."""
    item = args[index]
    if "=" in item:
        return item.split("=", 1)[1]
    return args[index + 1] if index + 1 < len(args) else None


def _shown(written: str, option: str) -> str:
    """A flag vLLM knows, as written, less what could be a pasted value: a `.field` suffix that looks like a
    secret, or a value glued to a one-letter option (`-q<value>`)."""
    base, dot, field = written.partition(".")
    if not base.startswith("--") and not option.startswith(base):
        base = base[:2] + "…"  # NB: the rest was a value glued to the one-letter option
    if dot and looks_secret(field):
        field = "(not shown)"
    return repr(base + dot + field)


def flag_problem(args: list[str], index: int) -> str | None:
    """What is wrong with the flag at args[index], as a sentence that never repeats a value; None if allowed."""
    item = args[index]
    if any(ch.isspace() for ch in item.split("=", 1)[0]) or "\n" in item:
        return f"item {index}: one flag per item (a flag name holds no spaces or newlines)"
    option, candidates = resolve(item)
    written = item.split("=", 1)[0]
    version = option_table_version()
    if option is None:
        # NB: an unknown flag might be a pasted key: shown only when it does not look like one.
        shown = repr(written) if not looks_secret(written) else "(a flag that may hold a secret)"
        if len(candidates) > 1:
            return (
                f"item {index}: {shown} is ambiguous in vLLM {version} (could be "
                f"{', '.join(candidates[:4])}{', …' if len(candidates) > 4 else ''}); write it in full"
            )
        hint = f" (did you mean {candidates[0]!r}?)" if candidates else ""
        return f"item {index}: {shown} is not a `vllm serve` flag{hint}"
    shown = _shown(written, option)
    spelled = shown + (f" (read by vLLM as {option})" if option != written else "")
    dest = option_table()[option]["dest"]
    known = option_classes()
    if dest in known.modelled:
        return f"item {index}: {spelled} duplicates {known.modelled[dest]}: set the profile field instead"
    if dest in known.refused:
        refused = known.refused[dest]
        return f"item {index}: {spelled} is refused: it {refused.reason}; instead: {refused.instead}"
    if dest not in known.allowed:
        return (
            f"item {index}: {spelled} is refused: deploy/data/vllm-serve-classes.yaml does not classify it "
            f"yet (a flag newer than vLLM {known.vllm_version}); whatever is not known to be safe is refused "
            "until it is reviewed there"
        )
    allowed = known.allowed[dest]
    if allowed.values is not None:
        choices = " or ".join(filter(None, [", ".join(allowed.values[:-1]), allowed.values[-1]]))
        if "." in written.lstrip("-"):
            return f"item {index}: {spelled} takes one plain value here: write it as {option} VALUE ({choices})"
        value = _value(args, index)
        if value is None or value.lower() not in allowed.values:
            # NB: the value is never shown: it could be anything, a pasted key included.
            return f"item {index}: {spelled} takes only {choices} in a profile: {allowed.why}"
    return None


def extra_args_problems(args: list[str]) -> list[str]:
    """Every problem with an extra-args list, as sentences that never repeat a value."""
    problems = []
    for index, item in enumerate(args):
        if not item.startswith("-") or NUMBER.match(item):
            continue  # a value of the flag before it
        problem = flag_problem(args, index)
        if problem:
            problems.append(problem)
    return problems
