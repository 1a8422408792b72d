"""Parse `vllm serve` argument lists with vLLM's own parser, without starting anything.

Run with the engine venv's python (it imports vllm):

    echo '[["MODEL", "--dtype", "half"], ...]' | $ENGINE_PYTHON tests/tools/vllm_parse.py

stdin: a JSON list of argv lists, each exactly what follows `vllm serve` (the positional model first).
stdout: a JSON list, one object per argv, in order:
    {"ok": bool, "stage": "parse" | "validate" | "engine-args" | "", "error": str, "log": [str],
     "changed": [dest, ...], "namespace": {field: value}}

Each argv goes the way `vllm serve ARGV` goes in vllm/entrypoints/cli/main.py: a top-level
FlexibleArgumentParser with the `serve` subcommand (ServeSubcommand.subparser_init, i.e.
make_arg_parser), `parse_args(["serve", *argv])`, then ServeSubcommand.validate (the checks the
CLI runs before dispatch), then the first lines of ServeSubcommand.cmd: a positional model_tag
becomes args.model. Last, AsyncEngineArgs.from_cli_args builds the engine arguments from the
namespace, as every server start does first (it loads no model and reads no config).

argparse's exit (status 2: unknown flag, bad value) is caught as SystemExit; its message is what it
printed on stderr. "changed" lists every destination whose value differs from the parser's default:
the settings the argv really set. "log" holds what vLLM logged while parsing (e.g. deprecations).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from typing import Any

FIELDS = (
    "subparser",
    "model",
    "model_tag",
    "served_model_name",
    "host",
    "port",
    "api_key",
    "revision",
    "dtype",
    "max_model_len",
    "gpu_memory_utilization",
    "trust_remote_code",
    "tensor_parallel_size",
    "max_num_seqs",
    "enforce_eager",
    "limit_mm_per_prompt",
    "kv_cache_memory_bytes",
    "allowed_media_domains",
    "enable_prefix_caching",
    "chat_template_content_format",
    "override_generation_config",
    "generation_config",
    "mm_processor_kwargs",
)


def jsonable(value: Any) -> Any:
    """A JSON value: dicts, lists and scalars as they are, anything else (enums, config objects) as repr."""
    return json.loads(json.dumps(value, default=repr))


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


def check(argvs: Any) -> list[list[str]]:
    """The input, if it is a JSON list of argv lists; else exit with the reason."""
    if not (isinstance(argvs, list) and all(isinstance(a, list) and all(isinstance(s, str) for s in a) for a in argvs)):
        sys.exit("vllm_parse.py: stdin must be a JSON list of argv lists (lists of strings)")
    return argvs


def parse(argvs: list[list[str]]) -> list[dict[str, Any]]:
    """vLLM's answer for each argv, in order (see the module's docstring). Imports vLLM on the first call;
    tests/tools/vllm_session.py calls this in the test session's one vLLM process."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    collect = Collect()
    logging.getLogger("vllm").addHandler(collect)
    results = []
    try:
        for argv in argvs:
            # A fresh parser each time, as each `vllm serve` process builds one.
            parser = FlexibleArgumentParser(prog="vllm", description="vLLM CLI")
            subparsers = parser.add_subparsers(required=False, dest="subparser")
            command = ServeSubcommand()
            serve_parser = command.subparser_init(subparsers)
            defaults = {a.dest: a.default for a in serve_parser._actions if a.dest != "help"}
            collect.lines.clear()
            stage, error, args = "parse", "", None
            captured = io.StringIO()
            try:
                with contextlib.redirect_stderr(captured):
                    args = parser.parse_args(["serve", *argv])
                    stage = "validate"
                    command.validate(args)
                    # ServeSubcommand.cmd's first step: a positional model takes precedence.
                    if hasattr(args, "model_tag") and args.model_tag is not None:
                        args.model = args.model_tag
                    stage = "engine-args"
                    AsyncEngineArgs.from_cli_args(args)
                    stage = ""
            except SystemExit as exc:
                error = captured.getvalue().strip() or f"exit {exc.code}"
            except Exception as exc:  # vLLM raises ValueError/TypeError for some argv (e.g. no positional model)
                error = f"{type(exc).__name__}: {exc}"
            namespace = vars(args) if args is not None else {}
            results.append(
                {
                    "ok": not error,
                    "stage": stage,
                    "error": error,
                    "log": list(collect.lines),
                    "changed": sorted(k for k, v in namespace.items() if k in defaults and v != defaults[k]),
                    "namespace": {k: jsonable(namespace[k]) for k in FIELDS if k in namespace},
                }
            )
    finally:
        logging.getLogger("vllm").removeHandler(collect)
    return results


def main() -> int:
    argvs = check(json.load(sys.stdin))
    out = sys.stdout
    # vLLM's logger writes to stdout by default: keep stdout for the JSON answer alone.
    sys.stdout = sys.stderr
    json.dump(parse(argvs), out)
    out.write("\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
