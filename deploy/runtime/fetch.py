"""`vllm-deploy fetch`: a hub profile's model onto this host with Hugging Face's own client, before `up`.

Into huggingface_hub's cache layout (the cache `HF_HUB_CACHE` / `HF_HOME` / `XDG_CACHE_HOME` name, else
~/.cache/huggingface/hub; or `cache_dir`), or with `to` into a plain directory a host-storage profile can mount
(the air-gapped path). The steps:

1. refuse what must not run: a model whose code runs (trust-remote-code) at a revision that is not a commit;
2. the hub's model info (`files_metadata`): the commit the revision names, each file's size and sha256;
3. the disk check (preflight's): the files not yet here against the free space where they go;
4. resume: huggingface_hub 2.4 writes each file to a process-unique `<etag>.<uuid>.incomplete` and starts it from
   byte 0 in a new process (it resumes with Range only within one process), so a killed download leaves a partial
   file the client never reuses. We complete such a partial LFS file with the client's own `http_get`
   (`Range: bytes=N-`), check its sha256 against the hub's, and put it where the client looks first;
5. `snapshot_download` does the rest (verified sizes, atomic renames, refs, the tree cache). On a terminal its own
   progress bars show; otherwise the files are fetched one `hf_hub_download` each (the call snapshot_download makes
   per file) on the same number of threads, one line per finished file, before the same `snapshot_download`.

NB: with `to`, everything is written into a hidden directory beside it (`.NAME.partial`), renamed to `to` when
complete: `to` never holds half a model, and a killed run resumes from the hidden one.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deploy.errors import UserError, shown
from deploy.plan import Plan
from deploy.runtime.hub import free_bytes, hub_cache_dir, hub_endpoint, hub_errors, hub_model_files
from deploy.runtime.preflight import ModelDisk, disk_check

COMMIT = re.compile(r"[0-9a-f]{40}")
WORKERS = 8  # snapshot_download's default
TOKEN_FILE_CAP = 4096  # a token is ~40 characters
HASH_CHUNK = 8 * 1024 * 1024

Progress = Literal["bars", "lines"]


@dataclass(frozen=True)
class FetchResult:
    path: Path  # the snapshot directory (cache) or `to`
    commit: str
    files: int
    downloaded_files: int  # files fetched by this run (resumed ones included)
    downloaded_bytes: int  # their sizes, as the hub reports them
    resumed: list[tuple[str, int]]  # files completed from a partial download, and the byte they resumed at
    seconds: float
    up_to_date: bool  # nothing was missing


def size_text(size: int) -> str:
    """Bytes as the hub's pages show them (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def read_token(token_file: Path | None, env: Mapping[str, str]) -> str | None:
    """The hub token: the file's first line, else `HF_TOKEN`, else None (the client's own login, if any)."""
    if token_file is None:
        return env.get("HF_TOKEN") or None
    try:
        with token_file.open("rb") as handle:
            data = handle.read(TOKEN_FILE_CAP + 1)
    except OSError as exc:
        raise UserError(f"--token-file {shown(str(token_file))}: cannot be read ({exc.strerror})") from None
    lines = data.decode("utf-8", "replace").strip().splitlines()
    if len(data) > TOKEN_FILE_CAP or len(lines) != 1 or not lines[0].strip().isprintable() or " " in lines[0].strip():
        # NB: the file's content is never shown, not even in part: it is meant to be a secret.
        raise UserError(
            f"--token-file {shown(str(token_file))}: expected one line holding the token (hf_…), nothing else"
        )
    return lines[0].strip()


def check_fetchable(plan: Plan) -> str:
    """The revision to fetch, or a UserError saying why this profile cannot be fetched."""
    storage = plan.storage
    if storage.kind == "host":
        raise UserError(
            f"{plan.name}: the model is a host directory ({shown(storage.host_path or '')}), nothing to fetch; "
            "to fill such a directory, run `vllm-deploy fetch HUB_PROFILE --to DIR` with a profile whose "
            "model.source is the hub id"
        )
    if storage.kind != "hub":
        raise UserError(f"{plan.name}: model.storage is {storage.kind!r}: the model is built into the image")
    revision = storage.revision or "main"
    if plan.engine.trust_remote_code and not COMMIT.fullmatch(revision):
        raise UserError(
            f"{plan.name}: engine.trust-remote-code runs Python code from {plan.model}, and revision "
            f"{shown(revision)} is not a commit: a push to the repository would change the code this host runs. "
            "Pin it: set model.revision to the 40-hex commit you reviewed"
        )
    return revision


