"""The hub as huggingface_hub sees it: where it is (HF_ENDPOINT), where its cache is (HF_HOME), a model's files
and sizes, and its errors as one UserError each. Also the disk's figures the model's room is judged by."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from deploy.errors import UserError, shown
from deploy.plan import Plan

T = TypeVar("T")

HUB_DEADLINE_SECONDS = 10.0  # the hub's model-info answer, all told; past it the disk check is skipped
HUB_READ_TIMEOUT_SECONDS = 5.0  # each read of the model info (the client's own timeout)


def nearest_existing(path: Path) -> Path:
    """`path`, or its closest ancestor that exists: where a directory about to be made takes its room from."""
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(nearest_existing(path)).free


def directory_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (links are not followed: a hub cache's snapshots are links)."""
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(root, name))
                if not os.path.islink(os.path.join(root, name)):
                    total += info.st_size
    return total


def hub_model_files(
    repo_id: str, revision: str | None, token: str | None, endpoint: str, timeout: float = HUB_READ_TIMEOUT_SECONDS
) -> tuple[str, dict[str, int], dict[str, str]]:
    """The commit `revision` names, each file's size, and the LFS files' sha256: the hub's model info
    (`HfApi.model_info(files_metadata=True)`). Raises what huggingface_hub raises."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint, token=token).model_info(
        repo_id, revision=revision, files_metadata=True, timeout=timeout
    )
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    sha256 = {s.rfilename: s.lfs.sha256 for s in info.siblings or [] if s.lfs is not None}
    return str(info.sha), sizes, sha256


def hub_endpoint(env: Mapping[str, str], plan: Plan | None = None) -> str:
    """Where the hub is: the profile's model.hub-endpoint (what its fetch step uses), else `HF_ENDPOINT`, as
    huggingface_hub reads it, else huggingface.co."""
    profile = plan.fetch.environment.get("HF_ENDPOINT") if plan and plan.fetch else None
    return (profile or env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_cache_dir(env: Mapping[str, str]) -> Path:
    """huggingface_hub's cache (`HF_HUB_CACHE`, else `HF_HOME`/hub, else `XDG_CACHE_HOME`/huggingface/hub, else
    ~/.cache/huggingface/hub), read from `env` when asked rather than when the client was imported."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(xdg).expanduser() / "huggingface" / "hub"


@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str, endpoint: str, token: str | None) -> Iterator[None]:
    """huggingface_hub's errors (and the network's, and the disk's) as one UserError each: no traceback."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def said(exc: BaseException) -> str:
        text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        return shown(text.replace(token, "(token)") if token else text)

    credentials = "the token from --token-file" if token and token != os.environ.get("HF_TOKEN") else "HF_TOKEN"
    try:
        yield
    except RevisionNotFoundError:
        raise UserError(
            f"{repo_id}: revision {shown(revision)} does not exist on {shown(endpoint)}; "
            "set model.revision to a branch, tag or commit of the repository"
        ) from None
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise UserError(
            f"{repo_id}: not found on {shown(endpoint)} (HTTP {exc.response.status_code}), or private or gated and "
            f"{credentials if token else 'no token'} does not grant access; check model.source, or put a token in "
            "HF_TOKEN or a --token-file"
        ) from None
    except RemoteEntryNotFoundError as exc:
        raise UserError(f"{repo_id}: a file listed by the hub is missing on {shown(endpoint)}: {said(exc)}") from None
    except HfHubHTTPError as exc:
        raise UserError(f"{shown(endpoint)} answered HTTP {exc.response.status_code}: {said(exc)}") from None
    except (httpx2.HTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise UserError(
            f"cannot download {repo_id} from {shown(endpoint)} ({type(exc).__name__}: {said(exc)}); "
            "check the network or HF_ENDPOINT, then run fetch again: finished files are kept"
        ) from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and not exc.filename:
            raise
        raise UserError(
            f"cannot write the model: {exc.strerror or said(exc)}"
            + (f" ({shown(str(exc.filename))})" if exc.filename else "")
        ) from None


def within(seconds: float, read: Callable[[], T]) -> T | None:
    """`read()`, or None when it raised or has not returned within `seconds` (it is left to finish on its own).

    NB: the Docker SDK bounds each socket read, not a whole answer; a daemon that trickles holds only its thread."""
    found: list[T] = []

    def run() -> None:
        with contextlib.suppress(Exception):  # any failure of the call reads as "no answer"
            found.append(read())

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    return found[0] if found else None


@dataclass(frozen=True)
class ModelDisk:
    """The model's size and the room where it goes: the figures of the disk check."""

    kind: Literal["hub", "host"]
    target: str  # the directory the model goes to (hub), or the model's own directory (host)
    model_bytes: int | None  # None: not known (the hub did not answer, the directory is missing)
    free_bytes: int | None
    problem: str = ""  # why model_bytes is None


def model_disk(plan: Plan, docker_root: str | None, env: Mapping[str, str]) -> ModelDisk | None:
    """The disk figures of the plan's model: the hub's sizes against the room where `up` puts them (Docker's
    data root holds the hub cache volume; without a daemon, the host's hub cache), or a host directory's size."""
    storage = plan.storage
    if storage.kind == "host" and storage.host_path:
        path = Path(storage.host_path)
        if not path.is_dir():
            return ModelDisk("host", str(path), None, None, "the directory does not exist")
        return ModelDisk("host", str(path), directory_bytes(path), free_bytes(path))
    if storage.kind != "hub":
        return None
    target = Path(docker_root) if docker_root and Path(docker_root).is_dir() else hub_cache_dir(env)
    read = within(
        HUB_DEADLINE_SECONDS,
        lambda: hub_model_files(plan.model, storage.revision, env.get("HF_TOKEN") or None, hub_endpoint(env, plan)),
    )
    if read is None:
        problem = (
            f"{hub_endpoint(env, plan)} did not answer with the model's file sizes within {HUB_DEADLINE_SECONDS:.0f} s"
        )
        return ModelDisk("hub", str(target), None, free_bytes(target), problem)
    return ModelDisk("hub", str(target), sum(read[1].values()), free_bytes(target))
