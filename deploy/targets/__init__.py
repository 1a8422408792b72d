"""One projection of the neutral Plan per target, each with its own spellings; templates get their target's.

Each module imports only those listed before it.

compose     ComposePlan: sizes like "8g", CMD health checks, published ports, config names
kubernetes  KubernetesPlan: "8Gi", labels, probes, policies, and the manifest table (file, template,
            condition) that feeds render and the kustomization
image       the Docker build recipe: each build context's files
"""

from deploy.targets.compose import ComposePlan, compose_plan
from deploy.targets.image import BuildFile, build_files
from deploy.targets.kubernetes import MANIFESTS, KubernetesPlan, Manifest, kubernetes_plan

__all__ = [
    "MANIFESTS",
    "BuildFile",
    "ComposePlan",
    "KubernetesPlan",
    "Manifest",
    "build_files",
    "compose_plan",
    "kubernetes_plan",
]
