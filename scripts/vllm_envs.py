"""Write the environment variables the pinned vLLM reads (run with the engine venv's python).

    .venv-engine/bin/python scripts/vllm_envs.py > deploy/data/vllm-envs.json

The names are the keys of `vllm.envs.environment_variables` (vLLM's own table of the variables it
reads) plus every other name its getters read with os.getenv / os.environ in vllm/envs.py (e.g.
DO_NOT_TRACK). `api-key.env` may not name any of them: the key would reach vLLM as a setting, or a
setting would be handed to clients as the key. `make test` checks the table is current
(tests/integration/test_vllm_tables.py).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import re
import sys

# A name read in envs.py's source: os.getenv("X"), os.environ.get("X"), os.environ["X"], "X" in os.environ.
READ = re.compile(
    r"""os\.(?:getenv|environ\.get)\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""
    r"""|os\.environ\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\]"""
    r"""|["']([A-Za-z_][A-Za-z0-9_]*)["']\s+(?:not\s+)?in\s+os\.environ"""
)


def table() -> str:
    """The table's text, from the vLLM this interpreter imports (tests/tools/vllm_session.py calls this too)."""
    import vllm.envs as envs

    names = set(envs.environment_variables)
    names |= {next(g for g in match.groups() if g) for match in READ.finditer(inspect.getsource(envs))}
    version = importlib.metadata.version("vllm").split("+")[0]
    # One name a line, so a vLLM upgrade reads as a short diff.
    listing = ",\n".join(f"    {json.dumps(n)}" for n in sorted(names))
    return f'{{\n  "vllm_version": {json.dumps(version)},\n  "variables": [\n{listing}\n  ]\n}}\n'


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # vLLM logs to stdout: keep it for the table alone
    out.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
