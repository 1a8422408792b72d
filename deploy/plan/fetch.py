"""The fetch step of hub storage: the model put into its cache volume, once, before any engine starts, with
Hugging Face's own client (`hf download`, in the engine's image: resumable, verified, its own progress bars).

The step leaves a mark in the volume when the download completed, so a later start checks the mark and touches
no network (the engines, offline, then load from the cache; an air-gapped host restarts). Revisions are kept as
fetched: pin model.revision to move, or remove the volume. A twin's step lays the tiny test VLM out as the
cached snapshot of the GPU model's repository instead, unless the twin names a hub endpoint to fetch from."""

from __future__ import annotations

import hashlib
import re
import shlex

from deploy.plan.constants import WRITABLE_CACHE_DIR
from deploy.plan.model import FetchPlan, ImagePlan, SecretEnv, StoragePlan
from deploy.spec import Profile

FETCH_NAME = "fetch-model"
HUB_TOKEN = SecretEnv(name="HF_TOKEN", source="HF_TOKEN", required=False)
# The snapshot's commit name of a twin's tiny model when the profile pins none: any 40 hex digits do offline.
TWIN_SNAPSHOT = hashlib.sha1(b"vllm-deploy twin", usedforsecurity=False).hexdigest()

# $1 the repository, $2 the revision. The mark's name is the pair with slashes made safe.
DOWNLOAD_SCRIPT = (
    'mark="$HF_HOME/.vllm-deploy-fetched/$(printf %s "$1@$2" | tr / _)"; '
    'if [ -f "$mark" ]; then echo "fetch-model: $1@$2 is in the cache already"; exit 0; fi; '
    'echo "fetch-model: downloading $1@$2 from ${HF_ENDPOINT:-https://huggingface.co} into $HF_HOME"; '
    'hf download "$1" --revision "$2" && mkdir -p "${mark%/*}" && touch "$mark"'
)


def fetch_plan(profile: Profile, storage: StoragePlan, image: ImagePlan) -> FetchPlan | None:
    if storage.kind != "hub" or not storage.container_path:
        return None
    repository, revision = profile.model.source, storage.revision or "main"
    environment = {
        "HF_HOME": storage.container_path,
        # The root filesystem is read-only: the client's own files (its lock and token paths) go where it may write.
        "HOME": WRITABLE_CACHE_DIR,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    endpoint = profile.model.hub_endpoint
    if endpoint:
        environment["HF_ENDPOINT"] = endpoint
    if profile.twin_of and not endpoint and image.tiny_model_dir:
        return FetchPlan(
            name=FETCH_NAME,
            what=f"the tiny test VLM as {repository}@{revision}",
            command=["sh", "-c", twin_cache_script(repository, revision, storage.container_path, image.tiny_model_dir)],
            environment=environment,
            secrets=[],
        )
    return FetchPlan(
        name=FETCH_NAME,
        what=f"{repository}@{revision}",
        command=["sh", "-c", DOWNLOAD_SCRIPT, FETCH_NAME, repository, revision],
        environment=environment,
        secrets=[HUB_TOKEN],
    )


def twin_cache_script(repository: str, revision: str, cache: str, tiny_model_dir: str) -> str:
    """Shell: lay the image's tiny model out as the cached snapshot of `repository` at `revision` under the hub
    cache `cache` (Hugging Face's layout), once; the offline engine then finds it under its hub name."""
    commit = revision if re.fullmatch(r"[0-9a-f]{40}", revision) else TWIN_SNAPSHOT
    folder = f"{cache}/hub/models--{repository.replace('/', '--')}"
    ref, snapshot = f"{folder}/refs/{revision}", f"{folder}/snapshots/{commit}"
    return " && ".join(
        [
            f"if [ -f {shlex.quote(ref)} ]; then echo 'fetch-model: the tiny test VLM is in the cache already'; exit 0; fi",
            f"mkdir -p {shlex.quote(snapshot)} {shlex.quote(ref.rsplit('/', 1)[0])}",
            f"cp -R {shlex.quote(tiny_model_dir)}/. {shlex.quote(snapshot)}/",
            f"printf %s {commit} > {shlex.quote(ref)}",
            f"echo 'fetch-model: the tiny test VLM laid out as {repository}@{revision}'",
        ]
    )
