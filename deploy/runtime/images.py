"""Images: the registry-free base, the CPU torch wheel in the build context, the build itself, push."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from deploy.errors import UserError
from deploy.paths import PACKAGE_DIR
from deploy.plan import Plan, device_facts
from deploy.runtime.docker import Compose, Engine, cli_environment, docker_cli
from deploy.runtime.process import Runner, run

BASE_IMAGE_SCRIPT = PACKAGE_DIR / "assets" / "base-image.sh"


def ensure_base_image(plan: Plan, engine: Engine, runner: Runner = run) -> bool:
    """Build the CPU base from Debian packages when it is missing (no registry needed). True if built."""
    if plan.image.base != device_facts()["cpu"]["base-image"] or engine.image_id(plan.image.base):
        return False  # someone else's base (the build pulls it), or already here
    print(f"building the base image {plan.image.base} from Debian packages (about a minute, once)", flush=True)
    runner(["bash", str(BASE_IMAGE_SCRIPT), plan.image.base], env=cli_environment(), echo=True).checked()
    return True


def fill_wheelhouse(plan: Plan, context: Path, runner: Runner = run) -> None:
    """Put the CPU build of torch into the build context's wheels/, resolved by the host's pip.

    The host's pip configuration decides where it comes from (a find-links folder, the PyTorch CPU
    index via PIP_EXTRA_INDEX_URL, or a mirror), so the image build needs no index for it.
    """
    wanted = plan.image.engine_env.get("TORCH_VERSION")
    wheels = context / "wheels"
    if plan.device != "cpu" or not wanted or any(wheels.glob(f"torch-{wanted}-*.whl")):
        return
    done = runner([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d",
                   str(wheels), f"torch=={wanted}"])
    if not done.ok:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        print(f"warning: could not fetch torch=={wanted} into {wheels} ({last}); the image build will ask its "
              "package index (set PIP_EXTRA_INDEX_URL to the PyTorch CPU index)", file=sys.stderr)


def build(plan: Plan, compose: Compose, echo: bool = True) -> tuple[int, int]:
    """Build the profile's image (cached where possible); (RUN/COPY steps run, steps in all)."""
    done = compose("--progress", "plain", "build", "vllm", echo=echo)
    if not done.ok:
        tail = "\n".join(done.stdout.splitlines()[-30:])
        raise UserError(f"building {plan.image.reference} failed (exit {done.returncode}):\n{tail}")
    return executed_steps(done.stdout)


def executed_steps(log_text: str) -> tuple[int, int]:
    """(steps run, steps in total) among the Dockerfile's RUN/COPY steps, from a BuildKit plain log.

    NB: BuildKit's progress log is the only place the cache verdict of each step is reported.
    """
    steps = set(re.findall(r"^#(\d+) \[vllm +\d+/\d+\] (?:RUN|COPY)", log_text, re.M))
    cached = set(re.findall(r"^#(\d+) CACHED", log_text, re.M))
    return len(steps - cached), len(steps)


def push(plan: Plan, runner: Runner = run) -> None:
    """Push the built image. NB: the docker CLI, not the SDK: it uses the user's `docker login` as it is."""
    runner([docker_cli(), "push", plan.image.reference], env=cli_environment(), echo=True).checked(
        f"docker push {plan.image.reference}")
