"""A twin's weights: the tiny test VLM, copied out of the twin's own image (built in at
plan.image.tiny_model_dir) to where the GPU profile's weights would be. Host storage: into the host directory.
Hub storage: into the hub cache volume, laid out as Hugging Face's cache for the model's repository id, so the
engine (offline) finds the model under its hub name, exactly where a download would have put it."""

from __future__ import annotations

import hashlib
import re
import shlex

from deploy.plan import Plan

# The snapshot's commit name, when the profile pins none: any 40 hex digits do for an offline cache.
TWIN_SNAPSHOT = hashlib.sha1(b"vllm-deploy twin", usedforsecurity=False).hexdigest()


def hub_cache_script(plan: Plan) -> str:
    """Shell, run as the engine's uid in a container of the twin's image with its hub cache mounted at the plan's
    path (the image owns that path to the uid, so a fresh volume takes it): lay out the tiny model as the cached
    snapshot of the model's repository, once."""
    storage = plan.storage
    assert storage.kind == "hub" and storage.container_path and plan.image.tiny_model_dir
    revision = storage.revision or "main"
    commit = revision if re.fullmatch(r"[0-9a-f]{40}", revision) else TWIN_SNAPSHOT
    repository = f"{storage.container_path}/hub/models--{plan.model.replace('/', '--')}"
    ref, snapshot = f"{repository}/refs/{revision}", f"{repository}/snapshots/{commit}"
    return " && ".join(
        [
            f"if [ -f {shlex.quote(ref)} ]; then exit 0; fi",
            f"mkdir -p {shlex.quote(snapshot)} {shlex.quote(ref.rsplit('/', 1)[0])}",
            f"cp -R {shlex.quote(plan.image.tiny_model_dir)}/. {shlex.quote(snapshot)}/",
            f"printf %s {commit} > {shlex.quote(ref)}",
        ]
    )
