"""`vllm-deploy fetch` and doctor's disk check against the loopback hub (deploy/bench/hub_server.py): the real
huggingface_hub client, real files, no mocks.

The model is the tiny test VLM's files as tests/fixtures/models/tiny-vlm keeps them, plus two weight shards of
deterministic bytes (building the real weights needs torch, which lives in the engine venv)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.bench.hub_server import HubServer
from deploy.plan import resolve
from deploy.runtime.preflight import ModelDisk, disk_check, model_disk
from deploy.spec import load_profile
from deploy.spec.variant import write_variant
from tests.conftest import REPO

REPO_ID = "tiny/tiny-vlm"
COMMIT = "0123456789abcdef" * 2 + "01234567"
SHARD_1, SHARD_2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
# NB: the client writes what it receives in 10 MB pieces: only a larger file leaves a partial worth resuming.
SIZES = {SHARD_1: 1_500_000, SHARD_2: 24_000_000}
TOKEN = "hf_" + "TestTokenNeverShown" * 2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hub") / "tiny-vlm"
    shutil.copytree(REPO / "tests" / "fixtures" / "models" / "tiny-vlm", out)
    rng = random.Random(0)
    for name, size in SIZES.items():
        (out / name).write_bytes(rng.randbytes(size))
    return out


def profile(tmp_path: Path, revision: str = COMMIT, **engine) -> Path:
    changes = {"name": "fetch-test", "model": {"source": REPO_ID, "revision": revision}}
    return write_variant("qwen2_5-vl-7b", tmp_path / "fetch.yaml", changes | ({"engine": engine} if engine else {}))


@pytest.fixture
def hub(model_dir) -> Iterator[HubServer]:
    with HubServer(model_dir, REPO_ID, COMMIT) as server:
        yield server


def environment(server: HubServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_CACHE", "HF_HOME")}
    return env | {
        "HF_ENDPOINT": server.root,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "PYTHONPATH": str(REPO),
        **extra,
    }


def fetch(server: HubServer, tmp_path: Path, *args: str, env: dict[str, str] | None = None, ref: Path | None = None):
    """`python -m deploy fetch` as a user runs it (a real process: its own imports, its stdout not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "deploy", "fetch", str(ref or profile(tmp_path)), *args],
        env=env or environment(server, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def same_files(model_dir: Path, out: Path) -> None:
    for source in model_dir.iterdir():
        assert hashlib.sha256((out / source.name).read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()


@pytest.mark.slow
def test_download_into_a_directory_then_a_second_run_is_a_no_op(hub, model_dir, tmp_path):
    out = tmp_path / "models" / "tiny"
    done = fetch(hub, tmp_path, "--to", str(out))
    assert done.returncode == 0, done.stderr
    same_files(model_dir, out)
    assert not list(tmp_path.glob("models/.*partial")), "the staging directory is renamed, not left"
    assert all(hub.body_bytes[name] == size for name, size in SIZES.items())
    # one line per finished file (stdout is not a terminal): name, size, seconds
    assert f"{SHARD_2}  24.0 MB  " in done.stdout and "9 of 9 files" in done.stdout
    served = sum(hub.body_bytes.values())
    again = fetch(hub, tmp_path, "--to", str(out))
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout
    assert sum(hub.body_bytes.values()) == served and hub.requests["head"] == 9


@pytest.mark.slow
def test_download_into_the_hub_cache_layout(hub, model_dir, tmp_path):
    env = environment(hub, tmp_path)
    done = fetch(hub, tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    snapshot = tmp_path / "hf-home" / "hub" / "models--tiny--tiny-vlm" / "snapshots" / COMMIT
    same_files(model_dir, snapshot)
    served = sum(hub.body_bytes.values())
    assert fetch(hub, tmp_path, env=env).returncode == 0
    assert sum(hub.body_bytes.values()) == served


@pytest.mark.slow
def test_killed_midway_then_resumed_with_range(model_dir, tmp_path):
    out = tmp_path / "tiny"
    with HubServer(model_dir, REPO_ID, COMMIT, bytes_per_second=6_000_000) as hub:
        env = environment(hub, tmp_path)
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy", "fetch", str(profile(tmp_path)), "--to", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        staging = tmp_path / ".tiny.partial"
        deadline = time.monotonic() + 60
        try:
            # the first shard complete on disk, the second partly written
            while not (
                (staging / SHARD_1).is_file()
                and any(p.stat().st_size for p in staging.rglob("*.incomplete"))
                and hub.body_bytes[SHARD_2] < SIZES[SHARD_2] - 2_000_000
            ):
                assert time.monotonic() < deadline, f"no midway point: {hub.body_bytes}"
                assert process.poll() is None, "fetch ended before it was killed"
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)  # only the process this test started, by its handle
            process.wait()
        first_run = dict(hub.body_bytes)
        assert not out.exists(), "nothing half-written where the model goes"
        hub.bytes_per_second = None
        done = fetch(hub, tmp_path, "--to", str(out), env=env)
    assert done.returncode == 0, done.stderr
    same_files(model_dir, out)
    assert hub.body_bytes[SHARD_1] == SIZES[SHARD_1], "a finished file is not downloaded again"
    [(name, start)] = hub.range_starts
    assert name == SHARD_2 and 0 < start <= first_run[SHARD_2]
    assert hub.body_bytes[SHARD_2] - first_run[SHARD_2] == SIZES[SHARD_2] - start
    assert f"(resumed at byte {start})" in done.stdout
    assert not list(out.rglob("*.incomplete"))


@pytest.mark.slow
def test_a_revision_the_hub_lacks_is_a_clear_error(hub, tmp_path):
    done = fetch(hub, tmp_path, "--to", str(tmp_path / "out"), ref=profile(tmp_path, revision="v9.9"))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {REPO_ID}: revision v9.9 does not exist on {hub.root}")
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
    assert not sum(hub.body_bytes.values())


@pytest.mark.slow
def test_an_unreachable_hub_is_a_clear_error(hub, tmp_path):
    env = environment(hub, tmp_path, HF_ENDPOINT="http://127.0.0.1:9")  # the discard port: refused
    done = fetch(hub, tmp_path, env=env)
    assert done.returncode == 2 and "http://127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr


def test_trust_remote_code_needs_a_pinned_commit(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never asked: refused before any request
    result = cli("fetch", str(profile(tmp_path, revision="main", **{"trust-remote-code": True})))
    assert result.code == 2
    assert "engine.trust-remote-code runs Python code from tiny/tiny-vlm, and revision main is not a commit" in (
        result.err
    )


def test_profiles_without_a_hub_model_are_refused(cli):
    result = cli("fetch", "tiny-cpu")
    assert result.code == 2 and "built into the image" in result.err
    result = cli("fetch", "minicpm-v-2_6")
    assert result.code == 2 and "a host directory" in result.err and "--to DIR" in result.err


@pytest.mark.slow
def test_the_token_from_a_file_or_the_environment_is_sent_never_shown(model_dir, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with HubServer(model_dir, REPO_ID, COMMIT, token=TOKEN) as hub:
        denied = fetch(hub, tmp_path, "--to", str(tmp_path / "a"))
        assert denied.returncode == 2 and "no token does not grant access" in denied.stderr
        by_file = fetch(hub, tmp_path, "--to", str(tmp_path / "b"), "--token-file", str(token_file))
        by_env = fetch(hub, tmp_path, "--to", str(tmp_path / "c"), env=environment(hub, tmp_path, HF_TOKEN=TOKEN))
        wrong = fetch(hub, tmp_path, env=environment(hub, tmp_path, HF_TOKEN=TOKEN[:-1] + "X"))
    assert by_file.returncode == 0 and by_env.returncode == 0, by_file.stderr + by_env.stderr
    assert wrong.returncode == 2
    assert f"Bearer {TOKEN}" in hub.authorizations
    for run in (denied, by_file, by_env, wrong):
        assert TOKEN not in run.stdout + run.stderr and TOKEN[:-1] not in run.stdout + run.stderr
        assert TOKEN not in " ".join(str(a) for a in run.args)


def test_a_token_file_must_hold_one_line_only(cli, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\nsecond line {TOKEN}\n")
    result = cli("fetch", str(profile(tmp_path)), "--token-file", str(token_file))
    assert result.code == 2 and "expected one line holding the token" in result.err and TOKEN not in result.err


def test_the_disk_check_fails_before_any_download(model_dir, tmp_path, cli, monkeypatch):
    huge = 10**18  # an exabyte: more than any disk here has free
    with HubServer(model_dir, REPO_ID, COMMIT, reported_sizes={SHARD_2: huge}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.root)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        plan = resolve(load_profile(str(profile(tmp_path))))
        disk = model_disk(plan, None, os.environ)
        assert disk is not None and disk.model_bytes is not None and disk.model_bytes > huge
        check = disk_check(disk)
        assert check.verdict == "fail" and "GB free" in check.detail and "fetch --to DIR" in check.fix
        result = cli("fetch", str(profile(tmp_path)), "--to", str(tmp_path / "out"))
        assert result.code == 2 and "not enough disk for tiny/tiny-vlm: the model needs 1000000000." in result.err
        assert not sum(hub.body_bytes.values()) and not (tmp_path / "out").exists()
        assert not list(tmp_path.glob(".out.partial"))


def test_the_disk_check_passes_and_skips_with_a_reason(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.root)
    plan = resolve(load_profile(str(profile(tmp_path))))
    assert disk_check(model_disk(plan, str(tmp_path), os.environ) or ModelDisk("hub", "", 0, 0)).verdict == "ok"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    skipped = disk_check(model_disk(plan, str(tmp_path), os.environ) or ModelDisk("hub", "", 0, 0))
    assert skipped.verdict == "warn" and "did not answer" in skipped.detail


def test_an_existing_directory_of_another_revision_is_left_alone(hub, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.root)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = cli("fetch", str(profile(tmp_path)), "--to", str(out))
    assert result.code == 2 and "fetch never mixes two revisions" in result.err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


@pytest.mark.slow
def test_the_profiles_hub_endpoint_wins_over_the_environment(hub, model_dir, tmp_path):
    """model.hub-endpoint (a mirror) is where the profile's fetch step downloads from: `fetch` goes there too,
    whatever HF_ENDPOINT says."""
    changes = {"name": "fetch-test", "model": {"source": REPO_ID, "revision": COMMIT, "hub-endpoint": hub.root}}
    ref = write_variant("qwen2_5-vl-7b", tmp_path / "mirror.yaml", changes)
    env = environment(hub, tmp_path, HF_ENDPOINT="http://127.0.0.1:9")  # NB: nothing listens on the discard port
    done = fetch(hub, tmp_path, "--to", str(tmp_path / "out"), env=env, ref=ref)
    assert done.returncode == 0, done.stderr
    same_files(model_dir, tmp_path / "out")
