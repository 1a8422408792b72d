"""Values from the input, in messages: shown when harmless, else only what kind of value they were.

A profile is the wrong place for a key, but people paste them there (or point the tool at a .env
file), and error output lands in CI logs.
"""

from __future__ import annotations

import re
from typing import Any

# Shapes of credentials (OpenAI/Anthropic-style keys, Hugging Face, GitHub, AWS, Slack, JWTs, PEM, a URL's
# user:password@), and long runs of key-like characters.
SECRET_SHAPES = re.compile(
    r"(sk-|sk_|hf_|gh[pousr]_|github_pat_|AKIA|ASIA|xox[abprs]-|eyJ|-----BEGIN|secret|passw|bearer)"
    r"|://[^/@\s]*@"
    r"|[A-Za-z0-9+/_=-]{24,}",
    re.IGNORECASE,
)
MAX_SHOWN = 60


def looks_secret(text: str) -> bool:
    return "=" in text or len(text) > MAX_SHOWN or "\n" in text or bool(SECRET_SHAPES.search(text))


def show(value: Any, secret: bool = False) -> str:
    """The input value in a message: its repr when harmless, else only what kind of value it was."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str) and (secret or looks_secret(value)):
        return f"a string of {len(value)} characters (not shown: it may be a secret)"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        # NB: repr() fails past 4,300 digits; a number this long says nothing in a message anyway.
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, (int, float, bool, str)):
        return f"{value!r} ({type(value).__name__})"
    return f"a {type(value).__name__} value"


def hide_secrets(text: str) -> str:
    """Free text (an unexpected exception's message) with every word shaped like a credential hidden."""
    return " ".join("(hidden)" if SECRET_SHAPES.search(word) else word for word in text.split(" "))
