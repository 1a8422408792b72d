"""Session fixtures for the engine-venv tests: one vLLM process (`vllm`) for every table and argv check, one
tiny model (`tiny_model`) for every test that needs a built one, and the host vLLM server test_engine.py checks
(`host_vllm`). Each import of vLLM costs 8-17 s and each build of the tiny model 5-10 s on a 2-core machine, so
each happens once per run, not once per test. The host server starts with the session and test_engine.py runs
last: it loads (~50 s of CPU) while the first modules run and then idles, instead of being waited for alone."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import REPO, digests

ENGINE_MODULE = "test_engine.py"
SESSION_SCRIPT = REPO / "tests" / "tools" / "vllm_session.py"
TINY_MODEL_SCRIPT = REPO / "deploy" / "assets" / "tiny_model.py"
ANSWER_DEADLINE_SECONDS = 600  # importing vLLM alone takes 10-30 s on a busy 2-core machine
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def engine_python() -> Path:
    value = os.environ.get("ENGINE_PYTHON")
    path = Path(value) if value else REPO / ".venv-engine" / "bin" / "python"
    if not path.exists():
        pytest.fail(f"no engine python at {path}: set ENGINE_PYTHON or run `make engine` (creates .venv-engine)")
    return path


class VllmSession:
    """The client of tests/tools/vllm_session.py: one engine-venv process that imported vLLM once."""

    def __init__(self, python: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [str(python), str(SESSION_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=sink,  # NB: a file, not a pipe nobody reads: vLLM's logging cannot block the process
                text=True,
                cwd=REPO,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin: IO[str] = self.process.stdin
        self.lines: queue.Queue[str] = queue.Queue()
        # NB: a reader thread, so that every answer has a deadline even if the process hangs.
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        started = time.monotonic()
        self.import_seconds = self._answer("importing vLLM")["import_seconds"]
        self.ready_seconds = time.monotonic() - started

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.lines.put(line)
        self.lines.put("")  # end of output: the process ended

    def _answer(self, what: str) -> Any:
        try:
            line = self.lines.get(timeout=ANSWER_DEADLINE_SECONDS)
        except queue.Empty:
            pytest.fail(f"vllm_session.py: no answer to {what} in {ANSWER_DEADLINE_SECONDS} s:\n{self.tail()}")
        if not line:
            pytest.fail(f"vllm_session.py ended (exit {self.process.wait()}) before {what}:\n{self.tail()}")
        answer = json.loads(line)
        assert answer["ok"], f"vllm_session.py failed at {what}:\n{answer['error']}\n{self.tail()}"
        return answer["result"]

    def ask(self, op: str, **fields: Any) -> Any:
        self.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.stdin.flush()
        return self._answer(op)

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def table(self, name: str) -> str:
        """The text the generator of deploy/data/NAME writes (e.g. scripts/vllm_serve_options.py)."""
        return self.ask("table", name=name)

    def parse(self, argvs: list[list[str]]) -> list[dict]:
        """tests/tools/vllm_parse.py's answer for each argv."""
        return self.ask("parse", argvs=argvs)

    def resolve(self, argvs: list[list[str]]) -> list[str | None]:
        """tests/tools/vllm_resolve.py's answer for each argv."""
        return self.ask("resolve", argvs=argvs)

    def close(self) -> None:
        if self.stdin.closed:
            return
        self.stdin.close()  # the process ends at the end of its input
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()  # only the process this session started, by its handle
            self.process.wait()


@pytest.fixture(scope="session")
def vllm(tmp_path_factory, measured) -> Iterator[VllmSession]:
    """The session's one vLLM process (tests/tools/vllm_session.py), shared by the table and argv tests."""
    session = VllmSession(engine_python(), tmp_path_factory.mktemp("vllm-session") / "stderr.log")
    measured["vLLM session start (one vLLM import for every table and argv)"] = (
        f"{session.ready_seconds:.1f} s (import and the three tables: {session.import_seconds} s)"
    )
    try:
        yield session
    finally:
        session.close()


LAST_VLLM_USER = pytest.StashKey[str]()


