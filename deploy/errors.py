"""The one error type for mistakes a user can fix (the CLI catches it once and exits 2), and the one
escaping every text from outside goes through before it reaches a terminal.

NB: escaping happens here, where problems are formatted, so no caller can forget it: a profile key,
a file name or a model file's token reaches the terminal as `\\x1b[2J` or `\\u202e`, never as the
control character itself.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Shown at most: a message about 19,000 unknown keys is its first problems and a count, not 4 MB.
MAX_PROBLEMS = 50
MAX_LINE = 2000  # characters of one problem or one summary line, after escaping

# Categories never written raw: controls (C0, C1, DEL), format characters (bidi overrides and isolates,
# U+200E/F marks, zero-width characters, the BOM), line and paragraph separators (U+2028/9), surrogates
# and unassigned code points.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn", "Co"})


def _escaped(char: str) -> str:
    point = ord(char)
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"


def is_unsafe(char: str) -> bool:
    """A character that may move the cursor, reorder the line, start a new one or hide itself."""
    category = unicodedata.category(char)
    # NB: spaces other than " " (no-break, ideographic, …) pass for a space on screen: shown escaped too.
    return category in _UNSAFE_CATEGORIES or (category == "Zs" and char != " ")


def escape(text: object, *, keep_newlines: bool = False, limit: int | None = None) -> str:
    """`text` safe for a terminal or a log: unsafe characters as Python-style escapes (`\\x1b`, `\\u202e`),
    `limit` characters at most. With `keep_newlines`, a line feed stays a line break (a multi-line summary)."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c if (c == "\n" and keep_newlines) or not is_unsafe(c) else _escaped(c) for c in text)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit} more characters)"
    return text


SHOWN_CHARS = 200  # of a server's text in a message


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """Text that came from outside, safe for a terminal: one line, control, bidi and other invisible
    format characters escaped (`\\x1b`, `\\u202e`), at most `limit` characters then how many more."""
    escaped = escape(text).strip()
    if len(escaped) <= limit:
        return escaped
    return escaped[:limit] + f"… ({len(escaped) - limit} more characters)"


def shown_lines(text: str) -> str:
    """Output that came from outside (a child's, with servers' words in it), escaped line by line: its
    line breaks and indentation kept, everything else as `shown` escapes it."""
    return "\n".join(escape(line) for line in text.splitlines())


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can."""

    line: int  # 0 when the problem has no line (a missing key, a whole-file problem)
    path: str  # dotted key path, "" for the whole file
    message: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        path, message = escape(self.path, limit=MAX_LINE), escape(self.message, limit=MAX_LINE)
        text = f"{path}: {message}" if path else message
        return f"{escape(where, limit=MAX_LINE)}: {text}" if where else text


class UserError(Exception):
    """Bad input: every problem found, collected before raising once."""

    def __init__(self, summary: str, problems: list[Problem] | tuple[Problem, ...] = (), source: str = ""):
        self.summary = summary
        self.problems = tuple(sorted(problems))
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        # NB: the summary keeps its line breaks (the runtime appends a command's output or a log tail);
        # every other unsafe character is escaped, and each line is capped.
        lines = [escape(line, limit=MAX_LINE) for line in str(self.summary).split("\n")]
        lines += [f"  - {p.format(self.source)}" for p in self.problems[:MAX_PROBLEMS]]
        if len(self.problems) > MAX_PROBLEMS:
            lines.append(f"  … and {len(self.problems) - MAX_PROBLEMS} more")
        return "\n".join(lines)
