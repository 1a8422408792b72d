"""A stuck engine core, made for real: SIGSTOP to vLLM's engine core and its workers inside a container, while
its API process stays up and keeps answering (FACTS 2026-12-04: vLLM's own /health then stays 200). The tests and
`make bench` use it to judge EngineWatch (the edge module): time to notice, and time to serve again."""

from __future__ import annotations

import subprocess
import time

from deploy.runtime.docker import docker_cli
from deploy.runtime.http import HttpError, fetch
from deploy.runtime.net import HEALTH_CAP, wait_for_http
from deploy.runtime.process import wait_until

# vLLM names its processes (setproctitle): VLLM::EngineCore, and its workers' titles end in Worker…; the API
# server keeps its command line. Run inside the container as its user (no kill binary in our images).
FREEZE = """
import os, signal, sys
frozen = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        title = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')[0]
    except OSError:
        continue
    if title.startswith(b'VLLM::') and (b'EngineCore' in title or b'Worker' in title):
        os.kill(int(pid), getattr(signal, sys.argv[1]))
        frozen.append(pid)
print(' '.join(frozen))
"""


def signal_engine_core(container: str, signal: str = "SIGSTOP", tool: str | None = None) -> list[int]:
    """SIGSTOP (or SIGCONT) vLLM's engine core and its workers in `container`; their pids in the container."""
    done = subprocess.run(
        [tool or docker_cli(), "exec", container, "python3", "-c", FREEZE, signal],
        capture_output=True,
        text=True,
        check=True,
    )
    return [int(pid) for pid in done.stdout.split()]


def hang_and_recover(base_url: str, container: str, restarted, timeout: float, during=lambda: None) -> dict[str, float]:
    """Freeze the engine core in `container` (served at `base_url`); the seconds until /health answers 503, and
    until `restarted()` is true and /health answers 200 again, with no command given. `during()` runs once /health
    has turned (the server still up)."""
    frozen = signal_engine_core(container)
    if not frozen:
        raise RuntimeError(f"no vLLM engine core process found in {container}")
    started = time.monotonic()

    def unhealthy() -> bool | None:
        try:
            return True if fetch("GET", f"{base_url}/health", deadline=2, cap=HEALTH_CAP).status == 503 else None
        except HttpError:
            return True  # NB: gone already: it exited

    _, detected = wait_until(unhealthy, timeout=timeout, interval=0.25)
    during()
    wait_until(lambda: True if restarted() else None, timeout=timeout, interval=0.5)
    wait_for_http(f"{base_url}/health", timeout, interval=0.25)
    return {"detected_after_s": round(detected, 1), "serving_again_after_s": round(time.monotonic() - started, 1)}
