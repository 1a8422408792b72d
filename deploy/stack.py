"""Bring a rendered profile up with Docker Compose v2, watch it load, take it down.

Everything here drives the real `docker` CLI (Compose v2 plugin, BuildKit). Configuration reaches
the container as command and environment only, so runtime-only profile changes reuse the image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import UserError
from deploy.plan import Plan, device_facts
from deploy.render import render, write_files

ASSETS = Path(__file__).parent / "assets"
LOG_TAIL = 40


def docker_cli() -> str:
    # NB: Debian's 20.10 client drives BuildKit (RUN --mount); a newer client without buildx does not.
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise UserError("no docker client found: install Docker (Debian: apt-get install docker.io), then retry")


def _docker_env() -> dict[str, str]:
    # NB: compose would try buildx bake first; the classic BuildKit path needs no buildx plugin.
    return {**os.environ, "DOCKER_BUILDKIT": "1", "COMPOSE_BAKE": "false"}


def run_command(args: list[str], cwd: Path | None = None, check: bool = True, capture: bool = True,
         timeout: float | None = None) -> subprocess.CompletedProcess:
    completed = subprocess.run(args, cwd=cwd, env=_docker_env(), text=True, timeout=timeout,
                               capture_output=capture)
    if check and completed.returncode != 0:
        detail = (completed.stderr or completed.stdout or "").strip() if capture else ""
        raise UserError(f"`{' '.join(args[:4])} …` failed (exit {completed.returncode})" + (f":\n{detail}" if detail else ""))
    return completed


@dataclass(frozen=True)
class Stack:
    plan: Plan
    directory: Path  # compose/<name>/

    @property
    def env_file(self) -> Path:
        return self.directory / ".env"

    def compose(self, *args: str) -> list[str]:
        return [docker_cli(), "compose", "--project-directory", str(self.directory), *args]

    @property
    def endpoint(self) -> str:
        return self.plan.local_endpoint


def stack_for(plan: Plan, root: Path) -> Stack:
    return Stack(plan, root / "compose" / plan.name)


# ---------------------------------------------------------------------------------------------
# Preflight: cheap checks that fail before anything is built


def free_port() -> int:
    """A port no one listens on at 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(address: str, port: int) -> bool:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def running_container(stack: Stack) -> str | None:
    completed = run_command(stack.compose("ps", "-q", "vllm"), check=False)
    return completed.stdout.strip() or None


# ---------------------------------------------------------------------------------------------
# Inputs of the build and the run


def ensure_key(stack: Stack) -> str | None:
    """Make sure compose will find the API key; generate one into .env (0600) if none exists.

    Returns a sentence for the user when a key was generated, else None. The key is never printed.
    """
    source = stack.plan.api_key_source
    if os.environ.get(source):
        return None
    existing = stack.env_file.read_text(encoding="utf-8") if stack.env_file.exists() else ""
    if any(line.split("=", 1)[0].strip() == source and line.split("=", 1)[1].strip()
           for line in existing.splitlines() if "=" in line and not line.lstrip().startswith("#")):
        return None
    key = "sk-" + secrets.token_urlsafe(32)
    kept = [line for line in existing.splitlines() if line.split("=", 1)[0].strip() != source]
    text = "\n".join([*kept, f"{source}={key}"]) + "\n"
    temp = stack.env_file.with_name(".env.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temp, stack.env_file)
    return f"generated a random API key into {stack.env_file} (mode 0600, git-ignored)"


def ensure_base_image(plan: Plan) -> None:
    """The CPU base is built from Debian packages when missing: no registry is needed."""
    if run_command([docker_cli(), "image", "inspect", plan.image.base], check=False).returncode == 0:
        return
    if plan.image.base != device_facts()["cpu"]["base-image"]:
        return  # someone else's base: the build pulls it
    print(f"building the base image {plan.image.base} from Debian packages (about a minute, once)", flush=True)
    run_command(["bash", str(ASSETS / "base-image.sh"), plan.image.base], capture=False)


def fill_wheelhouse(stack: Stack) -> None:
    """Put the CPU build of torch into the build context's wheels/, resolved by the host's pip.

    The host's pip configuration decides where it comes from (a find-links folder, the PyTorch CPU
    index via PIP_EXTRA_INDEX_URL, or a mirror), so the image build needs no index for it.
    """
    if stack.plan.device != "cpu":
        return
    wanted = stack.plan.image.engine_env.get("TORCH_VERSION")
    wheels = stack.directory / "wheels"
    if not wanted or any(wheels.glob(f"torch-{wanted}-*.whl")):
        return
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
         f"torch=={wanted}"], capture_output=True, text=True,
    )
    if completed.returncode != 0:
        print(f"warning: could not fetch torch=={wanted} into {wheels} ({completed.stderr.strip().splitlines()[-1:]}); "
              "the image build will ask its package index (set PIP_EXTRA_INDEX_URL to the PyTorch CPU index)",
              file=sys.stderr)


