"""Images: the registry-free base, the CPU torch wheel in the build context, the build itself, push."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from deploy.errors import UserError
from deploy.facts import device_facts
from deploy.paths import PACKAGE_DIR
from deploy.plan import Plan
from deploy.runtime.docker import Compose, DockerDaemon, cli_environment, docker_cli
from deploy.runtime.process import Runner, run

BASE_IMAGE_SCRIPT = PACKAGE_DIR / "assets" / "base-image.sh"


def ensure_base_images(plan: Plan, docker: DockerDaemon, runner: Runner = run) -> list[str]:
    """Build the registry-free Debian base when a build needs it and it is missing. The ones built."""
    ours = device_facts()["cpu"]["base-image"]
    wanted = {plan.image.base} if plan.image.build else set()
    wanted |= {plan.router.base} if plan.router else set()
    wanted |= {plan.monitoring.base} if plan.monitoring else set()
    built = []
    for base in sorted(wanted):
        if base != ours or docker.image_id(base):
            continue  # someone else's base (the build pulls it), or already here
        print(f"building the base image {base} from Debian packages (about a minute, once)", flush=True)
        runner(["bash", str(BASE_IMAGE_SCRIPT), base], env=cli_environment(), echo=True).checked()
        built.append(base)
    return built


def fill_wheelhouse(plan: Plan, context: Path, runner: Runner = run) -> None:
    """Put the CPU build of torch into the build context's wheels/, resolved by the host's pip.

    The host's pip configuration decides where it comes from (a find-links folder, the PyTorch CPU
    index via PIP_EXTRA_INDEX_URL, or a mirror), so the image build needs no index for it.
    """
    wanted = plan.image.engine_env.get("TORCH_VERSION")
    wheels = context / "wheels"
    if plan.device != "cpu" or not wanted or any(wheels.glob(f"torch-{wanted}-*.whl")):
        return
    done = runner(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            f"torch=={wanted}",
        ]
    )
    if not done.ok:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        print(
            f"warning: could not fetch torch=={wanted} into {wheels} ({last}); the image build will ask its "
            "package index (set PIP_EXTRA_INDEX_URL to the PyTorch CPU index)",
            file=sys.stderr,
        )


def build(plan: Plan, compose: Compose, echo: bool = True, no_cache: bool = False) -> tuple[int, int]:
    """Build the profile's images (engine and router; cached where possible, unless `no_cache`: every step runs
    and the build cache is left as it was); (RUN/COPY steps run, in all)."""
    done = compose("--progress", "plain", "build", *(["--no-cache"] if no_cache else []), echo=echo)
    if not done.ok:
        tail = "\n".join(done.stdout.splitlines()[-30:])
        raise UserError(f"building {plan.image.reference} failed (exit {done.returncode}):\n{tail}")
    return executed_steps(done.stdout)


def executed_steps(log_text: str) -> tuple[int, int]:
    """(steps run, steps in total) among the Dockerfile's RUN/COPY steps, from a BuildKit plain log.

    NB: BuildKit's progress log is the only place the cache verdict of each step is reported.
    """
    steps = set(re.findall(r"^#(\d+) \[[\w.-]+ +\d+/\d+\] (?:RUN|COPY)", log_text, re.M))
    cached = set(re.findall(r"^#(\d+) CACHED", log_text, re.M))
    return len(steps - cached), len(steps)


def push(reference: str, runner: Runner = run) -> None:
    """Push a built image. NB: the docker CLI, not the SDK: it uses the user's `docker login` as it is."""
    runner([docker_cli(), "push", reference], env=cli_environment(), echo=True).checked(f"docker push {reference}")
