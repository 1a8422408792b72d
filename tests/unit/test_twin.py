"""`vllm-deploy twin`: the CPU twin of a GPU profile keeps the deployment's shape (names, the served name, the
model's path in the container, the user, mounts, security contexts, Services) and changes only the device, the
image base, the weights and what those force, each change listed in its header. tests/integration/test_twins.py
brings the twin up under compose and podman."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy.errors import UserError
from deploy.init.twin import twin_profile
from deploy.plan import resolve
from deploy.render import render, render_profiles
from deploy.spec import load_profile, parse_profile
from deploy.targets import kubernetes_plan
from tests.conftest import REPO

MODEL_DIR = Path("/srv/twins/minicpm/model")


def twin_of(ref: str = "minicpm-v-2_6") -> tuple[str, dict]:
    text = twin_profile(ref, MODEL_DIR, REPO)
    return text, yaml.safe_load(text)


def deployment(files: dict[str, str], name: str) -> dict:
    return yaml.safe_load(files[f"k8s/{name}/deployment.yaml"])


def test_the_twin_validates_and_lists_every_change_in_its_header():
    text, data = twin_of()
    header = [line for line in text.splitlines() if line.startswith("#   ")]
    assert "#   image.device: cuda -> cpu (no GPU)" in header
    assert "#   model.source: /root/ld/ld_model_pretrained/Minicpmv2_6 -> /srv/twins/minicpm/model (the tiny test VLM, put there by `up`)" in header  # fmt: skip
    assert "#   engine.mm-processor-kwargs: {max_slice_nums: 9} -> unset (the GPU model's image processor's)" in header
    assert "#   resources.gpus: 1 -> unset (no GPU)" in header
    # Every key that differs from the GPU profile is named in the header, and nothing else is.
    original = yaml.safe_load(Path("deploy/profiles/minicpm-v-2_6.yaml").read_text())
    changed = {
        f"{section}.{key}"
        for section in set(original) | set(data)
        if isinstance(original.get(section, {}), dict) and isinstance(data.get(section, {}), dict)
        for key in set(original.get(section, {})) | set(data.get(section, {}))
        if original.get(section, {}).get(key) != data.get(section, {}).get(key)
    }
    assert changed == {line.removeprefix("#   ").split(":")[0] for line in header}
    assert data["twin-of"] == "minicpm-v-2_6" and data["name"] == "minicpm-v-2_6"
    resolve(parse_profile(text, "twin.yaml"))


def test_the_twin_keeps_the_kubernetes_shape_of_the_gpu_deployment():
    text, _ = twin_of()
    gpu, twin = resolve(load_profile("minicpm-v-2_6")), resolve(parse_profile(text, "twin.yaml"))
    gpu_pod = deployment(render(gpu), "minicpm-v-2_6")["spec"]["template"]["spec"]
    twin_pod = deployment(render(twin), "minicpm-v-2_6")["spec"]["template"]["spec"]
    for key in ("securityContext", "enableServiceLinks", "automountServiceAccountToken", "nodeSelector", "tolerations"):
        assert twin_pod[key] == gpu_pod[key], key
    gpu_engine, twin_engine = gpu_pod["containers"][0], twin_pod["containers"][0]
    assert twin_engine["volumeMounts"] == gpu_engine["volumeMounts"]
    assert twin_engine["securityContext"] == gpu_engine["securityContext"]
    assert twin_engine["command"] == gpu_engine["command"]
    assert twin_engine["args"][:3] == gpu_engine["args"][:3]  # the model's path, and the guide's served name
    assert {e["name"] for e in twin_engine["env"]} >= {e["name"] for e in gpu_engine["env"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert twin_engine[probe]["httpGet"] == gpu_engine[probe]["httpGet"]
    assert kubernetes_plan(twin).object_name == kubernetes_plan(gpu).object_name
    assert twin.served_model_name == gpu.served_model_name == "/root/ld/ld_model_pretrained/Minicpmv2_6"
    assert twin.model == gpu.model == "/models/weights"  # not under /root: issue 19, item 1


def test_the_twin_renders_apart_from_its_gpu_profile(tmp_path):
    text, _ = twin_of()
    path = tmp_path / "twin.yaml"
    path.write_text(text)
    files, _ = render_profiles(["minicpm-v-2_6", str(path)])
    assert "k8s/minicpm-v-2_6/deployment.yaml" in files
    assert ".work/twins/k8s/minicpm-v-2_6/deployment.yaml" in files
    assert ".work/twins/compose/minicpm-v-2_6/Dockerfile" in files
    assert "compose/minicpm-v-2_6/Dockerfile" not in files  # the GPU profile runs the official image unchanged


def test_a_hub_twin_keeps_the_hub_id_and_runs_offline_from_its_filled_cache():
    text, data = twin_of("qwen2_5-vl-7b")
    assert data["model"]["source"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert data["model"]["served-name"] == "qwen2.5-vl-7b-instruct"
    assert "#   engine.max-model-len: 16384 -> 8192 (the tiny model's context)" in text
    twin, gpu = resolve(parse_profile(text, "twin.yaml")), resolve(load_profile("qwen2_5-vl-7b"))
    assert twin.storage == gpu.storage and twin.model == gpu.model
    assert twin.environment["HF_HUB_OFFLINE"] == gpu.environment["HF_HUB_OFFLINE"] == "1"
    assert twin.image.tiny_model_dir == "/models/tiny-vlm"
    # Its fetch step lays the tiny model out as the GPU model's cached snapshot; the GPU profile's downloads it.
    assert twin.fetch and gpu.fetch and twin.fetch.name == gpu.fetch.name
    assert (
        "cp -R /models/tiny-vlm/. /models/hf-cache/hub/models--Qwen--Qwen2.5-VL-7B-Instruct/snapshots/"
        in (twin.fetch.command[2])
    )
    assert twin.fetch.secrets == [] and "hf download" in gpu.fetch.command[2]


def test_a_cpu_profile_has_no_twin():
    with pytest.raises(UserError, match="already runs on the CPU"):
        twin_of("tiny-cpu")


def test_the_twin_of_replicas_behind_the_router_keeps_them(tmp_path):
    """A GPU profile with two replicas: its twin has two engines and the router in front, as the GPU one."""
    original = yaml.safe_load(Path("deploy/profiles/minicpm-v-2_6.yaml").read_text())
    original["replicas"] = 2
    original["image"]["registry"] = "registry.example.com/ml"  # the router image is built: clusters pull it there
    path = tmp_path / "minicpm-x2.yaml"
    path.write_text(yaml.safe_dump(original))
    text = twin_profile(str(path), MODEL_DIR, REPO)
    twin, gpu = resolve(parse_profile(text, "twin.yaml")), resolve(load_profile(str(path)))
    assert twin.replicas == gpu.replicas == 2 and twin.router is not None and gpu.router is not None
    assert [i.service for i in twin.instances] == [i.service for i in gpu.instances] == ["vllm-0", "vllm-1"]
    # The router's flags are the GPU profile's, but for the one its load budget sets (900 s -> the twin's 300 s).
    assert [a for a in twin.router.argv if a != "300"] == [a for a in gpu.router.argv if a != "900"]
    assert twin.image.registry == gpu.image.registry and "local-images" not in text  # pushed where the GPU one is


def test_twin_of_needs_the_cpu(tmp_path):
    _, data = twin_of()
    data["image"]["device"] = "cuda"
    with pytest.raises(UserError, match="twin-of: a twin runs on the CPU"):
        parse_profile(yaml.safe_dump(data), "twin.yaml")


def test_the_cli_writes_the_twin_once(cli, tmp_path):
    out = tmp_path / "twin.yaml"
    first = cli("twin", "minicpm-v-2_6", "-o", str(out), "--model-dir", str(tmp_path / "model"))
    assert first.code == 0 and f"make up PROFILE={out}" in first.err
    assert yaml.safe_load(out.read_text())["model"]["source"] == str(tmp_path / "model")
    again = cli("twin", "minicpm-v-2_6", "-o", str(out))
    assert again.code == 2 and "exists; nothing was written" in again.err
    relative = cli("twin", "minicpm-v-2_6", "--model-dir", "model")
    assert relative.code == 2 and "expected an absolute path" in relative.err


def test_a_hostile_model_dir_is_refused_unshown_and_nothing_is_written(cli, tmp_path):
    out = tmp_path / "twin.yaml"
    found = cli("twin", "minicpm-v-2_6", "-o", str(out), "--model-dir", "/tmp/a b\n\x1b[31mx")
    assert found.code == 2 and "model.source: storage 'host' needs an absolute path of plain characters" in found.err
    assert "\x1b" not in found.err and "Traceback" not in found.err and not out.exists()
