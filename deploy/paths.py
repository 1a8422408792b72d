"""Where the package's own files live, installed or in a source checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).parent
# The data files (deploy/facts finds, parses and caches each one).
DATA_DIR = PACKAGE_DIR / "data"
# Installed wheels carry the templates inside the package; a source checkout keeps them at the top.
TEMPLATE_DIR = next(
    (d for d in (PACKAGE_DIR / "templates", PACKAGE_DIR.parent / "templates") if d.is_dir()), PACKAGE_DIR / "templates"
)
# Files an image build copies into its context, beside the rendered Dockerfile.
ASSETS_DIR = PACKAGE_DIR / "assets"
BUILD_ASSETS = {
    "engine-venv.sh": ASSETS_DIR / "engine-venv.sh",
    "engine-bytecode-dirs.txt": ASSETS_DIR / "engine-bytecode-dirs.txt",
    "tiny_model.py": ASSETS_DIR / "tiny_model.py",
    "router_launch.py": ASSETS_DIR / "router_launch.py",
    "vllm_deploy_edge.py": ASSETS_DIR / "edge" / "vllm_deploy_edge.py",
}
# Where a CPU twin (`vllm-deploy twin`) is rendered and brought up, under the output root: never over the
# compose/ and k8s/ of the GPU profile whose name it shares.
TWINS_DIR = ".work/twins"
