"""The baseline of every ratio: `vllm serve` as a host process with the plan's flags and environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deploy.plan import Plan, host_command, host_environment
from deploy.render import write_generation_config
from deploy.runtime.net import free_port, wait_for_http

HEALTH_DEADLINE_SECONDS = 600


class BareServer:
    """One host process at a time: `start` waits for /health and returns the seconds it took."""

    def __init__(self, engine_python: Path, plan: Plan, model_dir: Path, work: Path, key: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # NB: the container mounts the plan's generation config; a host process reads the same file from scratch.
        generation = write_generation_config(plan, work / "generation") if plan.generation else None
        self.command = host_command(
            plan, str(engine_python.parent / "vllm"), str(model_dir), "127.0.0.1", self.port, generation
        )
        self.env = {
            "PATH": f"{engine_python.parent}:/usr/bin:/bin",
            **host_environment(plan, str(work)),
            "VLLM_API_KEY": key,
            "VLLM_CACHE_ROOT": str(work / "bare-vllm-cache"),
        }
        self.log = work / "bare.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=sink, stderr=subprocess.STDOUT)
        process = self.process
        return wait_for_http(f"{self.url}/health", HEALTH_DEADLINE_SECONDS, alive=lambda: process.poll() is None)

    def stop(self) -> None:
        if self.process:  # NB: only the process this object started, by its handle
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
