"""Process helpers at the bottom of the runtime: run a command, stream its output, wait for a condition.

Everything above takes a `Runner` as a parameter, so tests pass a fake one and need no Docker.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from deploy.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Completed:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def checked(self, what: str = "") -> Completed:
        """Itself, or a UserError naming the command and the end of its output."""
        if self.ok:
            return self
        detail = (self.stderr or self.stdout).strip()[-3000:]
        command = what or " ".join(self.args[:4]) + (" …" if len(self.args) > 4 else "")
        raise UserError(f"`{command}` failed (exit {self.returncode})" + (f":\n{detail}" if detail else ""))


class Runner(Protocol):
    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        echo: bool = False,
    ) -> Completed: ...


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    echo: bool = False,
) -> Completed:
    """Run a command to completion. With `echo`, its output (stdout and stderr merged) is printed as it
    comes and returned as stdout; otherwise both are captured."""
    if not echo:
        done = subprocess.run(
            list(args),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            text=True,
            capture_output=True,
            timeout=timeout,
        )
        return Completed(list(args), done.returncode, done.stdout, done.stderr)
    lines = []
    with subprocess.Popen(
        list(args),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as process:
        assert process.stdout is not None  # NB: stdout=PIPE
        for line in process.stdout:
            lines.append(line)
            print(line, end="", flush=True)
    return Completed(list(args), process.returncode, "".join(lines))


def follow(args: Sequence[str], *, env: Mapping[str, str] | None = None, on_line: Callable[[str], None]) -> int:
    """Run a command to completion, handing each line of its output (stdout and stderr merged) to `on_line` as it
    comes; a progress bar's carriage-return updates count as lines. Returns the exit code."""
    with subprocess.Popen(
        list(args),
        env=dict(env) if env is not None else None,
        text=True,  # NB: universal newlines: "\r" ends a line too
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    ) as process:
        assert process.stdout is not None  # NB: stdout=PIPE
        for line in process.stdout:
            if line.strip():
                on_line(line.rstrip())
    return process.returncode


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    on_tick: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, float]:
    """Call `probe` until it returns something other than None; return that and the seconds it took.

    `probe` may raise to stop early (a container that exited). TimeoutError after `timeout` seconds.
    """
    started = clock()
    while True:
        result = probe()
        elapsed = clock() - started
        if result is not None:
            return result, elapsed
        if elapsed >= timeout:
            raise TimeoutError(f"not ready after {timeout:.0f} s")
        if on_tick:
            on_tick(elapsed)
        sleep(interval)
