"""Find a model's config files (a directory, or a hub id in the local Hugging Face cache) and read what
`init` needs from them. Nothing is downloaded: the files must be on this machine.

A model's files are outside input like a profile: every file is read bounded (a regular file, at most its
cap), must be UTF-8 JSON holding an object, and every value `init` uses is taken through a checked accessor
(`integer`, `number`, `token_ids`, …) that records a problem naming the file and the key instead of
passing on a string, a NaN or a list where a number belongs. `problems` are raised together, once.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import Problem, UserError
from deploy.spec.schema import is_hub_id

MiB = 2**20
# The most `init` reads of each file. Config files are kilobytes; tokenizer_config.json may carry a large
# added_tokens_decoder (~1 MB for Gemma) and tokenizer.json the whole vocabulary (~10-35 MB).
FILE_CAPS = {
    "config.json": 4 * MiB,
    "generation_config.json": 1 * MiB,
    "preprocessor_config.json": 4 * MiB,
    "processor_config.json": 4 * MiB,
    "tokenizer_config.json": 16 * MiB,
    "tokenizer.json": 64 * MiB,
    "chat_template.json": 4 * MiB,
}
FILES = tuple(FILE_CAPS)
CHAT_TEMPLATE_CAP = 4 * MiB  # chat_template.jinja: templates are a few kilobytes
REF_CAP = 4096  # refs/main holds one commit id
MAX_TOKEN_ID = 10_000_000  # the profile's bound on a token id (deploy/spec/generation.py)
MAX_STOP_IDS = 32
COMMIT = re.compile(r"[0-9a-f]{40}")
# Token text `init` repeats in a comment: a plain special-token name like <|im_end|> or </s>; anything
# else (a newline, a quote, a bidi character, a long text) is left out and the id alone is given.
TOKEN_NAME = re.compile(r"[A-Za-z0-9_<>|/.:\[\]-]{1,64}")


def kind(value: Any) -> str:
    """What a value from a model file is, in words, without repeating it (it is outside text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**15 else "a very large integer"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "NaN" if math.isnan(value) else "Infinity"
    names: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), "a value")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_capped(path: Path, cap: int) -> bytes:
    """A regular file's bytes, at most `cap`; never blocks on a FIFO, never reads past the cap."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: is not a regular file; expected a model's file")
        if info.st_size > cap:
            raise UserError(f"{path}: is {info.st_size} bytes; init reads at most {cap // MiB} MiB of it ({cap} bytes)")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(cap + 1)
        if len(data) > cap:
            raise UserError(f"{path}: grew past {cap} bytes while being read")
        return data
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)


def read_text(path: Path, cap: int) -> str:
    data = read_capped(path, cap)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: is not UTF-8 text (bad byte at offset {exc.start})") from None


def read_json(path: Path, cap: int) -> dict[str, Any]:
    """A JSON object from a model file; a UserError for anything else (a list, deep nesting, a huge number)."""
    text = read_text(path, cap)
    try:
        data = json.loads(text)
    except RecursionError:
        raise UserError(f"{path}: is nested too deeply to be a model's config file") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})") from None
    except ValueError:  # NB: Python reads at most 4,300 digits of an integer
        raise UserError(f"{path}: holds a number too long to read (more than 4300 digits)") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object at the top level, got {kind(data)}")
    return data


@dataclass
class ModelFiles:
    source: str  # model.source of the profile: the absolute directory, or the hub id
    directory: Path  # where the files were read
    revision: str | None  # the hub cache snapshot's commit (40 hex digits), else None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> its JSON object, for those present
    chat_template: str | None = None
    problems: list[Problem] = field(default_factory=list)  # values of the wrong kind, found while drafting

    def get(self, name: str) -> dict[str, Any]:
        return self.files.get(name) or {}

    def value(self, name: str, dotted: str) -> Any:
        """A value of one file by dotted key (`image_processor.size.longest_edge`), None when absent."""
        value: Any = self.get(name)
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def problem(self, name: str, dotted: str, message: str) -> None:
        self.problems.append(Problem(0, f"{self.directory / name}: {dotted}", message))

    def raise_problems(self) -> None:
        problems = list(dict.fromkeys(self.problems))
        if problems:
            count = f"{len(problems)} value{'s' if len(problems) > 1 else ''}"
            raise UserError(
                f"init: {count} in the model's files cannot be used; nothing was drafted "
                "(fix the files, or write the profile by hand):",
                problems,
            )

    def integer(self, name: str, dotted: str, low: int, high: int) -> int | None:
        """An integer from low to high (true and false are not integers); None when absent or wrong."""
        value = self.value(name, dotted)
        if value is None:
            return None
        if not _is_int(value) or not low <= value <= high:
            self.problem(name, dotted, f"expected an integer from {low} to {high}, got {kind(value)}")
            return None
        return value

    def boolean(self, name: str, dotted: str) -> bool | None:
        value = self.value(name, dotted)
        if value is None or isinstance(value, bool):
            return value
        self.problem(name, dotted, f"expected true or false, got {kind(value)}")
        return None

    def mapping(self, name: str, dotted: str) -> dict[str, Any] | None:
        value = self.value(name, dotted)
        if value is None or isinstance(value, dict):
            return value
        self.problem(name, dotted, f"expected an object, got {kind(value)}")
        return None

    def token_ids(self, name: str, dotted: str) -> list[int]:
        """An id or a list of ids (eos_token_id), each from 0 to MAX_TOKEN_ID."""
        value = self.value(name, dotted)
        items = value if isinstance(value, list) else [] if value is None else [value]
        wrong = next((i for i in items if not (_is_int(i) and 0 <= i <= MAX_TOKEN_ID)), None)
        if wrong is not None or None in items or len(items) > MAX_STOP_IDS:
            got = (
                f"a list of {len(items)}"
                if len(items) > MAX_STOP_IDS
                else f"a list holding {kind(wrong)}"
                if isinstance(value, list)
                else kind(value)
            )
            self.problem(
                name,
                dotted,
                f"expected a token id or a list of at most {MAX_STOP_IDS} token ids "
                f"(integers from 0 to {MAX_TOKEN_ID}), got {got}",
            )
            return []
        return items

    def text_prefix(self) -> str:
        """Where config.json keeps the language model's settings: `text_config.`, `llm_config.` or the top."""
        config = self.get("config.json")
        for key in ("text_config", "llm_config"):
            if config.get(key) is not None and not isinstance(config[key], dict):
                self.problem("config.json", key, f"expected an object, got {kind(config[key])}")
                return ""
            if config.get(key):
                return f"{key}."
        return ""

    @property
    def added_tokens(self) -> dict[str, int]:
        """Token text -> id for the tokenizer's added tokens (tokenizer_config.json, tokenizer.json)."""
        found: dict[str, int] = {}
        decoder = self.get("tokenizer_config.json").get("added_tokens_decoder", {})
        if not isinstance(decoder, dict):
            self.problem("tokenizer_config.json", "added_tokens_decoder", f"expected an object, got {kind(decoder)}")
            decoder = {}
        for key, token in decoder.items():
            number = int(key) if key.isascii() and key.isdigit() and len(key) <= 9 else None
            if (
                number is None
                or number > MAX_TOKEN_ID
                or not isinstance(token, dict)
                or not isinstance(token.get("content"), str)
            ):
                self.problem(
                    "tokenizer_config.json",
                    "added_tokens_decoder",
                    f"expected token ids (0 to {MAX_TOKEN_ID}) as keys and objects with a string content as values",
                )
                return {}
            found[token["content"]] = number
        listed = self.get("tokenizer.json").get("added_tokens", [])
        if not isinstance(listed, list):
            self.problem("tokenizer.json", "added_tokens", f"expected a list, got {kind(listed)}")
            listed = []
        for token in listed:
            if not (
                isinstance(token, dict)
                and isinstance(token.get("content"), str)
                and _is_int(token.get("id"))
                and 0 <= token["id"] <= MAX_TOKEN_ID
            ):
                self.problem(
                    "tokenizer.json",
                    "added_tokens",
                    f"expected objects with a string content and an id from 0 to {MAX_TOKEN_ID}",
                )
                return found
            found.setdefault(token["content"], token["id"])
        return found

    def special_token(self, key: str) -> str | None:
        """tokenizer_config.json's eos_token or pad_token: a string, or an AddedToken object's content."""
        value = self.get("tokenizer_config.json").get(key)
        value = value.get("content") if isinstance(value, dict) else value
        return value if isinstance(value, str) else None


