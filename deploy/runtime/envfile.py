"""The stack's .env file, read and written with python-dotenv (quotes, `export` and comments as compose
reads them), and the API key as compose will see it: the environment first, then .env."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values, set_key


def read(path: Path) -> dict[str, str]:
    """Every variable of an env file with a value; {} without the file."""
    if not path.is_file():
        return {}
    return {name: value for name, value in dotenv_values(path).items() if value}


def key(name: str, path: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """The value compose will use for `name`: the environment wins over the env file."""
    environ = os.environ if environ is None else environ
    return environ.get(name) or read(path).get(name)


def ensure_key(name: str, path: Path, environ: Mapping[str, str] | None = None) -> bool:
    """Make sure compose finds a key: when neither the environment nor the file has one, write a random
    key into the file (mode 0600). True when a key was generated. The key is never printed."""
    if key(name, path, environ):
        return False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
    # NB: set_key rewrites the file through a temporary one and keeps every other line as it was.
    set_key(path, name, "sk-" + secrets.token_urlsafe(32), quote_mode="never")
    path.chmod(0o600)
    return True