class _Target:
    """Where the files go: the hub cache layout, or a plain directory (being filled in `staging`)."""

    def __init__(self, repo_id: str, cache_dir: Path, local_dir: Path | None) -> None:
        from huggingface_hub.file_download import repo_folder_name

        self.repo_id, self.cache_dir, self.local_dir = repo_id, cache_dir, local_dir
        self.storage = cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")

    def present(self, name: str, commit: str) -> bool:
        """The file is complete here for this commit (as the client itself decides it, without asking the hub)."""
        if self.local_dir is None:
            return (self.storage / "snapshots" / commit / name).exists()
        # NB: the client's record (.cache/huggingface/download/NAME.metadata: commit, etag, time), read here
        # without its reader, which creates .cache/huggingface in a directory it only looks at.
        record = self.local_dir / ".cache" / "huggingface" / "download" / f"{name}.metadata"
        try:
            with record.open(encoding="utf-8") as handle:
                recorded = handle.readline().strip()
        except (OSError, UnicodeDecodeError):
            return False
        return recorded == commit and (self.local_dir / name).is_file()

    def partials(self, name: str, sha256: str) -> tuple[list[Path], Path, Path]:
        """Partial downloads the client left for this file, where the complete file goes, and the client's lock."""
        if self.local_dir is None:
            blobs = self.storage / "blobs"
            lock = self.cache_dir / ".locks" / self.storage.name / f"{sha256}.lock"
            return sorted(blobs.glob(f"{sha256}.*.incomplete")), blobs / sha256, lock
        from huggingface_hub._local_folder import get_local_download_paths

        paths = get_local_download_paths(self.local_dir, name)
        stem = paths.incomplete_path(sha256).name.removesuffix(".incomplete")
        return (
            sorted(paths.incomplete_path(sha256).parent.glob(f"{stem}.*.incomplete")),
            paths.file_path,
            paths.lock_path,
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _resume(
    target: _Target,
    repo_id: str,
    commit: str,
    endpoint: str,
    token: str | None,
    name: str,
    size: int,
    sha256: str,
) -> int | None:
    """Complete the largest partial download of an LFS file with Range; the byte it resumed at, or None."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    partials, destination, lock = target.partials(name, sha256)
    if not partials:
        return None
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):  # NB: the client's lock: a live download of the same file finishes first
        partials = [p for p in partials if p.exists()]
        if not partials or destination.exists():
            return None
        partial = max(partials, key=lambda p: p.stat().st_size)
        start = partial.stat().st_size
        # NB: the client writes in 10 MB pieces (DOWNLOAD_CHUNK_SIZE): a killed small file left nothing worth a Range.
        if start == 0 or start > size:
            for other in partials:
                other.unlink(missing_ok=True)
            return None
        with partial.open("ab") as handle:
            http_get(
                hf_hub_url(repo_id, name, revision=commit, endpoint=endpoint),
                handle,
                resume_size=start,
                headers=build_hf_headers(token=token),
                expected_size=size,
                displayed_filename=name,
            )
        if _sha256(partial) != sha256:
            partial.unlink()  # the client downloads it afresh
            return None
        os.chmod(partial, 0o644)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, destination)
        for other in partials:
            other.unlink(missing_ok=True)
    if target.local_dir is not None and destination.exists():
        # NB: after the lock is released: the client's metadata writer takes the same lock (not reentrant).
        from huggingface_hub._local_folder import write_download_metadata

        write_download_metadata(target.local_dir, name, commit, sha256)
    return start


def fetch(
    plan: Plan,
    *,
    to: Path | None = None,
    cache_dir: Path | None = None,
    token: str | None = None,
    progress: Progress = "lines",
    say: Callable[[str], None] = print,
    env: Mapping[str, str] | None = None,
) -> FetchResult:
    """Download the plan's hub model (see the module's docstring). `say` gets one line per finished file."""
    env = os.environ if env is None else env
    revision = check_fetchable(plan)
    endpoint = hub_endpoint(env, plan)
    repo_id = plan.model
    started = time.monotonic()
    if to is not None:
        to = to.expanduser().absolute()
    with hub_errors(repo_id, revision, endpoint, token):
        commit, sizes, sha256 = hub_model_files(repo_id, revision, token, endpoint)
        if not COMMIT.fullmatch(commit):
            raise UserError(f"{shown(endpoint)} answered a commit that is not 40 hex digits: {shown(commit)}")
        if to is not None and to.exists():
            return _existing(to, repo_id, revision, commit, sizes, started)
        cache = (cache_dir or hub_cache_dir(env)).expanduser().absolute()
        staging = to.parent / f".{to.name}.partial" if to is not None else None
        target = _Target(repo_id, cache, staging)
        missing = {name: size for name, size in sizes.items() if not target.present(name, commit)}
        where = staging.parent if staging is not None else cache
        check = disk_check(ModelDisk("hub", str(where), sum(missing.values()), free_bytes(where)))
        if check.verdict == "fail":
            raise UserError(f"not enough disk for {repo_id}: {check.detail}; {check.fix}")
        if staging is not None:
            staging.mkdir(parents=True, exist_ok=True)
        resumed = _resume_all(target, repo_id, commit, endpoint, token, missing, sha256, say)
        _download(target, repo_id, revision, commit, endpoint, token, missing, progress, say)
        path = _finish(target, to, staging, repo_id, revision, commit, endpoint, token)
    return FetchResult(
        path,
        commit,
        len(sizes),
        len(missing),
        sum(missing.values()),
        resumed,
        round(time.monotonic() - started, 2),
        not missing,
    )


def _existing(to: Path, repo_id: str, revision: str, commit: str, sizes: dict[str, int], started: float) -> FetchResult:
    """`to` exists: up to date (a no-op), or not ours to change."""
    target = _Target(repo_id, to, to)
    if to.is_dir() and all(target.present(name, commit) for name in sizes):
        return FetchResult(to, commit, len(sizes), 0, 0, [], round(time.monotonic() - started, 2), True)
    raise UserError(
        f"--to {shown(str(to))} exists and does not hold {repo_id} at {shown(revision)} ({commit[:12]}); "
        "remove it or choose another directory: fetch never mixes two revisions in one directory"
    )


def _resume_all(
    target: _Target,
    repo_id: str,
    commit: str,
    endpoint: str,
    token: str | None,
    missing: dict[str, int],
    sha256: dict[str, str],
    say: Callable[[str], None],
) -> list[tuple[str, int]]:
    resumed = []
    for name, size in missing.items():
        if name not in sha256:
            continue  # NB: files kept in git are small: the client fetches them afresh
        began = time.monotonic()
        start = _resume(target, repo_id, commit, endpoint, token, name, size, sha256[name])
        if start is not None:
            resumed.append((name, start))
            say(f"{shown(name)}  {size_text(size)}  {time.monotonic() - began:.1f} s  (resumed at byte {start})")
    return resumed


def _download(
    target: _Target,
    repo_id: str,
    revision: str,
    commit: str,
    endpoint: str,
    token: str | None,
    missing: dict[str, int],
    progress: Progress,
    say: Callable[[str], None],
) -> None:
    """On a terminal, nothing here: snapshot_download's bars show in `_finish`. Otherwise each missing file, one
    line each when it is done."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    if progress == "bars":
        enable_progress_bars()
        return
    disable_progress_bars()
    lock = threading.Lock()
    todo = [name for name in missing if not target.present(name, commit)]

    def one(name: str) -> None:
        began = time.monotonic()
        hf_hub_download(
            repo_id,
            name,
            revision=commit,
            cache_dir=target.cache_dir,
            local_dir=target.local_dir,
            token=token,
            endpoint=endpoint,
        )
        with lock:
            say(f"{shown(name)}  {size_text(missing[name])}  {time.monotonic() - began:.1f} s")

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for done in [pool.submit(one, name) for name in todo]:
            done.result()


def _finish(
    target: _Target,
    to: Path | None,
    staging: Path | None,
    repo_id: str,
    revision: str,
    commit: str,
    endpoint: str,
    token: str | None,
) -> Path:
    """snapshot_download over what is there: the download itself on a terminal, else the check that every file
    is complete (and the ref of a branch or tag); then `to` gets its files whole."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        repo_id,
        revision=revision if target.local_dir is None else commit,
        cache_dir=target.cache_dir,
        local_dir=target.local_dir,
        token=token,
        endpoint=endpoint,
        max_workers=WORKERS,
    )
    if to is None or staging is None:
        return Path(path)
    os.replace(staging, to)
    return to
