"""Find a model's config files (a directory, or a hub id in the local Hugging Face cache) and read what
`init` needs from them. Nothing is downloaded: the files must be on this machine."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import UserError
from deploy.spec.schema import is_hub_id

MAX_FILE_BYTES = 64 * 2**20  # tokenizer.json runs to ~10 MB; config files are kilobytes
FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
         "tokenizer_config.json", "tokenizer.json", "chat_template.json")


@dataclass(frozen=True)
class ModelFiles:
    source: str  # model.source of the profile: the absolute directory, or the hub id
    directory: Path  # where the files were read
    revision: str | None  # the hub cache snapshot's commit
    files: dict[str, Any] = field(default_factory=dict)  # file name -> parsed JSON, for those present
    chat_template: str | None = None

    def get(self, name: str) -> dict[str, Any]:
        return self.files.get(name) or {}

    def value(self, name: str, dotted: str) -> Any:
        """A value of one file by dotted key (`image_processor.size.longest_edge`), None when absent."""
        value: Any = self.get(name)
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    @property
    def added_tokens(self) -> dict[str, int]:
        """Token text -> id for the tokenizer's added tokens (tokenizer_config.json, tokenizer.json)."""
        found = {t["content"]: int(i) for i, t in self.get("tokenizer_config.json").get("added_tokens_decoder", {}).items()
                 if isinstance(t, dict) and "content" in t}
        for token in self.get("tokenizer.json").get("added_tokens", []):
            if isinstance(token, dict) and "content" in token and "id" in token:
                found.setdefault(token["content"], int(token["id"]))
        return found


def hub_caches(env: Mapping[str, str]) -> list[Path]:
    """Where huggingface_hub keeps downloads, in its own order of precedence."""
    candidates = [env.get("HF_HUB_CACHE"), env.get("HUGGINGFACE_HUB_CACHE"),
                  f"{env['HF_HOME']}/hub" if env.get("HF_HOME") else None,
                  f"{env['XDG_CACHE_HOME']}/huggingface/hub" if env.get("XDG_CACHE_HOME") else None,
                  f"{env['HOME']}/.cache/huggingface/hub" if env.get("HOME") else None]
    return [Path(c) for c in candidates if c]


def _snapshot(repo: Path) -> tuple[Path, str] | None:
    """The snapshot refs/main names, else the newest one holding a config.json."""
    ref = repo / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
        if (repo / "snapshots" / commit / "config.json").is_file():
            return repo / "snapshots" / commit, commit
    snapshots = sorted((p for p in (repo / "snapshots").glob("*") if (p / "config.json").is_file()),
                       key=lambda p: p.stat().st_mtime, reverse=True)
    return (snapshots[0], snapshots[0].name) if snapshots else None


def locate(source: str, env: Mapping[str, str]) -> tuple[str, Path, str | None]:
    """model.source, the directory holding the config files, and the snapshot's commit (hub ids)."""
    path = Path(source)
    if path.is_dir():
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
        raise UserError(f"{source}: its config files are not on this machine (looked in {where}); fetch them without "
                        f"the weights, e.g. `huggingface-cli download {source} config.json generation_config.json "
                        "preprocessor_config.json tokenizer_config.json`, or pass a model directory")
    raise UserError(f"{source}: expected a model directory or a Hugging Face id like Qwen/Qwen2.5-VL-7B-Instruct")


def _read_json(path: Path) -> Any:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise UserError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB; not a model config file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def read_model_files(source: str, env: Mapping[str, str] | None = None) -> ModelFiles:
    profile_source, directory, revision = locate(source, os.environ if env is None else env)
    files = {name: _read_json(directory / name) for name in FILES if (directory / name).is_file()}
    config = files.get("config.json")
    if not isinstance(config, dict) or not isinstance(config.get("architectures"), list) or not config["architectures"]:
        raise UserError(f"{directory / 'config.json'}: names no architectures; expected a Hugging Face model config")
    # The chat template: tokenizer_config.json, else chat_template.jinja / .json beside it (newer transformers).
    template = files.get("tokenizer_config.json", {}).get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"), None)
    if not isinstance(template, str) and (directory / "chat_template.jinja").is_file():
        template = (directory / "chat_template.jinja").read_text(encoding="utf-8")
    if not isinstance(template, str):
        template = files.get("chat_template.json", {}).get("chat_template")
    return ModelFiles(profile_source, directory, revision, files, template if isinstance(template, str) else None)
