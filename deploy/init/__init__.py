"""`vllm-deploy init SOURCE`: a commented profile for a model, derived from its own config files.

source (find and read the files) · draft (derive each value and why) · here: render the profile from
templates/init/profile.yaml.j2, check it validates and resolves, write it without clobbering.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from deploy.errors import UserError
from deploy.init.draft import Draft, draft_profile
from deploy.init.source import ModelFiles, read_model_files

__all__ = ["Draft", "ModelFiles", "init_profile", "write_new"]


def profile_text(files: ModelFiles, draft: Draft) -> str:
    from deploy.render import template_text

    description = f"{draft.architecture} from {draft.source}, drafted by vllm-deploy init"
    return template_text("init/profile.yaml.j2", draft=draft, files=sorted(files.files), description=description)


def init_profile(source: str, *, name: str | None = None, device: str = "cuda", gpu_memory_gib: float | None = None,
                 images: int | None = None, env: Mapping[str, str] | None = None) -> str:
    """The profile text for a model; a UserError when the files say it cannot be served, or the draft is invalid."""
    from deploy.plan import resolve
    from deploy.spec import parse_profile

    if gpu_memory_gib is not None and (device == "cpu" or gpu_memory_gib <= 0):
        raise UserError("init: --gpu-memory-gib sizes a GPU profile (a positive number of GiB); a CPU profile sizes "
                        "its KV cache with engine.kv-cache-space-gib")
    if images is not None and not 0 <= images <= 1000:
        raise UserError("init: --images takes 0 to 1000")
    files = read_model_files(source, env)
    draft = draft_profile(files, name=name, device=device, gpu_memory_gib=gpu_memory_gib, images=images)
    text = profile_text(files, draft)
    try:
        resolve(parse_profile(text, f"the profile drafted for {source}"))
    except UserError as exc:
        raise UserError(f"init: the profile drafted for {source} does not validate; nothing was written\n{exc}") from None
    return text


def write_new(path: Path, text: str, force: bool) -> None:
    """Write `text` to `path` whole (staged beside it, then moved in); never over an existing file unless `force`."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory; expected a file name for the profile")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such directory")
    if path.exists() and not force:
        raise UserError(f"{path}: exists; nothing was written (pass --force to overwrite it)")
    fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
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
    finally:
        if os.path.exists(staged):
            os.unlink(staged)
