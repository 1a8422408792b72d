"""The seed snippets as processes of their own, from one script started before their cases.

A fresh Python spends ~1 s of CPU importing openai before a snippet sends anything; one script per snippet
(each importing it) was most of the suite's client-side CPU, and on a 2-core machine the two imports slowed
everything running beside them. So one script (seed_snippets.py with SMOKE_SEED_WAIT_FOR_GO set) is started at
the beginning of the session: it loads what the snippets load, once, then waits for requests on stdin. Each case
sends one and waits: the script forks, and the snippet runs, unchanged, in a process of its own with its own
output and exit status, while its case runs, one case at a time, in the suite's order. A case that runs without
the early start starts the script then. The script is stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

SCRIPT = Path(__file__).with_name("seed_snippets.py")
GATE_VARIABLE = "SMOKE_SEED_WAIT_FOR_GO"
CLOSE_SECONDS = 5.0  # the script ends at the end of its input; past this it is killed


class SeedRuns:
    def __init__(self, env: Mapping[str, str], directory: Path, script: Path = SCRIPT) -> None:
        self._env = {**env, GATE_VARIABLE: "1"}
        self._directory = directory
        self._script_path = script
        self._script: subprocess.Popen[bytes] | None = None
        self._pending = b""

    def start(self) -> None:
        """Start the script (once): it loads what the snippets need, then waits for their cases."""
        if self._script is None:
            # NB: its own session, so that a run past its deadline is stopped with the snippet's process too.
            with (self._directory / "seed-script.log").open("wb") as log:
                self._script = subprocess.Popen(
                    [sys.executable, str(self._script_path)],
                    env=self._env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                )

    def run(self, snippet: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run `snippet` in a process of its own (starting the script now if it was not started early) and wait
        for it, as `subprocess.run([python, seed_snippets.py, snippet], timeout=timeout)` would."""
        self.start()
        script = self._script
        assert script is not None and script.stdin is not None and script.stdout is not None
        args = [sys.executable, str(self._script_path), snippet]
        out, err = (self._directory / f"snippet-{snippet}.{name}" for name in ("out", "err"))
        request = {"snippet": snippet, "stdout": str(out), "stderr": str(err)}
        deadline = time.monotonic() + timeout
        try:
            script.stdin.write(json.dumps(request).encode() + b"\n")
            script.stdin.flush()
            answer = self._answer(script, deadline)
        except subprocess.TimeoutExpired:
            self._stop()
            raise subprocess.TimeoutExpired(args, timeout, _read(out), _read(err)) from None
        except OSError:  # the script is gone (a broken pipe)
            answer = None
        if answer is None:
            code = self._stop()
            log = _read(self._directory / "seed-script.log")
            return subprocess.CompletedProcess(
                args, code or 1, _read(out), f"the seed script ended (exit {code}):\n{log}"
            )
        return subprocess.CompletedProcess(args, int(answer["exit"]), _read(out), _read(err))

    def _answer(self, script: subprocess.Popen[bytes], deadline: float) -> dict | None:
        """The script's next answer line, None at the end of its output; TimeoutExpired past `deadline`."""
        assert script.stdout is not None
        fd = script.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise subprocess.TimeoutExpired(script.args, 0)
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def _stop(self) -> int | None:
        """Kill the script and a snippet's process still running (only ours: the session the script leads)."""
        script, self._script = self._script, None
        if script is None:
            return None
        if script.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(script.pid, signal.SIGKILL)
        code = script.wait()
        for stream in (script.stdin, script.stdout):
            if stream is not None:
                stream.close()
        return code

    def close(self) -> None:
        """End the script: the end of its input stops it; one that does not stop in time is killed."""
        script = self._script
        if script is None:
            return
        try:
            if script.stdin is not None:
                script.stdin.close()
            script.wait(CLOSE_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self._stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
