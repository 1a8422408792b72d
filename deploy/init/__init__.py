"""`vllm-deploy init SOURCE`: a commented profile for a model, derived from its own config files.

source  find and read the model's files (a directory, or a Hub id in the local cache; nothing downloaded)
draft   derive each value of the profile, and why
twin    `vllm-deploy twin PROFILE`: the CPU twin of a GPU profile (its deployment's shape, without a GPU)

Here: render the profile from templates/init/profile.yaml.j2, check it validates and resolves, write it
without clobbering.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy.errors import UserError, is_unsafe
from deploy.init.draft import Draft, draft_profile
from deploy.init.source import ModelFiles, read_model_files
from deploy.spec.base import ABSOLUTE_PATH, PATTERN_WORDS, PROFILE_NAME
from deploy.spec.schema import is_hub_id

__all__ = ["Draft", "ModelFiles", "init_profile", "write_new"]

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the same YAML 1.1 as safe_load, in C where built
MAX_CARD_GIB = 10_000  # --gpu-memory-gib: no card comes near it; NB: also refuses inf and nan


def profile_text(files: ModelFiles, draft: Draft) -> str:
    from deploy.render import template_text

    description = f"{draft.architecture} from {draft.source}, drafted by vllm-deploy init"
    return template_text("init/profile.yaml.j2", draft=draft, files=sorted(files.files), description=description)


def _intended(draft: Draft) -> dict[tuple[str, ...], Any]:
    """What the drafted profile must say where init took a value from the model's files (None: absent)."""
    images = {"image": draft.images, "video": 0} if draft.images else None
    return {
        ("name",): draft.name,
        ("model", "source"): draft.source,
        ("model", "revision"): draft.revision,
        ("model", "architecture"): None if "architecture-left-out" in draft.notes else draft.architecture,
        ("engine", "max-model-len"): draft.max_model_len,
        ("engine", "trust-remote-code"): draft.trust_remote_code,
        ("engine", "limit-mm-per-prompt"): images,
        ("engine", "mm-processor-kwargs"): (draft.mm_processor_kwargs or None) if images else None,
        ("smoke", "stop-token-ids"): draft.stop_token_ids,
        ("generation",): {"stop-token-ids": draft.stop_token_ids, **draft.sampling},
    }


def _check_drafted(files: ModelFiles, draft: Draft, text: str) -> None:
    """The drafted text says what init meant, and only that: no unsafe character (a model file's newline or
    bidi control), every value it took from the files reads back the same, and its comments change nothing
    (the same draft with every note a placeholder loads to the same document). A failure is a bug in init."""
    if any(is_unsafe(char) and char != "\n" for char in text):
        raise RuntimeError("init drafted a profile with a control or bidi character")
    document = yaml.load(text, Loader=_LOADER)
    for path, value in _intended(draft).items():
        found: Any = document
        for key in path:
            found = found.get(key) if isinstance(found, dict) else None
        if found != value or type(found) is not type(value):
            raise RuntimeError(f"init drafted {'.'.join(path)} as something other than it meant")
    plain = dataclasses.replace(draft, notes=dict.fromkeys(draft.notes, "x"))
    if yaml.load(profile_text(files, plain), Loader=_LOADER) != document:
        raise RuntimeError("init drafted a comment that changes the profile")


def init_profile(
    source: str,
    *,
    name: str | None = None,
    device: str = "cuda",
    gpu_memory_gib: float | None = None,
    images: int | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The profile text for a model; a UserError when the files say it cannot be served, or the draft is invalid."""
    from deploy.plan import resolve
    from deploy.spec import parse_profile

    if gpu_memory_gib is not None and (device == "cpu" or not 0 < gpu_memory_gib <= MAX_CARD_GIB):
        raise UserError(
            f"init: --gpu-memory-gib sizes a GPU profile (a number of GiB above 0, at most {MAX_CARD_GIB}); "
            "a CPU profile sizes its KV cache with engine.kv-cache-space-gib"
        )
    if images is not None and not 0 <= images <= 1000:
        raise UserError("init: --images takes 0 to 1000")
    if name is not None and not (len(name) <= 40 and re.fullmatch(PROFILE_NAME[1:-1], name)):
        raise UserError(f"init: --name: expected {PATTERN_WORDS[PROFILE_NAME]}, at most 40 characters")
    files = read_model_files(source, env)
    if not (is_hub_id(files.source) or re.fullmatch(ABSOLUTE_PATH[1:-1], files.source)):
        # NB: model.source goes into manifests, mounts and a shell; its comment repeats it.
        raise UserError(
            f"{files.source}: a profile's model.source takes {PATTERN_WORDS[ABSOLUTE_PATH]}; move or "
            "link the model directory to such a path"
        )
    draft = draft_profile(files, name=name, device=device, gpu_memory_gib=gpu_memory_gib, images=images)
    text = profile_text(files, draft)
    try:
        resolve(parse_profile(text, f"the profile drafted for {source}"))
    except UserError as exc:
        raise UserError(
            f"init: the profile drafted for {source} does not validate; nothing was written\n{exc}"
        ) from None
    _check_drafted(files, draft, text)
    return text


def write_new(path: Path, text: str, force: bool) -> None:
    """Write `text` to `path` whole (staged beside it, then moved in); never over an existing file unless `force`."""
    try:
        if path.is_dir():
            raise UserError(f"{path}: is a directory; expected a file name for the profile")
        if not path.parent.is_dir():
            raise UserError(f"{path.parent}: no such directory")
        if path.exists() and not force:
            raise UserError(f"{path}: exists; nothing was written (pass --force to overwrite it)")
        fd, staged = tempfile.mkstemp(prefix=f".{path.name[:100]}.", dir=path.parent)
    except OSError as exc:
        raise UserError(f"{path}: cannot be written ({exc.strerror}); nothing was written") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.chmod(staged, 0o644)
        if force:
            os.replace(staged, path)
        else:
            os.link(staged, path)  # NB: fails if the file appeared meanwhile: never clobbers
    except FileExistsError:
        raise UserError(f"{path}: exists; nothing was written (pass --force to overwrite it)") from None
    except OSError as exc:  # a full disk, a filesystem without hard links, a directory that went away
        raise UserError(f"{path}: cannot be written ({exc.strerror}); nothing was written") from None
    finally:
        if os.path.exists(staged):
            os.unlink(staged)
