"""Write vLLM's router's route table from its own source: the `.route("PATH", METHOD(handler))` calls of
`build_app_with_wasm_middleware` in the sdist's `src/server.rs`, grouped as the router groups them.

    python scripts/vllm_router_routes.py [SDIST_DIR] > deploy/data/vllm-router-routes.json   (make vllm-router-routes)

Without SDIST_DIR it downloads the sdist of the pinned version (deploy/data/devices.yaml) with pip
(`pip download --no-deps --no-binary :all: vllm-router==VERSION`) into a temporary folder and unpacks it.

The router's front (haproxy, deploy/plan/router.py) lets clients reach only an allowlist drawn from the
"protected" and "public" groups of this table; "admin" and "workers" never. A test checks the allowlist
against the table and that regenerating the table from the pinned sdist gives the committed bytes, so a
router release that adds a route shows up as a diff here, closed at the front until someone opens it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# NB: the deploy package of this checkout, not whichever one the venv's editable install names (a git
# worktree shares its venv): the pinned version must be the one in this checkout's devices.yaml.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from deploy.facts import device_facts

FUNCTION = "build_app_with_wasm_middleware"
# `let mut protected_routes = Router::new()` … up to the statement's end: the route groups.
GROUP = re.compile(r"let\s+(?:mut\s+)?(\w+)_routes\s*=\s*Router::new\(\)")
METHOD = re.compile(r"\b(get|post|put|patch|delete|head|options)\(")


def balanced(text: str, start: int) -> int:
    """The index just after the parenthesis that closes the one at `start` (string literals skipped)."""
    depth, index, quoted = 0, start, False
    while index < len(text):
        char = text[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise ValueError("unbalanced parentheses in server.rs")


def statement_end(text: str, start: int) -> int:
    """The index of the `;` that ends the statement starting at `start` (parentheses and strings skipped)."""
    index = start
    while index < len(text):
        if text[index] == "(":
            index = balanced(text, index)
            continue
        if text[index] == ";":
            return index
        index += 1
    raise ValueError("unterminated statement in server.rs")


def routes(source: str) -> dict[str, list[dict]]:
    body_start = source.index(f"pub fn {FUNCTION}(")
    body = source[body_start:]
    groups: dict[str, list[dict]] = {}
    for group in GROUP.finditer(body):
        statement = body[group.end() : statement_end(body, group.end())]
        found = groups.setdefault(group.group(1), [])
        for call in re.finditer(r"\.route\(", statement):
            arguments = statement[call.end() - 1 : balanced(statement, call.end() - 1)]
            path = re.match(r'\(\s*"([^"]+)"\s*,', arguments)
            if not path:
                raise ValueError(f"a route whose path is not a string literal: {arguments[:80]}")
            methods = sorted({m.upper() for m in METHOD.findall(arguments[path.end() :])})
            if not methods:
                raise ValueError(f"a route with no method: {path.group(1)}")
            for method in methods:
                found.append({"method": method, "path": path.group(1)})
    if not groups:
        raise ValueError(f"no route groups found in {FUNCTION}")
    return groups


def version(sdist: Path) -> str:
    found = re.search(r"^Version:\s*(\S+)$", (sdist / "PKG-INFO").read_text(encoding="utf-8"), re.M)
    if not found:
        raise ValueError(f"no Version in {sdist / 'PKG-INFO'}")
    return found.group(1)


def downloaded(scratch: Path) -> Path:
    """The pinned sdist, downloaded by pip and unpacked under `scratch`; its top folder."""
    pinned = device_facts()["router"]["version"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"vllm-router=={pinned}",
            "-d",
            str(scratch),
        ],
        check=True,
        stdout=sys.stderr,
    )
    archive = next(scratch.glob("vllm_router-*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="data")
    return next(p for p in scratch.iterdir() if p.is_dir())


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vllm-router-sdist-") as scratch:
        sdist = Path(argv[0]) if argv else downloaded(Path(scratch))
        write(sdist)
    return 0


def write(sdist: Path) -> None:
    groups = routes((sdist / "src" / "server.rs").read_text(encoding="utf-8"))
    # One route a line, so a router upgrade reads as a short diff.
    lines = []
    for name, found in groups.items():
        entries = ",\n".join(f"    {json.dumps(r)}" for r in found)
        lines.append(f"  {json.dumps(name)}: [\n{entries}\n  ]")
    sys.stdout.write(
        f'{{"vllm_router_version": {json.dumps(version(sdist))}, "source": "src/server.rs {FUNCTION}", '
        '"groups": {\n' + ",\n".join(lines) + "\n}}\n"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
