"""A profile's compose stack: preflight -> render -> build -> start -> wait, and the way back down.

Configuration reaches the container as command and environment only, so runtime-only profile
changes reuse the image.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.errors import UserError
from deploy.plan import Plan
from deploy.render import output_prefix, render, write_files
from deploy.runtime import envfile, images, preflight
from deploy.runtime.docker import Compose, DockerDaemon
from deploy.runtime.process import Runner, follow, run, wait_until
from deploy.runtime.router import RouterClient

LOG_TAIL = 40


@dataclass
class Stack:
    plan: Plan
    root: Path  # where compose/<name>/ and k8s/<name>/ are rendered
    runner: Runner = run
    docker: DockerDaemon = field(default_factory=DockerDaemon)

    @property
    def directory(self) -> Path:
        return self.root / "compose" / self.plan.name

    @property
    def env_file(self) -> Path:
        return self.directory / ".env"

    @property
    def compose(self) -> Compose:
        return Compose(self.directory, self.runner)

    @property
    def endpoint(self) -> str:
        return self.plan.local_endpoint

    def key(self) -> str | None:
        """The API key as compose sees it: the environment first, then the stack's .env."""
        return envfile.key(self.plan.api_key_source, self.env_file)

    @property
    def services(self) -> list[str]:
        """The compose services: the replicas, the router in front of them and Prometheus, where present."""
        return (
            [r.service for r in self.plan.instances]
            + (["router"] if self.plan.router else [])
            + (["prometheus"] if self.plan.monitoring else [])
        )

    @property
    def front(self) -> str:
        """The service that publishes the endpoint."""
        return "router" if self.plan.router else self.plan.instances[0].service

    def container(self, service: str | None = None) -> str | None:
        return self.compose.container(service or self.front)

    def router(self) -> RouterClient | None:
        """The running router's API, or None without one. Its admin calls run inside its container (`docker
        exec`): the published port is the front's, which never passes them."""
        container = self.container("router") if self.plan.router else None
        if not container or not self.plan.router:
            return None
        return RouterClient(
            self.endpoint,
            [self.compose.docker, "exec", container],
            self.plan.router.python,
            self.plan.router.admin_url,
            self.runner,
        )

    def gateway(self) -> str | None:
        """The host's address on the stack's network, where the replicas reach a server of ours (images)."""
        container = self.container(self.plan.instances[0].service)
        return self.docker.gateway(container) if container else None


def stack_for(plan: Plan, root: Path) -> Stack:
    """The stack of a plan rendered under `root`, where `render` puts its files (a twin's apart)."""
    return Stack(plan, root / output_prefix(plan))


@dataclass(frozen=True)
class UpResult:
    build_seconds: float
    build_steps_run: int
    fetch_seconds: float | None  # hub storage: the fetch step, before the engines; None: nothing to fetch
    healthy_seconds: float
    image: str  # the image id the container runs


def prepare(stack: Stack, echo: bool = True, no_cache: bool = False) -> int:
    """Render the profile, make sure a key exists, build its image (a cache hit when unchanged; every step with
    `no_cache`, as on a fresh machine, the build cache kept for the next build).

    Returns how many RUN/COPY steps actually ran (0: nothing rebuilt, or nothing to build).
    """
    write_files(render(stack.plan), stack.root)
    if envfile.ensure_key(stack.plan.api_key_source, stack.env_file):
        print(f"generated a random API key into {stack.env_file} (mode 0600, git-ignored)")
    if not stack.plan.image.build and not stack.plan.router and not stack.plan.monitoring:
        return 0  # the official image as it is: compose pulls it
    images.ensure_base_images(stack.plan, stack.docker, stack.runner)
    images.fill_wheelhouse(stack.plan, stack.directory, stack.runner)
    steps = images.build(stack.plan, stack.compose, echo=echo, no_cache=no_cache)[0]
    fill_twin_model(stack)
    return steps


