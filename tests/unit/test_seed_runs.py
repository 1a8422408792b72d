"""smoke_tests/seed_runs.py and the seed script's serve mode: one script loads what the snippets need, each snippet
runs in a process of its own (its output, its exit status), a run past its deadline is stopped, a script that dies
is a failed case, not a hung one. Stand-in snippets: no server needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smoke_tests.seed_runs import SeedRuns
from tests.conftest import REPO

DRIVER = f"""
import os, sys, time
sys.path.insert(0, {str(REPO / "smoke_tests")!r})
import seed_snippets

def ok():
    print("hello", flush=True)
    print("to stderr", file=sys.stderr)

def boom():
    raise RuntimeError("boom")

def exits():
    sys.exit(3)

def slow():
    with open(os.environ["PID_FILE"], "w") as pid_file:
        pid_file.write(str(os.getpid()))
    time.sleep(60)

seed_snippets._serve({{"ok": ok, "boom": boom, "exits": exits, "slow": slow}})
"""


def runs_with(tmp_path: Path, text: str) -> SeedRuns:
    script = tmp_path / "driver.py"
    script.write_text(text)
    return SeedRuns({**os.environ, "PID_FILE": str(tmp_path / "pid")}, tmp_path, script)


def test_each_snippet_runs_in_a_process_of_its_own_with_its_output_and_exit_status(tmp_path):
    runs = runs_with(tmp_path, DRIVER)
    try:
        runs.start()
        first = runs.run("ok", timeout=60)
        assert (first.returncode, first.stdout, first.stderr) == (0, "hello\n", "to stderr\n")
        assert first.args == [sys.executable, str(tmp_path / "driver.py"), "ok"]
        failed = runs.run("boom", timeout=60)
        assert failed.returncode == 1 and failed.stdout == ""
        assert "RuntimeError: boom" in failed.stderr and "Traceback" in failed.stderr
        assert runs.run("exits", timeout=60).returncode == 3
        again = runs.run("ok", timeout=60)  # a failed snippet leaves the script serving
        assert (again.returncode, again.stdout) == (0, "hello\n")
    finally:
        runs.close()
    assert runs._script is None


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_snippet_past_its_deadline_is_stopped_with_the_script(tmp_path):
    runs = runs_with(tmp_path, DRIVER)
    assert runs.run("ok", timeout=60).returncode == 0  # the script is up: the deadline is the snippet's alone
    script = runs._script
    assert script is not None
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        runs.run("slow", timeout=1.5)
    assert raised.value.cmd == [sys.executable, str(tmp_path / "driver.py"), "slow"]
    assert script.poll() is not None and runs._script is None
    snippet_pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 10
    while not _gone(snippet_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(snippet_pid)
    runs.close()


def test_a_script_that_dies_fails_the_case_with_its_output(tmp_path):
    runs = runs_with(tmp_path, "import sys\nprint('cannot start', file=sys.stderr)\nsys.exit(4)\n")
    try:
        result = runs.run("ok", timeout=30)
    finally:
        runs.close()
    assert result.returncode == 4
    assert "the seed script ended (exit 4)" in result.stderr and "cannot start" in result.stderr
