"""The seed snippets as subprocesses, started before their cases so that their start-up overlaps earlier ones.

A fresh Python spends ~1.2 s importing openai before the snippet sends anything; with the rest of its start-up
and its exit, the two scripts (one per snippet) were nearly half the suite's time on a warm server. Each script
is started at the beginning of the session with SMOKE_SEED_WAIT_FOR_GO set: it loads what the snippets load,
then waits for a line on stdin. The case sends that line and reads the script's output, so each snippet's
request still goes out when its case runs, one case at a time, in the suite's order (a case that runs without
the early start starts its script then). A script whose case never runs is killed at the end of the session.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

SCRIPT = Path(__file__).with_name("seed_snippets.py")
GATE_VARIABLE = "SMOKE_SEED_WAIT_FOR_GO"


class SeedRuns:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = {**env, GATE_VARIABLE: "1"}
        self._started: dict[str, subprocess.Popen[str]] = {}

    def start(self, snippet: str) -> None:
        """Start the script of `snippet` (once); it waits for its case."""
        if snippet not in self._started:
            self._started[snippet] = subprocess.Popen(
                [sys.executable, str(SCRIPT), snippet],
                env=self._env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
            )

    def run(self, snippet: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Let the script of `snippet` send its request (starting it now if it was not started early) and wait
        for it, as `subprocess.run(..., timeout=timeout)` would."""
        self.start(snippet)
        proc = self._started.pop(snippet)
        try:
            stdout, stderr = proc.communicate("go\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    def close(self) -> None:
        """Kill the scripts whose cases did not run (only ours, by their handles)."""
        for proc in self._started.values():
            proc.kill()
            proc.communicate()
        self._started.clear()
