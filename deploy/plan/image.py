"""The image a profile runs: the official one unchanged, or one built from it and named for a registry."""

from __future__ import annotations

import hashlib
import json
from functools import cache

from deploy.facts import device_facts
from deploy.paths import BUILD_ASSETS, TEMPLATE_DIR
from deploy.plan.constants import HUB_CACHE_DIR, TWIN_TINY_MODEL_DIR, WRITABLE_CACHE_DIR
from deploy.plan.engine import ENTRYPOINT
from deploy.plan.model import CudaTag, ImagePlan
from deploy.spec import Profile, engine_image_built, model_storage


@cache
def build_recipe_digest() -> str:
    """Digest of what an image build runs (Dockerfile templates, copied scripts): a new recipe, a new tag."""
    digest = hashlib.sha256()
    engine_files = [TEMPLATE_DIR / "docker" / f"Dockerfile.{kind}.j2" for kind in ("base", "cpu", "cuda")]
    for path in engine_files + [
        BUILD_ASSETS["engine-venv.sh"],
        BUILD_ASSETS["engine-bytecode-dirs.txt"],
        BUILD_ASSETS["tiny_model.py"],
        BUILD_ASSETS["vllm_deploy_edge.py"],
    ]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def tiny_model_dir(profile: Profile) -> str | None:
    """Where the image holds the tiny test VLM: the profile's own path (tiny storage), or, for a twin, the same
    place as the built-in tiny profiles' (its layers are theirs), from where `up` copies it to the host."""
    if model_storage(profile) == "tiny":
        return profile.model.source
    return TWIN_TINY_MODEL_DIR if profile.twin_of else None


def image_plan(profile: Profile) -> ImagePlan:
    facts = device_facts()[profile.image.device]
    inputs = {
        "base": profile.image.base or facts["base-image"],
        "template": facts["template"],
        "vllm_version": facts["vllm-version"],
        "python": facts["python"],
        "run_as_user": facts["run-as-user"],
        "engine_env": {k: str(v) for k, v in facts.get("engine-env", {}).items()},
        "extra_pip": list(profile.image.extra_pip),
        "tiny_model_dir": tiny_model_dir(profile),
        # Owned by the uid in the image, so that a fresh volume mounted there takes its owner from it. NB: the hub
        # cache's too when the profile has none: one layer for every CPU image (a twin's are tiny-cpu's).
        "owned_dirs": ["/models", WRITABLE_CACHE_DIR, HUB_CACHE_DIR],
    }
    cuda_tags = [
        CudaTag(image=t["image"], cuda=t["cuda"], min_driver=t["min-driver"]) for t in facts.get("cuda-tags", [])
    ]
    # NB: the official image needs no build when the profile adds nothing to it: clusters pull it as it is.
    build = engine_image_built(profile) is not None
    if build:
        payload = json.dumps(
            {**inputs, "entrypoint": ENTRYPOINT, "recipe": build_recipe_digest()}, sort_keys=True
        ).encode()
        repository = profile.image.registry or device_facts()["local-registry"]
        reference = f"{repository}/{profile.name}:{hashlib.sha256(payload).hexdigest()[:12]}"
    else:
        reference = inputs["base"]
    return ImagePlan(
        reference=reference,
        build=build,
        ca_bundle=profile.image.ca_bundle,
        registry=profile.image.registry,
        local=profile.kubernetes.local_images,
        cuda=next((t for t in cuda_tags if t.image == inputs["base"]), None),
        cuda_tags=cuda_tags,
        **inputs,
    )