def pytest_collection_modifyitems(config, items):
    # NB: test_engine.py's tests last (a stable sort): see the module's docstring.
    items.sort(key=lambda item: item.path.name == ENGINE_MODULE)
    users = [item.nodeid for item in items if "vllm" in getattr(item, "fixturenames", ())]
    if users:
        config.stash[LAST_VLLM_USER] = users[-1]


def pytest_runtest_teardown(item, nextitem):
    """NB: the vLLM process (~0.5 GB resident) ends after its last test, not with the session: the unit and
    static tests that run after it need none of it."""
    if item.nodeid == item.config.stash.get(LAST_VLLM_USER, None) and "vllm" in item.funcargs:
        item.funcargs["vllm"].close()


@dataclass(frozen=True)
class TinyModel:
    """The tiny model as the session built it: where, what the script printed, and its files right then
    (a later test may read the folder, e.g. a vLLM server; these figures stay the build's own)."""

    path: Path
    printed: str
    beside: list[str]
    digests: dict[str, str]


@pytest.fixture(scope="session")
def tiny_model_build(tmp_path_factory, measured) -> TinyModel:
    """deploy/assets/tiny_model.py run on its own in a fresh process, as an image build runs it; once a session."""
    out = tmp_path_factory.mktemp("model") / "tiny-vlm"
    started = time.monotonic()
    proc = subprocess.run(
        [str(engine_python()), str(TINY_MODEL_SCRIPT), str(out)],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **OFFLINE_ENV},
    )
    assert proc.returncode == 0, f"tiny_model.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    measured["tiny model build (once a session)"] = f"{time.monotonic() - started:.1f} s"
    printed = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return TinyModel(out, printed, sorted(p.name for p in out.parent.iterdir()), digests(out))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_build) -> Path:
    """The folder of the session's tiny model."""
    return tiny_model_build.path


@dataclass
class HostVllm:
    """The host vLLM server (engine venv) with the argv of a tiny-cpu variant, as test_engine.py checks it."""

    process: subprocess.Popen
    plan: Any
    base_url: str
    key: str
    log: Path
    started: float  # time.monotonic() at its launch
    ready_seconds: float | None = None  # launch to /health 200 (the session's other tests run meanwhile)


@pytest.fixture(scope="session", autouse=True)
def host_vllm(request, tmp_path_factory) -> Iterator[HostVllm | None]:
    """Launched when the session has test_engine.py's tests, at the session's first integration test; not waited
    for here (a thread records when it answers)."""
    if not any(item.path.name == ENGINE_MODULE for item in request.session.items):
        yield None
        return
    import secrets

    from deploy.plan import host_command, host_environment, resolve
    from deploy.render import write_generation_config
    from deploy.runtime.net import free_port, wait_for_http
    from deploy.spec import load_profile
    from deploy.spec.variant import write_variant

    tiny_model = request.getfixturevalue("tiny_model")
    scratch = tmp_path_factory.mktemp("vllm")
    # tiny-cpu with a media allowlist (the local image server's address): redirects are then off.
    variant = write_variant("tiny-cpu", scratch / "profile.yaml", {"media": {"allowed-domains": ["127.0.0.1"]}})
    plan = resolve(load_profile(str(variant)))
    port = free_port()
    key = "sk-" + secrets.token_hex(16)
    # NB: the plan's engine flags with the host's model path, host and port; nothing else changes.
    generation = write_generation_config(plan, scratch / "generation")
    python = engine_python()
    command = host_command(plan, str(python.parent / "vllm"), str(tiny_model), "127.0.0.1", port, generation)
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", **host_environment(plan, str(scratch)), "VLLM_API_KEY": key}
    log = scratch / "vllm.log"
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = HostVllm(process, plan, f"http://127.0.0.1:{port}", key, log, started)

    def record_ready() -> None:
        try:
            wait_for_http(f"{server.base_url}/health", 900, alive=lambda: process.poll() is None)
            server.ready_seconds = time.monotonic() - started
        except (RuntimeError, TimeoutError):
            pass  # NB: test_engine.py's own wait reports it, with the log

    threading.Thread(target=record_ready, daemon=True).start()
    try:
        yield server
    finally:
        process.terminate()  # only the process we started, by its handle
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
