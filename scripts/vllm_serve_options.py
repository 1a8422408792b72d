"""Write the option table of `vllm serve` from vLLM's own parser (run with the engine venv's python).

    .venv-engine/bin/python scripts/vllm_serve_options.py > deploy/data/vllm-serve-options.json

The profile's flag guard resolves extra-args against this table exactly as argparse would (unique
prefixes included), so a flag the profile models can't slip in under another spelling; what each
destination may do is classified by hand in deploy/data/vllm-serve-classes.yaml. The CPU and CUDA
builds of a vLLM release share this parser. `make test` checks the table is current.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys


def table() -> str:
    """The table's text, from the parser of the vLLM this interpreter imports (tests/tools/vllm_session.py
    calls this too, so the test session imports vLLM once for every table)."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    serve = ServeSubcommand().subparser_init(parser.add_subparsers(dest="subparser"))
    options = {}
    for action in serve._actions:
        for option in action.option_strings:
            options[option] = {"dest": action.dest, "takes_value": action.nargs != 0}
            if action.choices is not None:
                # NB: the values argparse accepts; the classification's `values:` must be among them.
                options[option]["choices"] = sorted(str(c) for c in action.choices if c is not None)
    found = {
        "vllm_version": importlib.metadata.version("vllm").split("+")[0],
        "allow_abbrev": serve.allow_abbrev,
        "options": dict(sorted(options.items())),
    }
    # One option a line, so a vLLM upgrade reads as a short diff.
    lines = [f"  {json.dumps(name)}: {json.dumps(spec)}" for name, spec in found["options"].items()]
    return (
        f'{{"vllm_version": {json.dumps(found["vllm_version"])}, "allow_abbrev": {json.dumps(found["allow_abbrev"])}, '
        '"options": {\n' + ",\n".join(lines) + "\n}}\n"
    )


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # vLLM logs to stdout: keep it for the table alone
    out.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
