"""Which option vLLM's own parser reads each flag spelling as, without parsing any value.

Run with the engine venv's python (it imports vllm):

    echo '[["--hf_tok=x"], ["-qfp8"], ...]' | $ENGINE_PYTHON tests/tools/vllm_resolve.py

stdin: a JSON list of argv lists, each what follows `vllm serve MODEL`, its first item a flag.
stdout: a JSON list, one per argv: the destination argparse gives the first flag after vLLM's own
rewriting (FlexibleArgumentParser.parse_args: `_` to `-`, `--flag.key` JSON fields, `-O3`), "ambiguous"
when argparse refuses it as ambiguous, or null when it is no option at all.

The rewriting is vLLM's: parse_args runs with argparse's own parse_args swapped for a recorder, so the
list argparse would get is captured as it is; then argparse's own option lookup (_parse_optional,
which does the prefix matching) names the action. The profile guard must agree on every spelling.
"""

from __future__ import annotations

import argparse
import json
import sys


def resolve(argvs: list[list[str]]) -> list[str | None]:
    """The destination vLLM's parser gives each argv's first flag, in order (see the module's docstring).
    tests/tools/vllm_session.py calls this in the test session's one vLLM process."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    top = FlexibleArgumentParser(prog="vllm")
    serve = ServeSubcommand().subparser_init(top.add_subparsers(dest="subparser"))
    captured: list[list[str]] = []
    original = argparse.ArgumentParser.parse_args

    def record(self, args=None, namespace=None):
        captured.append(list(args or []))
        return argparse.Namespace()

    def error(message: str):
        raise LookupError(message)

    serve.error = error  # NB: argparse reports an ambiguous prefix through error(), which exits
    results: list[str | None] = []
    argparse.ArgumentParser.parse_args = record  # type: ignore[method-assign]  # NB: restored below
    try:
        for argv in argvs:
            captured.clear()
            try:
                FlexibleArgumentParser.parse_args(top, ["serve", "MODEL", *argv])
                # NB: vLLM moves `--model X` in front as the positional model: it is the model option still.
                flag = next((a for a in captured[0][2:] if a.startswith("-")), "--model")
            except (ValueError, AssertionError, OSError):
                flag = argv[0]  # NB: `--config FILE` makes vLLM read FILE before argparse: it is the config option
            try:
                found = serve._parse_optional(flag)
            except LookupError:
                results.append("ambiguous")
                continue
            action = found[0] if isinstance(found, tuple) else (found[0][0] if found else None)
            results.append(action.dest if action is not None else None)
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    return results


def main() -> int:
    argvs = json.load(sys.stdin)
    out = sys.stdout
    sys.stdout = sys.stderr  # vLLM logs to stdout
    json.dump(resolve(argvs), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