def fill_twin_model(stack: Stack) -> bool:
    """A twin's weights where the GPU profile's would be: its empty host directory, as this host's user (the
    files stay readable by the container's uid). (A hub twin's cache is filled by its fetch step.) Returns
    whether anything was copied."""
    plan = stack.plan
    if not plan.twin_of or not plan.image.tiny_model_dir:
        return False
    if plan.storage.kind != "host" or not plan.storage.host_path:
        return False
    target = Path(plan.storage.host_path)
    if (target / "config.json").is_file():
        return False
    target.mkdir(parents=True, exist_ok=True)
    print(f"copying the tiny test VLM into {target} (once) …")
    stack.runner(
        [
            stack.compose.docker,
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            f"{os.getuid()}:{os.getgid()}",
            "--entrypoint",
            "cp",
            "-v",
            f"{target}:/out",
            plan.image.reference,
            "-R",
            f"{plan.image.tiny_model_dir}/.",
            "/out/",
        ],
        timeout=300,
    ).checked("copying the tiny test VLM out of the image")
    return True


def fetch_model(stack: Stack) -> float | None:
    """Hub storage: run the fetch step alone, in the foreground, its progress on one live line (the download's
    bytes, rate and ETA as Hugging Face's client prints them), before `up` starts the engines; the seconds it took.
    A failure stops here with the step's last lines. Later, compose runs the step again before each engine: it
    finds the model there and exits at once."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    fetch = stack.plan.fetch
    if fetch is None:
        return None
    command = stack.compose.command("run", "--rm", "--no-deps", "-T", fetch.name)
    started, tail = time.monotonic(), collections.deque[str](maxlen=LOG_TAIL)
    with Live(console=Console(stderr=True), transient=True, refresh_per_second=4) as live:

        def show(text: str) -> None:
            tail.append(text)
            live.update(Text(f"⏳ {time.monotonic() - started:5.1f} s  fetching {fetch.what}  │ {text[-110:]}"))

        code = follow(command, env=stack.compose.environment, on_line=show)
    if code != 0:
        shown = "\n".join(tail)
        raise UserError(
            f"{stack.plan.name}: fetching {fetch.what} failed (exit {code}).\n--- its last lines ---\n{shown}"
        )
    seconds = time.monotonic() - started
    # NB: the snapshot's path (`hf download` prints it last on stdout), not whichever of its progress bars (stderr)
    # the merged stream happened to end with.
    where = next((line for line in reversed(tail) if line.startswith("/")), (tail or ["fetched"])[-1])
    print(f"{fetch.what}: in the model volume after {seconds:.1f} s ({where[:120]})")
    return seconds


def wait_healthy(stack: Stack, container: str, timeout: float) -> float:
    """Show elapsed time and vLLM's last log line until the container is healthy; return seconds."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    def probe() -> bool | None:
        state = stack.docker.state(container)
        if state is None or state.status in ("exited", "dead") or state.health == "unhealthy":
            reason = "the health check failed" if state and state.health == "unhealthy" else "the container exited"
            raise UserError(
                f"{stack.plan.name} did not become healthy: {reason}.\n"
                f"--- last {LOG_TAIL} log lines ---\n{stack.docker.logs(container, LOG_TAIL)}"
            )
        return True if state.health == "healthy" else None

    with Live(console=Console(stderr=True), transient=True, refresh_per_second=4) as live:

        def show(elapsed: float) -> None:
            last = (stack.docker.logs(container, 1).splitlines() or [""])[-1][:100]
            live.update(Text(f"⏳ {elapsed:5.1f} s  loading {stack.plan.served_model_name}  │ {last}"))

        try:
            return wait_until(probe, timeout=timeout, on_tick=show)[1]
        except TimeoutError:
            raise UserError(
                f"{stack.plan.name} did not become healthy: not healthy after {timeout:.0f} s (the "
                f"profile's load budget).\n--- last {LOG_TAIL} log lines ---\n"
                f"{stack.docker.logs(container, LOG_TAIL)}"
            ) from None


def check_host(stack: Stack) -> None:
    problems = preflight.failures(
        preflight.judge(stack.plan, preflight.gather(stack.plan, stack.compose, stack.docker, stack.runner))
    )
    if problems:  # NB: before anything is rendered or built
        raise UserError(f"{stack.plan.name} cannot come up on this host:\n" + "\n".join(f"  - {p}" for p in problems))


def wait_services(stack: Stack, services: list[str]) -> float:
    """Wait until each service's container is healthy, in order; the seconds it took in all."""
    started = time.monotonic()
    for service in services:
        container = stack.container(service)
        if not container:
            raise UserError(f"compose reported no container for the {service} service")
        wait_healthy(stack, container, stack.plan.health.start_period_seconds)
    return time.monotonic() - started