def read_key(stack: Stack) -> str | None:
    """The API key as compose sees it: the environment first, then the stack's .env."""
    source = stack.plan.api_key_source
    if os.environ.get(source):
        return os.environ[source]
    if stack.env_file.exists():
        for line in stack.env_file.read_text(encoding="utf-8").splitlines():
            name, _, value = line.partition("=")
            if name.strip() == source and value.strip():
                return value.strip()
    return None


def compose_gateway(stack: Stack) -> str | None:
    """The host's address on the stack's network: where the container reaches a server of ours."""
    container = running_container(stack)
    if not container:
        return None
    completed = run_command([docker_cli(), "inspect", "-f",
                      "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", container], check=False)
    gateways = completed.stdout.split()
    return gateways[0] if gateways else None


# ---------------------------------------------------------------------------------------------
# Commands


def prepare_image(plan: Plan, root: Path) -> int:
    """Render the profile, make sure a key exists, build its image (a cache hit when unchanged).

    Returns how many RUN/COPY steps actually ran (0: nothing rebuilt).
    """
    stack = stack_for(plan, root)
    write_files(render(plan), root)
    note = ensure_key(stack)
    if note:
        print(note)
    if not plan.image.build:
        return 0  # the official image as it is: compose pulls it
    ensure_base_image(plan)
    fill_wheelhouse(stack)
    return executed_steps(build_log(stack, echo=True))[0]


