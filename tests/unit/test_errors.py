"""The one user-error type and the one escaping: nothing from outside reaches a terminal raw, no list is endless."""

from __future__ import annotations

import pytest

from deploy.errors import MAX_LINE, MAX_PROBLEMS, Problem, UserError, escape


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("plain text, ünïcode and 中文 stay", "plain text, ünïcode and 中文 stay"),
        ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),  # ESC, BEL: clear screen, set the title
        ("a\nb\rc\td\x00e\x7f", "a\\x0ab\\x0dc\\x09d\\x00e\\x7f"),  # C0 and DEL
        ("\x85\x9b31m", "\\x85\\x9b31m"),  # C1: NEL and CSI
        ("x\u2028y\u2029z", "x\\u2028y\\u2029z"),  # line and paragraph separators
        (
            "\u202egnp.exe\u202c \u2066i\u2069 \u200e\u200f\u061c",
            "\\u202egnp.exe\\u202c \\u2066i\\u2069 \\u200e\\u200f\\u061c",
        ),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("\ud800 \U000e0001 \U0010ffff", "\\ud800 \\U000e0001 \\U0010ffff"),  # a surrogate, a tag, unassigned
    ],
)
def test_escape_shows_every_unsafe_character_as_an_escape(raw, shown):
    assert escape(raw) == shown
    assert escape(shown) == shown  # already safe: escaping twice changes nothing


def test_escape_keeps_line_breaks_only_when_asked_and_cuts_long_text():
    assert escape("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"
    assert escape("x" * 10, limit=4) == "xxxx… (6 more characters)"


def test_problems_are_escaped_and_capped():
    problems = [Problem(i + 1, f"key{i:05}\x1b[31m", "unknown key\u202e") for i in range(19_000)]
    text = str(UserError("p.yaml is invalid (19000 problems):", problems, "p\u2028.yaml"))
    lines = text.splitlines()
    assert lines[:2] == [
        "p.yaml is invalid (19000 problems):",
        "  - p\\u2028.yaml:1: key00000\\x1b[31m: unknown key\\u202e",
    ]
    assert len(lines) == 1 + MAX_PROBLEMS + 1 and lines[-1] == "  … and 18950 more"
    assert len(text) < 5000


def test_a_summary_keeps_its_lines_and_escapes_the_rest():
    error = UserError("build failed:\n\x1b[31mred\x1b[0m log line\r\n" + "y" * 3000)
    assert str(error).splitlines() == [
        "build failed:",
        "\\x1b[31mred\\x1b[0m log line\\x0d",
        "y" * MAX_LINE + f"… ({3000 - MAX_LINE} more characters)",
    ]