def token_name(text: str | None) -> str | None:
    """The token's text, if it is a plain special-token name `init` may repeat in a comment."""
    return text if text is not None and TOKEN_NAME.fullmatch(text) else None


def hub_caches(env: Mapping[str, str]) -> list[Path]:
    """Where huggingface_hub keeps downloads, in its own order of precedence."""
    candidates = [
        env.get("HF_HUB_CACHE"),
        env.get("HUGGINGFACE_HUB_CACHE"),
        f"{env['HF_HOME']}/hub" if env.get("HF_HOME") else None,
        f"{env['XDG_CACHE_HOME']}/huggingface/hub" if env.get("XDG_CACHE_HOME") else None,
        f"{env['HOME']}/.cache/huggingface/hub" if env.get("HOME") else None,
    ]
    return [Path(c) for c in candidates if c]


def _snapshot(repo: Path) -> tuple[Path, str | None] | None:
    """The snapshot refs/main names, else the newest one holding a config.json; its commit when it is one."""
    ref = repo / "refs" / "main"
    if ref.is_file():
        try:
            commit = read_text(ref, REF_CAP).strip()
        except UserError:
            commit = ""
        if COMMIT.fullmatch(commit) and (repo / "snapshots" / commit / "config.json").is_file():
            return repo / "snapshots" / commit, commit
    snapshots = sorted(
        (p for p in (repo / "snapshots").glob("*") if (p / "config.json").is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    if not snapshots:
        return None
    # NB: a directory name is outside text: it becomes model.revision only when it is a commit id.
    return snapshots[0], snapshots[0].name if COMMIT.fullmatch(snapshots[0].name) else None


def locate(source: str, env: Mapping[str, str]) -> tuple[str, Path, str | None]:
    """model.source, the directory holding the config files, and the snapshot's commit (hub ids)."""
    path = Path(source)
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long, a loop of links
        raise UserError(f"{source}: cannot be read ({exc.strerror})") from None
    if is_dir:
        if not (path / "config.json").is_file():
            raise UserError(f"{source}: no config.json in this directory; expected a model directory")
        return str(path.resolve()), path.resolve(), None
    if is_hub_id(source):
        organisation, name = source.split("/")
        caches = hub_caches(env)
        for cache in caches:
            found = _snapshot(cache / f"models--{organisation}--{name}")
            if found:
                return source, found[0], found[1]
        where = ", ".join(str(c) for c in caches) or "no cache directory (HF_HOME and HOME unset)"
        raise UserError(
            f"{source}: its config files are not on this machine (looked in {where}); fetch them without "
            f"the weights, e.g. `huggingface-cli download {source} config.json generation_config.json "
            "preprocessor_config.json tokenizer_config.json`, or pass a model directory"
        )
    raise UserError(f"{source}: expected a model directory or a Hugging Face id like Qwen/Qwen2.5-VL-7B-Instruct")


def _chat_template(directory: Path, files: dict[str, dict[str, Any]]) -> str | None:
    """The chat template: tokenizer_config.json's, else chat_template.jinja / .json beside it (newer transformers)."""
    template = files.get("tokenizer_config.json", {}).get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next(
            (t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"), None
        )
    if not isinstance(template, str) and (directory / "chat_template.jinja").is_file():
        template = read_text(directory / "chat_template.jinja", CHAT_TEMPLATE_CAP)
    if not isinstance(template, str):
        template = files.get("chat_template.json", {}).get("chat_template")
    return template if isinstance(template, str) else None


def read_model_files(source: str, env: Mapping[str, str] | None = None) -> ModelFiles:
    profile_source, directory, revision = locate(source, os.environ if env is None else env)
    files = {name: read_json(directory / name, cap) for name, cap in FILE_CAPS.items() if (directory / name).is_file()}
    architectures = files.get("config.json", {}).get("architectures")
    if not isinstance(architectures, list) or not architectures:
        raise UserError(f"{directory / 'config.json'}: names no architectures; expected a Hugging Face model config")
    return ModelFiles(profile_source, directory, revision, files, _chat_template(directory, files))
