"""This project's choices against what vLLM's official image is (deploy/data/vllm-official-image.json, which
scripts/vllm_official_image.py reads from the pinned release's docker/Dockerfile; a slow test keeps it current):
the entrypoint the plans wrap, the python they call, the CUDA tag, the user, and the CPU twin's working directory."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import PurePosixPath
from types import ModuleType

import pytest

from deploy.facts import device_facts, official_image
from deploy.init.twin import twin_profile
from deploy.plan import resolve
from deploy.plan.engine import SERVE
from deploy.render import render
from deploy.spec import builtin_names, load_profile, parse_profile
from tests.conftest import REPO

OFFICIAL = official_image()["targets"]["vllm-openai"]
CUDA, CPU = device_facts()["cuda"], device_facts()["cpu"]
GPU_PROFILES = [n for n in builtin_names() if load_profile(n).image.device == "cuda"]


def dockerfile_lines(text: str, keyword: str) -> list[tuple[int, str]]:
    return [(i, line.split(None, 1)[1]) for i, line in enumerate(text.splitlines()) if line.startswith(f"{keyword} ")]


def test_the_facts_are_of_the_release_both_devices_pin():
    assert official_image()["vllm_version"] == str(CUDA["vllm-version"]) == str(CPU["vllm-version"])
    assert CUDA["base-image"] == f"vllm/vllm-openai:v{CUDA['vllm-version']}"
    assert all(tag["image"].startswith(CUDA["base-image"]) for tag in CUDA["cuda-tags"])


def test_the_default_tag_is_built_on_the_cuda_the_dockerfile_names():
    """The Dockerfile's default CUDA is the plain tag's (the -cu129 tag is the same file with CUDA_VERSION set)."""
    cuda = re.fullmatch(r"nvidia/cuda:(\d+\.\d+)\.\d+-base-ubuntu[\d.]+", OFFICIAL["base_image"])
    assert cuda, OFFICIAL["base_image"]
    default = CUDA["cuda-tags"][0]
    assert (default["image"], default["cuda"]) == (CUDA["base-image"], cuda.group(1))


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_the_cuda_plan_ends_by_execing_the_images_own_entrypoint(name):
    """The key guard is `sh -c SCRIPT key-guard vllm serve`: "$@" is the image's own entrypoint, then the args."""
    entrypoint = resolve(load_profile(name)).entrypoint
    size = len(OFFICIAL["entrypoint"])
    assert OFFICIAL["cmd"] is None  # nothing of the image's lands after our args
    assert list(SERVE) == OFFICIAL["entrypoint"] == entrypoint[-size:]
    assert entrypoint[:2] == ["/bin/sh", "-c"] and 'exec "$@"' in entrypoint[2]
    assert len(entrypoint) == 4 + size  # the script, $0, then "$@"


def test_the_python_the_cuda_plan_calls_is_the_images():
    python = OFFICIAL["python"]
    link = PurePosixPath(python["python3"])
    assert (link.name, str(link.parent)) == (CUDA["python"], "/usr/bin")  # on every PATH
    assert resolve(load_profile(GPU_PROFILES[0])).image.python == CUDA["python"]
    # templates/docker/Dockerfile.cuda.j2 installs extra-pip with `python3 -m pip`: no PEP 668 marker stops it.
    assert f"/usr/lib/python{python['version']}/EXTERNALLY-MANAGED" in python["externally_managed_removed"]


def test_the_image_runs_as_root_and_our_uid_gets_its_identity_from_the_environment():
    """devices.yaml: the official image's default user is root; pods run it as run-as-user. A uid the image has no
    passwd entry for gets HOME, USER and LOGNAME from the plan's environment."""
    assert OFFICIAL["user"] is None
    uids = {user["uid"] for user in OFFICIAL["users"]}
    assert uids == {2000}, "the image's users changed: reread the uid comment in devices.yaml"
    environment = resolve(load_profile(GPU_PROFILES[0])).environment
    if CUDA["run-as-user"] not in uids:
        assert {"HOME", "USER", "LOGNAME"} <= set(environment)


@pytest.mark.parametrize("name", builtin_names())
def test_the_plan_overrides_none_of_the_variables_the_image_sets(name):
    assert not set(resolve(load_profile(name)).environment) & set(OFFICIAL["env"])


