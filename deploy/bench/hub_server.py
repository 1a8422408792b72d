"""A loopback server with the Hugging Face hub's HTTP shape: the real `huggingface_hub` client downloads from it
offline (`HF_ENDPOINT=server.root`, `HF_HUB_DISABLE_XET=1`).

It serves the files of one local directory as the model repo `repo_id` at one 40-hex `commit`, answering what
huggingface_hub 2.4's `snapshot_download` and `HfApi.model_info` ask (docs/FACTS: the measured request shape):

- `GET /api/models/{repo}/revision/{rev}` (`?blobs=true`: each file's size, blob id and LFS sha256),
- `GET /api/models/{repo}/tree/{rev}?recursive=true&expand=false`,
- `HEAD`/`GET /{repo}/resolve/{rev}/{file}` with `X-Repo-Commit`, `ETag`, `Content-Length`; `Range: bytes=N-` → 206.

`rev` is "main" or the commit; anything else is 404 with `X-Error-Code: RevisionNotFound`, which
`hf_raise_for_status` (huggingface_hub/utils/_http.py) turns into RevisionNotFoundError; another repo is
`RepoNotFound`, a missing file `EntryNotFound`. With `token` set, a request without `Authorization: Bearer <token>`
is 401, as the hub answers for a private repo.

The client also asks `/api/agent-harnesses` once a process: a plain 404 (counted as an error) is what it expects.

Counters (body bytes per file, requests per kind, the Range starts) let a test prove what was downloaded again;
`bytes_per_second` throttles each file body so a test can kill a download midway.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from smoke_tests.image_server import BackgroundServer

# Files the hub keeps in LFS (its default .gitattributes): their ETag is the content's sha256.
LFS_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".msgpack", ".h5", ".ckpt"})
LFS_MIN_BYTES = 10 * 1024 * 1024  # the hub refuses larger files outside LFS
LFS_POINTER_SIZE = 134
CHUNK = 64 * 1024


@dataclass(frozen=True)
class RepoFile:
    path: str  # in the repo, "/"-separated
    local: Path
    size: int
    git_oid: str  # git blob sha1: the ETag of a file stored in git
    sha256: str | None  # LFS files: the ETag


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _scan(directory: Path) -> dict[str, RepoFile]:
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        data = path.read_bytes()
        lfs = path.suffix in LFS_SUFFIXES or len(data) > LFS_MIN_BYTES
        files[name] = RepoFile(
            name, path, len(data), git_blob_oid(data), hashlib.sha256(data).hexdigest() if lfs else None
        )
    return files


class HubServer(BackgroundServer):
    """Serves `directory` as model repo `repo_id` at `commit`; a context manager like smoke_tests' ImageServer."""

    def __init__(
        self,
        directory: Path,
        repo_id: str,
        commit: str,
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        bytes_per_second: float | None = None,
        token: str | None = None,
        reported_sizes: dict[str, int] | None = None,
    ) -> None:
        self.repo_id = repo_id
        self.commit = commit
        self.files = _scan(directory)
        self.bytes_per_second = bytes_per_second  # NB: read per request: a test may lift the throttle midway
        self.token = token
        # NB: model-info's sizes may differ from the bytes served: a test fakes a model too large for the disk.
        self.reported_sizes = dict(reported_sizes or {})
        self.body_bytes: Counter[str] = Counter()  # file -> body bytes written by GET /resolve
        self.requests: Counter[str] = Counter()  # revision, tree, head, get, range, error
        self.range_starts: list[tuple[str, int]] = []
        self.authorizations: list[str] = []  # the Authorization headers seen, for the token tests
        self.errors: list[tuple[int, str]] = []  # status and path of each error answer
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the hub: the client reuses its connections

            def do_GET(self) -> None:
                server._handle(self, head=False)

            def do_HEAD(self) -> None:
                server._handle(self, head=True)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # NB: the counters keep the record

        super().__init__(Handler, bind, port, "hub-server")

    # --- what the hub answers ---

    def sizes(self) -> dict[str, int]:
        """Each file's size as model-info reports it."""
        return {name: self.reported_sizes.get(name, f.size) for name, f in self.files.items()}

    def _count(self, kind: str) -> None:
        with self._lock:
            self.requests[kind] += 1

    def _handle(self, request: BaseHTTPRequestHandler, head: bool) -> None:
        url = urllib.parse.urlsplit(request.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        with self._lock:
            self.authorizations.append(request.headers.get("Authorization", ""))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(request, 401, "RepoNotFound", "Invalid credentials in Authorization header", head)
        api = f"/api/models/{self.repo_id}/"
        if path.startswith(api):
            kind, _, rest = path[len(api) :].partition("/")
            rev = rest.split("/", 1)[0]
            if kind not in ("revision", "tree") or not self._revision_known(rev):
                return self._revision_error(request, rev, head)
            self._count(kind)
            if kind == "revision":
                return self._json(request, self._model_info(query.get("blobs") == ["true"] or "blobs" in query), head)
            return self._json(request, self._tree(), head)
        if path.startswith("/api/models/"):
            return self._error(request, 404, "RepoNotFound", "Repository not found", head)
        prefix = f"/{self.repo_id}/resolve/"
        if not path.startswith(prefix):
            return self._error(request, 404, "RepoNotFound", "Repository not found", head)
        rev, _, name = path[len(prefix) :].partition("/")
        if not self._revision_known(rev):
            return self._revision_error(request, rev, head)
        found = self.files.get(name)
        if found is None:
            return self._error(request, 404, "EntryNotFound", f"{name} does not exist on {rev}", head)
        self._serve_file(request, found, head)

    def _revision_known(self, rev: str) -> bool:
        return rev in ("main", self.commit)

    def _revision_error(self, request: BaseHTTPRequestHandler, rev: str, head: bool) -> None:
        self._error(request, 404, "RevisionNotFound", f"Invalid rev id: {rev}", head)

    def _model_info(self, blobs: bool) -> dict:
        siblings = []
        for name, f in self.files.items():
            entry: dict = {"rfilename": name}
            if blobs:
                size = self.sizes()[name]
                entry |= {"size": size, "blobId": f.git_oid}
                if f.sha256:
                    entry["lfs"] = {"size": size, "sha256": f.sha256, "pointerSize": LFS_POINTER_SIZE}
            siblings.append(entry)
        return {
            "_id": self.commit[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "sha": self.commit,
            "private": False,
            "disabled": False,
            "gated": False,
            "tags": [],
            "siblings": siblings,
        }

    def _tree(self) -> list[dict]:
        entries = []
        for name, f in self.files.items():
            entry: dict = {"type": "file", "oid": f.git_oid, "size": f.size, "path": name}
            if f.sha256:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": LFS_POINTER_SIZE}
            entries.append(entry)
        return entries

    def _serve_file(self, request: BaseHTTPRequestHandler, f: RepoFile, head: bool) -> None:
        start = 0
        wanted = request.headers.get("Range", "")
        if wanted.startswith("bytes=") and wanted[6:].endswith("-") and wanted[6:-1].isdigit():
            start = min(int(wanted[6:-1]), f.size)
        self._count("head" if head else "range" if start else "get")
        request.send_response(206 if start else 200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(f.size - start))
        request.send_header("Accept-Ranges", "bytes")
        request.send_header("X-Repo-Commit", self.commit)
        request.send_header("ETag", f'"{f.sha256 or f.git_oid}"')
        if f.sha256:
            request.send_header("X-Linked-Etag", f'"{f.sha256}"')
            request.send_header("X-Linked-Size", str(f.size))
        if start:
            request.send_header("Content-Range", f"bytes {start}-{f.size - 1}/{f.size}")
        request.end_headers()
        if head:
            return
        if start:
            with self._lock:
                self.range_starts.append((f.path, start))
        with f.local.open("rb") as source:
            source.seek(start)
            begun, sent = time.monotonic(), 0
            while True:
                rate = self.bytes_per_second
                chunk = source.read(max(min(CHUNK, int(rate / 20)), 1) if rate else CHUNK)
                if not chunk:
                    return
                try:
                    request.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client left (killed): what it got is counted
                sent += len(chunk)
                with self._lock:
                    self.body_bytes[f.path] += len(chunk)
                if rate:
                    ahead = begun + sent / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)

    def _json(self, request: BaseHTTPRequestHandler, data: object, head: bool) -> None:
        body = json.dumps(data).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if not head:
            request.wfile.write(body)

    def _error(self, request: BaseHTTPRequestHandler, status: int, code: str, message: str, head: bool) -> None:
        self._count("error")
        with self._lock:
            self.errors.append((status, request.path))
        body = json.dumps({"error": message}).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.send_header("X-Error-Code", code)
        request.send_header("X-Error-Message", message)
        request.end_headers()
        if not head:
            request.wfile.write(body)


def fetch_throughput(work: Path, size_mb: int = 256, repeats: int = 3) -> dict:
    """`vllm-deploy fetch --to` (a real process, as a user runs it) of a model of one `size_mb` MB shard and the
    tiny VLM's config files from this loopback hub: MB/s per run and the median. No Docker; ~1 s a run here."""
    import os
    import random
    import shutil
    import statistics
    import subprocess
    import sys

    from deploy.spec.variant import write_variant

    repo = work / "fetch-bench-repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models" / "tiny-vlm", repo)
    rng = random.Random(0)
    with (repo / "model.safetensors").open("wb") as shard:
        for _ in range(size_mb):
            shard.write(rng.randbytes(1_000_000))
    commit = hashlib.sha1(b"fetch-bench", usedforsecurity=False).hexdigest()
    profile = write_variant(
        "qwen2_5-vl-7b",
        work / "fetch-bench.yaml",
        {"name": "fetch-bench", "model": {"source": "bench/tiny-vlm", "revision": commit}},
    )
    runs = []
    with HubServer(repo, "bench/tiny-vlm", commit) as hub:
        total = sum(f.size for f in hub.files.values())
        for number in range(repeats):
            out = work / f"fetch-bench-out-{number}"
            shutil.rmtree(out, ignore_errors=True)
            env = os.environ | {"HF_ENDPOINT": hub.root, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(work / "hf-home")}
            started = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "deploy", "fetch", str(profile), "--to", str(out)],
                env=env,
                check=True,
                capture_output=True,
            )
            runs.append(time.monotonic() - started)
            shutil.rmtree(out)
    shutil.rmtree(repo)
    speeds = [round(total / 1e6 / seconds, 1) for seconds in runs]
    return {
        "model_mb": round(total / 1e6, 1),
        "runs_s": [round(s, 2) for s in runs],
        "mb_per_s": speeds,
        "median_mb_per_s": statistics.median(speeds),
    }


