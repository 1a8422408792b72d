"""Where `make test`'s time went: each stage (background ones included) and the slowest test modules.

    python scripts/test_times.py .work/test-times

Reads what scripts/make-test.sh (stages.tsv) and tests/conftest.py (modules.tsv) recorded in the last run.
"""

from __future__ import annotations

import sys
from pathlib import Path

SLOWEST = 15


def rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(folder: str) -> int:
    directory = Path(folder)
    stages, modules = rows(directory / "stages.tsv"), rows(directory / "modules.tsv")
    if not stages and not modules:
        print(f"no timings in {directory}: run `make test` first", file=sys.stderr)
        return 1
    print("make test, by stage (wall seconds; the engine venv and Docker setup run in the background):")
    for name, seconds, code in stages:
        print(f"  {name:<44} {float(seconds):>7.1f} s" + ("" if code == "0" else f"   exit {code}"))
    if modules:
        ordered = sorted(modules, key=lambda row: -float(row[1]))
        total = sum(float(row[1]) for row in modules)
        print(f"slowest test modules (of {len(modules)}, {total:.0f} s in all; fixtures included):")
        for module, seconds, count in ordered[:SLOWEST]:
            print(f"  {module:<52} {float(seconds):>7.1f} s  {count:>4} tests")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".work/test-times"))