def up(stack: Stack) -> UpResult:
    """Preflight, render, build (cached), start every service and wait until all are healthy."""
    check_host(stack)
    started = time.monotonic()
    steps = prepare(stack)
    build_seconds = time.monotonic() - started
    fetched = fetch_model(stack)
    stack.compose("up", "-d", "--no-build", *stack.services, echo=True).checked("docker compose up")
    healthy = wait_services(stack, stack.services)
    image = stack.docker.inspect(stack.container(stack.plan.instances[0].service) or "").get("Image", "")
    fetch_seconds = round(fetched, 1) if fetched is not None else None
    return UpResult(round(build_seconds, 1), steps, fetch_seconds, round(healthy, 1), image)


def rollout(stack: Stack, on_step=print) -> list[tuple[str, float]]:
    """Replace the replicas one at a time with the profile's current image and settings, each
    healthy before the next; then the router, if its settings changed.

    Each replica leaves the router first (no new request reaches it, the ones in flight finish, then
    vLLM's --shutdown-timeout drains on SIGTERM) and rejoins once healthy: the others serve meanwhile,
    and no request meets a replica that is going away."""
    check_host(stack)
    prepare(stack)
    router = stack.router()
    done = []
    for replica in stack.plan.instances:
        on_step(f"replacing {replica.service} …")
        started = time.monotonic()
        if router:
            router.remove(replica.url)
        stack.compose("up", "-d", "--no-deps", "--no-build", "--force-recreate", replica.service).checked(
            f"docker compose up {replica.service}"
        )
        wait_services(stack, [replica.service])
        if router:
            router.add(replica.url)
        done.append((replica.service, round(time.monotonic() - started, 1)))
        on_step(f"{replica.service} healthy and back in the router after {done[-1][1]} s")
    if stack.plan.router:
        stack.compose("up", "-d", "--no-deps", "--no-build", "router").checked("docker compose up router")
        wait_services(stack, ["router"])
    return done


def down(stack: Stack, remove_volumes: bool = False) -> None:
    # NB: `make down` keeps the model and cache volumes; only throwaway stacks (tests, bench) remove them.
    stack.compose("down", *(["--volumes"] if remove_volumes else []), echo=True).checked("docker compose down")


def logs(stack: Stack, follow: bool) -> None:
    stack.compose("logs", *(["-f"] if follow else []), "--tail", "200", *stack.services, echo=True)


def push(stack: Stack) -> list[str]:
    """Build the profile's images (a cache hit when unchanged) and push them to the profile's registry."""
    plan = stack.plan
    references = ([plan.image.reference] if plan.image.build else []) + ([plan.router.image] if plan.router else [])
    if not references:
        raise UserError(
            f"{plan.name} runs the official image {plan.image.reference} unchanged: nothing to push; "
            "clusters pull it from Docker Hub as it is"
        )
    if not plan.image.registry:
        raise UserError(
            f"{plan.name} has no image.registry: set it to where your cluster pulls from, e.g. "
            "image: {registry: registry.example.com/ml}, then push again"
        )
    prepare(stack)
    for reference in references:
        images.push(reference, stack.runner)
    return references


def how_to_call(stack: Stack, ref: str | None = None) -> str:
    """What to tell the user once the stack is healthy, with a request they can paste into a shell. `ref`: how
    the user named the profile (a file's path), for the make commands; default: its name."""
    plan = stack.plan
    shown_ref = shlex.quote(ref or plan.name)
    source = plan.api_key_source
    kept = f"${source} in your environment" if os.environ.get(source) else f"{stack.env_file} ({source}=…)"
    body = {
        "model": plan.served_model_name,
        "max_tokens": 16,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": plan.smoke.prompt},
                    {"type": "image_url", "image_url": {"url": plan.smoke.image_url}},
                ],
            }
        ],
    }
    # NB: JSON built as data and quoted as one shell word: a prompt with quotes cannot break out.
    return (
        f"✅ {plan.name} is healthy at {stack.endpoint}/v1 (model {plan.served_model_name!r})\n"
        f"   API key: {kept}\n"
        f"   try it:\n"
        f"     set -a; . {shlex.quote(str(stack.env_file))}; set +a\n"
        f'     curl -s {stack.endpoint}/v1/chat/completions -H "Authorization: Bearer ${source}" \\\n'
        f"       -H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body, ensure_ascii=False))}\n"
        f"   smoke test: make smoke PROFILE={shown_ref}    stop: make down PROFILE={shown_ref}"
    )
