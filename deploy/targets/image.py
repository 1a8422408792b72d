"""The Docker build recipe: every file of each image's build context (the compose folder), rendered from a
template, copied from the package's assets, or written as is.

NB: the recipe's digest stays in deploy/plan/image.py: the image's name carries it, and both targets run
that name, so it is part of the neutral Plan (which cannot import from here).
"""

from __future__ import annotations

from deploy.plan.frozen import Frozen
from deploy.plan.model import Plan

WHEELS_README = """\
Wheels placed here are installed before the package index is asked (pip --find-links).
`make up` puts the CPU build of torch here; air-gapped builds put every wheel here.
Wheel files are git-ignored.
"""


class BuildFile(Frozen):
    """One file of a build context: exactly one of template, asset, text."""

    path: str  # in the build context
    template: str | None = None  # rendered from the Plan
    asset: str | None = None  # a copy of deploy/paths.py's BUILD_ASSETS[asset]
    text: str | None = None


def build_files(plan: Plan) -> list[BuildFile]:
    found = []
    if plan.image.build:
        found.append(BuildFile(path="Dockerfile", template=f"docker/{plan.image.template}"))
    if plan.router:
        found += [
            BuildFile(path="Dockerfile.router", template="docker/Dockerfile.router.j2"),
            BuildFile(path="router_launch.py", asset="router_launch.py"),
            BuildFile(path="router-haproxy.cfg", template="router/haproxy.cfg.j2"),
        ]
    if plan.monitoring:
        found.append(BuildFile(path="Dockerfile.prometheus", template="docker/Dockerfile.prometheus.j2"))
    if plan.device == "cpu":
        # The scripts the CPU image build runs, and a wheel folder.
        found += [
            BuildFile(path="engine-venv.sh", asset="engine-venv.sh"),
            BuildFile(path="engine-bytecode-dirs.txt", asset="engine-bytecode-dirs.txt"),
            BuildFile(path="wheels/README", text=WHEELS_README),
        ]
    if plan.image.tiny_model_dir:
        found.append(BuildFile(path="tiny_model.py", asset="tiny_model.py"))
    # The key check on every route: copied into built images (and mounted as a compose config).
    found.append(BuildFile(path=plan.edge.file_name, asset=plan.edge.file_name))
    return found
