"""The one error type for mistakes a user can fix. The CLI catches it once and exits 2."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can."""

    line: int  # 0 when the problem has no line (a missing key, a whole-file problem)
    path: str  # dotted key path, "" for the whole file
    message: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class UserError(Exception):
    """Bad input: every problem found, collected before raising once."""

    def __init__(self, summary: str, problems: list[Problem] | tuple[Problem, ...] = (), source: str = ""):
        self.summary = summary
        self.problems = tuple(sorted(problems))
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [self.summary]
        lines += [f"  - {p.format(self.source)}" for p in self.problems]
        return "\n".join(lines)