def hub_from_an_empty_volume(work: Path) -> dict:
    """A hub-storage copy of tiny-cpu brought up by `up` from an empty model volume: its fetch step downloads the
    tiny model (the bench's host copy, work/tiny-vlm) from this loopback hub, bound where containers reach the
    host, then the engine loads it offline. `up`'s own figures."""
    import subprocess

    from deploy.plan import resolve
    from deploy.runtime.docker import DockerDaemon, docker_cli
    from deploy.runtime.net import free_port
    from deploy.runtime.stack import Stack, down, up
    from deploy.spec import load_profile
    from deploy.spec.variant import write_variant

    root, repository = work / "hub", "vllm-deploy/tiny-vlm"
    commit = hashlib.sha1(b"hub-bench", usedforsecurity=False).hexdigest()
    daemon = DockerDaemon()
    with HubServer(work / "tiny-vlm", repository, commit, bind=daemon.bridge_gateway()) as hub:
        model = {"source": repository, "storage": "hub", "served-name": "tiny-vlm", "hub-endpoint": hub.root}
        changes = {"name": "tiny-cpu-bench-hub", "server": {"port": free_port()}, "model": model}
        plan = resolve(load_profile(str(write_variant("tiny-cpu", work / "hub-profile.yaml", changes))))
        stack = Stack(plan, root)
        subprocess.run([docker_cli(), "volume", "rm", "-f", f"{plan.name}_model-cache"], capture_output=True)
        try:
            result = up(stack)
        finally:
            down(stack, remove_volumes=True)
        served = sum(hub.body_bytes.values())
    fetched = result.fetch_seconds or 0.0
    return {
        "model_mb": round(served / 1e6, 1),
        "fetch_s": fetched,
        "healthy_s": result.healthy_seconds,
        "total_s": round(fetched + result.healthy_seconds, 1),
    }
