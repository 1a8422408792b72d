"""One vLLM process for the test session: it imports vLLM once, then answers requests, one JSON line each way.

Run with the engine venv's python (it imports vllm); tests/integration/conftest.py starts it once per session
(the `vllm` fixture), because each import of vLLM costs 8-17 s on a 2-core machine:

    $ENGINE_PYTHON tests/tools/vllm_session.py

Requests (stdin), each one line of JSON; each answer (stdout) is one line `{"ok": true, "result": …}` or
`{"ok": false, "error": TRACEBACK}`:
    {"op": "table", "name": "vllm-serve-options.json"}   the text scripts/vllm_serve_options.py writes
    {"op": "parse", "argvs": [[…], …]}                    tests/tools/vllm_parse.py's answer
    {"op": "resolve", "argvs": [[…], …]}                  tests/tools/vllm_resolve.py's answer
The first line it writes, once vLLM is imported, is `{"ok": true, "result": {"import_seconds": S}}`.

Each answer comes from the very function the stand-alone script runs (the generators' `table()`, the tools'
`parse()` and `resolve()`), loaded from its file. The three tables are generated first, before any argv is
parsed, so they come from a process in the state the generators' own processes are in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The committed table (deploy/data/NAME) -> the generator that writes it.
GENERATORS = {
    "vllm-serve-options.json": "scripts/vllm_serve_options.py",
    "vllm-envs.json": "scripts/vllm_envs.py",
    "vllm-architectures.json": "scripts/vllm_architectures.py",
}


def load(path: str) -> ModuleType:
    """A module from one of this repository's files (scripts/ and tests/tools/ are not packages here)."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def attempt(work: Callable[..., Any], *args: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "result": work(*args)}
    except BaseException:  # NB: a generator reports a stale registry with sys.exit: an answer, not the end
        return {"ok": False, "error": traceback.format_exc()}


def main() -> int:
    # NB: vLLM logs to stdout, and native code may write to fd 1: the answers get a private copy of fd 1,
    # and fd 1 itself becomes stderr.
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        answers.write(json.dumps(message) + "\n")
        answers.flush()

    started = time.monotonic()
    tables = {name: attempt(load(path).table) for name, path in GENERATORS.items()}
    parser, resolver = load("tests/tools/vllm_parse.py"), load("tests/tools/vllm_resolve.py")

    def parse(argvs: Any) -> list[dict[str, Any]]:
        return parser.parse(parser.check(argvs))

    send({"ok": True, "result": {"import_seconds": round(time.monotonic() - started, 1)}})
    for line in sys.stdin:
        request = json.loads(line)
        op = request.get("op")
        if op == "table":
            name = request["name"]
            send(tables.get(name, {"ok": False, "error": f"no generator for {name}"}))
        elif op == "parse":
            send(attempt(parse, request["argvs"]))
        elif op == "resolve":
            send(attempt(resolver.resolve, request["argvs"]))
        else:
            send({"ok": False, "error": f"unknown op {op!r}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
