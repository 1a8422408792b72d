"""CPU twins of the GPU profiles for the integration tests (tests/integration/test_twins.py, test_pods.py): made
as a user makes them, `vllm-deploy twin` of a built-in GPU profile or of a user's copy of one.

The copy with two replicas is what a user writes to scale the guide's model out: the built-in minicpm-v-2_6 under
its own name, `replicas: 2` (so vLLM's router in front) and `kubernetes.local-images: true` (its images loaded onto
the nodes by hand, as kind, minikube and podman take them; `validate` asks for that or an image.registry).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from deploy.bench.hub_server import HubServer
from deploy.init.twin import twin_profile
from deploy.plan import Plan, resolve
from deploy.runtime.net import free_port
from deploy.runtime.stack import Stack, stack_for
from deploy.spec import load_profile
from deploy.spec.variant import write_variant
from tests.conftest import REPO

GUIDE_MODEL_PATH = "/root/ld/ld_model_pretrained/Minicpmv2_6"  # the seed guide's `vllm serve` path
MINICPM = "minicpm-v-2_6"
MINICPM_X2 = "minicpm-v-2_6-x2"  # the user's copy of minicpm-v-2_6 with two replicas behind the router


@dataclass
class Twin:
    root: Path
    plan: Plan  # the twin's (on a free port)
    gpu: Plan  # the GPU profile's
    gpu_deployment: dict  # the built-in GPU profile's committed k8s/<name>/deployment.yaml
    stack: Stack
    hub: HubServer | None = None  # where a hub twin's fetch step downloads from
    fetch_output: str = ""  # what `up`'s run of the fetch step printed
    pod_url: str = ""
    pod_key: str = ""
    pod_container: str = ""
    pod_secret: str = ""

    @property
    def gpu_uid(self) -> int:
        return self.gpu_deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]

    @property
    def engine_container(self) -> str:
        """Compose: the first replica's container (the router's is the stack's front when there is one)."""
        return self.stack.container(self.plan.instances[0].service) or ""


def gpu_profile_x2(root: Path) -> Path:
    """The user's copy of minicpm-v-2_6 with two replicas (see the module's docstring)."""
    changes = {"name": MINICPM_X2, "replicas": 2, "kubernetes": {"local-images": True}}
    return write_variant(MINICPM, root / f"{MINICPM_X2}.yaml", changes)


def make_twin(root: Path, gpu_profile: str, hub: HubServer | None = None) -> Twin:
    """The twin of `gpu_profile` (a built-in name, or MINICPM_X2 for the user's copy), its model directory under
    `root` (filled by `prepare`), on a free port; a hub twin downloads from `hub` when one is given."""
    base = MINICPM if gpu_profile == MINICPM_X2 else gpu_profile
    root.mkdir(parents=True, exist_ok=True)
    ref = str(gpu_profile_x2(root)) if gpu_profile == MINICPM_X2 else gpu_profile
    document = yaml.safe_load(twin_profile(ref, root / "model", REPO))
    document["server"]["port"] = free_port()  # NB: the shape's port (8000) may be a running tiny-cpu's here
    if hub:  # NB: the fetch step downloads for real, from our hub, instead of laying the tiny model out itself
        document["model"]["hub-endpoint"] = hub.root
    path = root / "twin.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    plan = resolve(load_profile(str(path)))
    deployment = yaml.safe_load((REPO / "k8s" / base / "deployment.yaml").read_text())
    return Twin(root, plan, resolve(load_profile(ref)), deployment, stack_for(plan, root), hub)