def test_the_cpu_twin_has_the_official_working_directory_made_as_root():
    """As on the official image: the working directory is root's, made before any USER, given to nobody."""
    assert OFFICIAL["workdir_made_as"] == "root" and OFFICIAL["workdir"] not in OFFICIAL["ownership"]
    twin = resolve(parse_profile(twin_profile(GPU_PROFILES[0], REPO / ".work" / "model", REPO), "twin.yaml"))
    dockerfile = render(twin)[f"compose/{twin.name}/Dockerfile"]
    workdirs, users = dockerfile_lines(dockerfile, "WORKDIR"), dockerfile_lines(dockerfile, "USER")
    assert [path for _, path in workdirs] == [OFFICIAL["workdir"]]
    assert users and workdirs[0][0] < users[0][0]  # BuildKit and buildah make a missing WORKDIR as the USER
    (_, entrypoint), *_ = dockerfile_lines(dockerfile, "ENTRYPOINT")
    assert json.loads(entrypoint)[-len(OFFICIAL["entrypoint"]) :] == OFFICIAL["entrypoint"]


@pytest.mark.parametrize("name", builtin_names())
def test_nothing_resolves_against_the_working_directory(name):
    """Neither image lets the uid write its working directory: no template moves it, and every path the engine is
    given (arguments, environment) is absolute."""
    for template in (REPO / "templates").rglob("*.j2"):
        text = template.read_text(encoding="utf-8")
        assert "workingDir" not in text and "working_dir" not in text, template
    plan = resolve(load_profile(name))
    generation = plan.argv[plan.argv.index("--generation-config") + 1] if "--generation-config" in plan.argv else "/"
    model_is_a_path = plan.storage.kind != "hub"
    assert generation.startswith("/") and (plan.argv[0].startswith("/") or not model_is_a_path)
    paths = {k: v for k, v in plan.environment.items() if k in {"HOME", "PYTHONPATH"} or "/" in v}
    assert paths and all(value.startswith("/") for value in paths.values()), paths


def script() -> ModuleType:
    # NB: registered first: its dataclasses look their module up while they are made.
    name = "vllm_official_image"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "vllm_official_image.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


SCRIPT = script()
DOCKERFILE = r"""
ARG CUDA=13.0.3
ARG BASE=nvidia/cuda:${CUDA}-base
FROM ${BASE} AS runtime
ARG CUDA
ARG PY=3.12
ARG ARCHS='7.5 8.0'
ENV A=/a PATH="/x/bin:${PATH}" ARCHS=${ARCHS}
WORKDIR /work
RUN update-alternatives --install /usr/bin/python3 python3 /usr/bin/python${PY} 1 \
    # a comment line inside the continuation, dropped as Docker drops it \
    && rm -f /usr/lib/python${PY}/EXTERNALLY-MANAGED \
    && useradd -u 2000 -g 0 -m app && chgrp 0 /etc/passwd && chmod g=u /etc/passwd && chmod 0755 /bin/tool
FROM runtime AS final
ARG TAG
ENV T=${TAG:-unknown} U=${TAG:+set} W=1
ENV OLD value with spaces
ENTRYPOINT ["serve"]
"""


def test_the_script_reads_a_dockerfile_as_docker_does():
    image = SCRIPT.image(DOCKERFILE, "final").summary()
    assert image["stages"] == ["final", "runtime"] and image["base_image"] == "nvidia/cuda:13.0.3-base"
    assert (image["entrypoint"], image["user"], image["workdir"], image["workdir_made_as"]) == (
        ["serve"],
        None,
        "/work",
        "root",
    )
    assert image["env"] == {
        "A": "/a",
        "PATH": "/x/bin:${PATH}",  # the base image's own: kept as written
        "ARCHS": "7.5 8.0",  # one value, spaces and all
        "T": "unknown",
        "U": "",
        "W": "1",
        "OLD": "value with spaces",
    }
    assert image["python"] == {
        "version": "3.12",
        "python3": "/usr/bin/python3",
        "path": "/usr/bin/python3.12",
        "externally_managed_removed": ["/usr/lib/python3.12/EXTERNALLY-MANAGED"],
    }
    assert image["users"] == [{"name": "app", "uid": 2000, "gid": 0, "home": "/home/app", "shell": None}]
    assert image["ownership"] == {"/etc/passwd": {"group": "0", "group_write": True}}


@pytest.mark.parametrize(
    ("mode", "writes"),
    [
        ("g=u", True),
        ("g+rwX,a+rX", True),
        ("0775", True),
        ("0755", False),
        ("g-w", False),
        ("u+x", None),
        ("o+w", None),
    ],
)
def test_the_script_knows_which_modes_let_the_group_write(mode, writes):
    assert SCRIPT.group_write(mode) is writes