def build_log(stack: Stack, echo: bool = False) -> str:
    """Build the stack's image (cached where possible) and return BuildKit's plain log, echoed if asked."""
    command = stack.compose("--progress", "plain", "build", "vllm")
    with subprocess.Popen(command, env=_docker_env(), text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as process:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
    if process.returncode != 0:
        raise UserError(f"building {stack.plan.image.reference} failed (exit {process.returncode}):\n" + "".join(lines[-30:]))
    return "".join(lines)


def executed_steps(log_text: str) -> tuple[int, int]:
    """(steps run, steps in total) among the Dockerfile's RUN/COPY steps, from a BuildKit plain log."""
    steps = set(re.findall(r"^#(\d+) \[vllm +\d+/\d+\] (?:RUN|COPY)", log_text, re.M))
    cached = set(re.findall(r"^#(\d+) CACHED", log_text, re.M))
    return len(steps - cached), len(steps)


def image_id(tag: str) -> str | None:
    completed = run_command([docker_cli(), "image", "inspect", "-f", "{{.Id}}", tag], check=False)
    return completed.stdout.strip() or None


def _health(container: str) -> tuple[str, str]:
    completed = run_command([docker_cli(), "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                      container], check=False)
    parts = (completed.stdout.strip() + " ").split(" ", 1)
    return parts[0], parts[1].strip()


def last_log_line(container: str) -> str:
    completed = run_command([docker_cli(), "logs", "--tail", "1", container], check=False)
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return lines[-1][:100] if lines else ""


def logs_tail(container: str, lines: int = LOG_TAIL) -> str:
    completed = run_command([docker_cli(), "logs", "--tail", str(lines), container], check=False)
    return (completed.stdout + completed.stderr).rstrip()


def wait_healthy(stack: Stack, container: str, timeout: float) -> float:
    """Show elapsed time and vLLM's last log line until the container is healthy; return seconds."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(stderr=True)
    started = time.monotonic()
    with Live(console=console, transient=True, refresh_per_second=4) as live:
        while True:
            elapsed = time.monotonic() - started
            state, health = _health(container)
            if health == "healthy":
                return elapsed
            if state in ("exited", "dead") or health == "unhealthy" or elapsed > timeout:
                reason = (f"the container {state}" if state in ("exited", "dead") else
                          "the health check failed" if health == "unhealthy" else
                          f"not healthy after {timeout:.0f} s (the profile's load budget)")
                raise UserError(f"{stack.plan.name} did not become healthy: {reason}.\n"
                                f"--- last {LOG_TAIL} log lines ---\n{logs_tail(container)}")
            live.update(Text(f"⏳ {elapsed:5.1f} s  loading {stack.plan.served_model_name}  │ {last_log_line(container)}"))
            time.sleep(0.5)


def up(plan: Plan, root: Path) -> dict[str, float | str]:
    """Render, build (cached), start and wait for health. Returns timings for the summary."""
    from deploy.doctor import checks, failures

    stack = stack_for(plan, root)
    problems = failures(checks(plan, root))
    if problems:  # NB: before anything is rendered or built
        raise UserError(f"{plan.name} cannot come up on this host:\n" + "\n".join(f"  - {p}" for p in problems))
    timings: dict[str, float | str] = {}
    started = time.monotonic()
    timings["build_steps_run"] = prepare_image(plan, root)
    timings["build_seconds"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    run_command(stack.compose("up", "-d", "--no-build", "vllm"), capture=False)
    container = running_container(stack)
    if not container:
        raise UserError("compose reported no container for the vllm service")
    timings["healthy_seconds"] = round(wait_healthy(stack, container, plan.health.start_period_seconds), 1)
    timings["image"] = image_id(plan.image.reference) or ""
    return timings


def push(plan: Plan, root: Path) -> str:
    """Build the profile's image (a cache hit when unchanged) and push it to the profile's registry."""
    if not plan.image.build:
        raise UserError(f"{plan.name} runs the official image {plan.image.reference} unchanged: nothing to push; "
                        "clusters pull it from Docker Hub as it is")
    if not plan.image.registry:
        raise UserError(f"{plan.name} has no image.registry: set it to where your cluster pulls from, e.g. "
                        "image: {registry: registry.example.com/ml}, then push again")
    prepare_image(plan, root)
    # NB: the docker CLI, not the SDK: it uses the user's registry logins (docker login) as they are.
    run_command([docker_cli(), "push", plan.image.reference], capture=False)
    return plan.image.reference


def down(plan: Plan, root: Path, remove_volumes: bool = False) -> None:
    # NB: `make down` keeps the model and cache volumes; only throwaway stacks (tests, bench) remove them.
    run_command(stack_for(plan, root).compose("down", *(["--volumes"] if remove_volumes else [])), capture=False)


def logs(plan: Plan, root: Path, follow: bool) -> None:
    run_command(stack_for(plan, root).compose("logs", *(["-f"] if follow else []), "--tail", "200", "vllm"), capture=False,
         check=False)


def how_to_call(plan: Plan, root: Path) -> str:
    """What to tell the user once the stack is healthy, with a request they can paste into a shell."""
    stack = stack_for(plan, root)
    source = plan.api_key_source
    kept = f"${source} in your environment" if os.environ.get(source) else f"{stack.env_file} ({source}=…)"
    body = {"model": plan.served_model_name, "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "text", "text": plan.smoke.prompt}, {"type": "image_url", "image_url": {"url": plan.smoke.image_url}}]}]}
    # NB: JSON built as data and quoted as one shell word: a prompt with quotes cannot break out.
    return (
        f"✅ {plan.name} is healthy at {stack.endpoint}/v1 (model {plan.served_model_name!r})\n"
        f"   API key: {kept}\n"
        f"   try it:\n"
        f"     set -a; . {shlex.quote(str(stack.env_file))}; set +a\n"
        f"     curl -s {stack.endpoint}/v1/chat/completions -H \"Authorization: Bearer ${source}\" \\\n"
        f"       -H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body, ensure_ascii=False))}\n"
        f"   smoke test: make smoke PROFILE={plan.name}    stop: make down PROFILE={plan.name}"
    )
