"""Rendering: golden files byte for byte, and structural facts about the parsed manifests."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.errors import UserError
from deploy.plan import resolve
from deploy.render import render, write_files
from deploy.spec import builtin_names, load_profile
from tests.conftest import FIXTURE_PROFILES, GOLDEN, REPO, kubernetes_expand

FIXTURES = sorted(FIXTURE_PROFILES.glob("*.yaml"))


def rendered(ref: str) -> dict[str, str]:
    return render(resolve(load_profile(ref)))


@pytest.mark.parametrize("name", builtin_names())
def test_committed_output_matches_a_fresh_render(name):
    for path, text in rendered(name).items():
        committed = REPO / path
        assert committed.is_file(), f"{path} is not committed: run `make golden`"
        assert committed.read_text(encoding="utf-8") == text, f"{path} is stale: run `make golden`"


@pytest.mark.parametrize("profile", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_profiles_match_their_golden_files(profile):
    files = rendered(str(profile))
    for path, text in files.items():
        golden = GOLDEN / path
        assert golden.is_file(), f"tests/golden/{path} missing: run `make golden`"
        assert golden.read_text(encoding="utf-8") == text, f"tests/golden/{path} is stale: run `make golden`"


def test_no_orphan_files_in_rendered_folders():
    """Every committed file under compose/<name>/ and k8s/<name>/ is produced by a render (nothing stale)."""
    expected = {p for name in builtin_names() for p in rendered(name)}
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "compose", "k8s"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(tracked) == expected


def test_no_orphan_files_in_golden_folders():
    """tests/golden holds exactly what the fixture profiles render: a file a profile stopped producing goes."""
    expected = {p for profile in FIXTURES for p in rendered(str(profile))}
    found = {str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file()}
    assert found == expected


def test_render_is_pure_and_repeatable(monkeypatch):
    first = rendered("qwen2_5-vl-7b")
    monkeypatch.setenv("VLLM_API_KEY", "should-not-matter")
    monkeypatch.setenv("HF_TOKEN", "should-not-matter")
    assert rendered("qwen2_5-vl-7b") == first


def manifests(name: str, router: bool = False) -> dict[str, dict]:
    """The rendered objects by kind: the engine's, or with `router` the router's (router-*.yaml)."""
    docs: dict[str, dict] = {}
    for path, text in rendered(name).items():
        if path.endswith(".yaml") and path.startswith("k8s/") and Path(path).name.startswith("router-") == router:
            for doc in yaml.safe_load_all(text):
                docs.setdefault(doc["kind"], doc)
    return docs


def policies(name: str) -> dict[str, dict]:
    files = rendered(name)
    text = next(t for p, t in files.items() if p.endswith("networkpolicy.yaml"))
    return {doc["metadata"]["name"]: doc["spec"] for doc in yaml.safe_load_all(text)}


def container(name: str) -> dict:
    return manifests(name)["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def test_deployment_gpu_limit_follows_the_profile():
    assert container("minicpm-v-2_6")["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in container("tiny-cpu")["resources"]["limits"]
    sink = container(str(FIXTURE_PROFILES / "kitchen-sink.yaml"))
    assert sink["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_api_key_comes_from_the_generated_secret():
    docs = manifests("minicpm-v-2_6")
    env = {e["name"]: e for e in container("minicpm-v-2_6")["env"]}
    ref = env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
    kustomization = yaml.safe_load(rendered("minicpm-v-2_6")["k8s/minicpm-v-2_6/kustomization.yaml"])
    generator = kustomization["secretGenerator"][0]
    assert ref == {"name": generator["name"], "key": "VLLM_API_KEY"}
    assert generator["envs"] == ["secrets.env"]
    assert "value" not in env["VLLM_API_KEY"]
    assert sorted(kustomization["resources"]) == sorted(
        f"{kind.lower()}.yaml" for kind in docs if kind != "Kustomization"
    )


def test_probes_give_the_model_its_load_budget():
    c = container("qwen2_5-vl-7b")
    startup = c["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1200
    assert c["readinessProbe"]["httpGet"]["path"] == c["livenessProbe"]["httpGet"]["path"] == "/health"


def test_shared_memory_is_a_memory_emptydir():
    spec = manifests("minicpm-v-2_6")["Deployment"]["spec"]["template"]["spec"]
    dshm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert dshm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in spec["containers"][0]["volumeMounts"]


def test_local_model_is_a_read_only_hostpath():
    spec = manifests("minicpm-v-2_6")["Deployment"]["spec"]["template"]["spec"]
    models = next(v for v in spec["volumes"] if v["name"] == "models")
    assert models["hostPath"] == {"path": "/root/ld/ld_model_pretrained/Minicpmv2_6", "type": "Directory"}
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "models")
    assert mount["readOnly"] is True


def test_security_context_is_restrictive():
    spec = manifests("tiny-cpu")["Deployment"]["spec"]["template"]["spec"]
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["automountServiceAccountToken"] is False
    # A read-only root needs writable scratch space where vLLM, torch and triton write.
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert volumes[mounts[env["XDG_CACHE_HOME"]]]["emptyDir"] == {}


def test_network_policy_opens_only_the_server_port_and_admits_only_the_named_clients():
    open_policy = policies("qwen2_5-vl-7b")["qwen2-5-vl-7b"]
    assert open_policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    sink = str(FIXTURE_PROFILES / "kitchen-sink.yaml")
    engine, router = manifests(sink)["Deployment"], manifests(sink, router=True)["Deployment"]
    found = policies(sink)
    # Behind a router: the engines take requests from the router pods only; the router from the named clients.
    assert found["kitchen-sink-engine"]["podSelector"]["matchLabels"] == engine["spec"]["selector"]["matchLabels"]
    assert found["kitchen-sink-engine"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": router["spec"]["selector"]["matchLabels"]}}],
            "ports": [{"port": "http", "protocol": "TCP"}],
        },
        # … and Prometheus, from the profile's monitoring namespace, scrapes their /metrics on that port.
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}],
            "ports": [{"port": "http", "protocol": "TCP"}],
        },
    ]
    assert found["kitchen-sink-router"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "api-gateway"}}}],
            "ports": [{"port": "http", "protocol": "TCP"}],
        },
        {"ports": [{"port": "metrics", "protocol": "TCP"}]},
    ]
    assert "Egress" in found["kitchen-sink-engine"]["policyTypes"] and "egress" not in found["kitchen-sink-router"]


def test_recommended_labels_and_selector():
    docs = manifests("qwen2_5-vl-7b")
    labels = docs["Deployment"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "qwen2-5-vl-7b"
    assert labels["app.kubernetes.io/managed-by"] == "vllm-deploy"
    assert docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert docs["Deployment"]["spec"]["template"]["metadata"]["labels"] == labels


def engine_service(document: dict) -> dict:
    """The first engine replica's compose service ("vllm", or "vllm-0" behind a router)."""
    return next(service for name, service in document["services"].items() if name.startswith("vllm"))


def compose(name: str) -> dict:
    files = rendered(name)
    return yaml.safe_load(next(text for path, text in files.items() if path.endswith("compose.yaml")))


def test_compose_service_carries_the_plan():
    service = compose("minicpm-v-2_6")["services"]["vllm"]
    plan = resolve(load_profile("minicpm-v-2_6"))
    assert service["command"] == plan.argv
    assert service["ports"] == ["127.0.0.1:8000:8000"]
    assert service["environment"]["VLLM_API_KEY"].startswith("${VLLM_API_KEY:?")
    assert service["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert service["volumes"][-1] == {
        "type": "bind",
        "source": "/root/ld/ld_model_pretrained/Minicpmv2_6",
        "target": plan.model,
        "read_only": True,
    }
    assert service["entrypoint"] == [part.replace("$", "$$") for part in plan.entrypoint]
    assert service["image"] == "vllm/vllm-openai:v0.32.0" and "build" not in service  # the official image as it is
    assert service["restart"] == "unless-stopped" and service["init"] is True
    assert service["healthcheck"]["start_period"] == "900s"
    assert service["shm_size"] == "8g"


def test_compose_escapes_dollar_signs_in_arguments():
    service = engine_service(compose(str(FIXTURE_PROFILES / "kitchen-sink.yaml")))
    assert '{"note": "$$HOME stays literal"}' in service["command"]


def test_yaml_scalars_that_look_like_booleans_stay_strings():
    text = rendered(str(FIXTURE_PROFILES / "kitchen-sink.yaml"))["compose/kitchen-sink/compose.yaml"]
    env = engine_service(yaml.safe_load(text))["environment"]
    assert env["VLLM_NO_USAGE_STATS"] == "1"


def test_cpu_profile_builds_the_tiny_model_into_the_image():
    files = rendered("tiny-cpu")
    assert "compose/tiny-cpu/tiny_model.py" in files
    assert "COPY tiny_model.py" in files["compose/tiny-cpu/Dockerfile"]
    service = compose("tiny-cpu")["services"]["vllm"]
    assert "reservations" not in service["deploy"]["resources"]
    assert not [v for v in service["volumes"] if v["type"] == "bind"]  # nothing from the host
    assert service["pull_policy"] == "build"  # built here, never pulled


def test_compose_root_is_read_only_with_a_tmpfs_and_a_cache_volume_like_kubernetes():
    for name in ("minicpm-v-2_6", "tiny-cpu", str(FIXTURE_PROFILES / "kitchen-sink.yaml")):
        document = compose(name)
        service = engine_service(document)
        plan = resolve(load_profile(name))
        assert service["read_only"] is True
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts[plan.writable_dirs["tmp"]]["type"] == "tmpfs"
        assert mounts[plan.writable_dirs["cache"]] == {
            "type": "volume",
            "source": "cache",
            "target": plan.writable_dirs["cache"],
        }
        assert "cache" in document["volumes"]
        assert service["environment"]["HOME"] == plan.writable_dirs["cache"]


@pytest.mark.parametrize(
    "literal",
    [
        "$(VLLM_API_KEY)",
        "$$(VLLM_API_KEY)",
        "a$$b",
        "$HOME",
        "${HOME}",
        "$",
        "x$",
        "$(",
        "$(unclosed",
        '"$@"',
        "$$$(A)$",
        "plain",
    ],
)
def test_kubernetes_literals_survive_kubernetes_expansion(literal):
    from deploy.render import kubernetes_literal

    assert kubernetes_expand(kubernetes_literal(literal), {"VLLM_API_KEY": "sk-secret", "A": "x"}) == literal


def test_kubernetes_args_are_what_vllm_receives():
    """Kubernetes expands $(VAR) in command, args and env: what it hands the container is the plan's argv."""
    plan = resolve(load_profile(str(FIXTURE_PROFILES / "kitchen-sink.yaml")))
    c = container(str(FIXTURE_PROFILES / "kitchen-sink.yaml"))
    env = {"VLLM_API_KEY": "sk-secret", "HOME": "/root"}
    assert [kubernetes_expand(a, env) for a in c["args"]] == plan.argv
    assert [kubernetes_expand(a, env) for a in c["command"]] == plan.entrypoint


def test_cpu_profile_without_a_ca_bundle_renders_no_build_secret():
    import pathlib
    import tempfile

    from deploy.spec.variant import write_variant

    with tempfile.TemporaryDirectory() as scratch:
        path = write_variant("tiny-cpu", pathlib.Path(scratch) / "p.yaml", {"image": {"ca-bundle": None}})
        document = compose(str(path))
    assert "secrets" not in document and "secrets" not in document["services"]["vllm"]["build"]


def test_write_files_writes_all_or_nothing(tmp_path):
    target = tmp_path / "compose" / "x" / "compose.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("old\n")
    # A second file whose parent is a regular file cannot be created: the first must stay untouched.
    (tmp_path / "blocker").write_text("")
    with pytest.raises(UserError, match=r"blocker: is a file where a directory is needed"):
        write_files({"compose/x/compose.yaml": "new\n", "blocker/child.yaml": "x\n"}, tmp_path)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["compose.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "compose"]  # no staging left behind


def test_write_files_refuses_a_directory_where_a_file_goes(tmp_path):
    (tmp_path / "compose" / "x" / "compose.yaml").mkdir(parents=True)
    (tmp_path / "compose" / "x" / "Dockerfile").write_text("old\n")
    with pytest.raises(UserError, match=r"compose.yaml: is a directory where a file is needed"):
        write_files({"compose/x/Dockerfile": "new\n", "compose/x/compose.yaml": "x\n"}, tmp_path)
    assert (tmp_path / "compose" / "x" / "Dockerfile").read_text() == "old\n"
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.glob(".vllm-deploy-render-*"))


def test_render_cli_is_atomic_across_profiles(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\n")
    result = cli("render", "tiny-cpu", str(bad), "--out", str(tmp_path / "out"))
    assert result.code == 2
    assert "nothing was written" in result.err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_installed_package_reproduces_committed_output(tmp_path):
    """A non-editable `pip install .` in a fresh venv renders the committed files byte for byte."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input"]
    subprocess.run([*pip, str(REPO)], check=True, cwd=tmp_path, timeout=600)
    out = tmp_path / "X"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [str(venv / "bin" / "vllm-deploy"), "render", "--all", "--out", str(out)], check=True, cwd=tmp_path, env=env
    )
    produced = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert produced, "nothing rendered"
    for path, content in produced.items():
        assert (REPO / path).read_bytes() == content, path
    assert set(produced) == {p for name in builtin_names() for p in rendered(name)}


# ---------------------------------------------------------------------------------------------
# All or nothing, never through a symbolic link (#17)


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under root: a file's bytes, a link's target, a directory as "dir"."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        found[relative] = (
            f"-> {os.readlink(path)}" if path.is_symlink() else "dir" if path.is_dir() else path.read_bytes()
        )
    return found


def test_a_symlinked_profile_directory_is_refused_and_its_target_untouched(cli, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    assert cli("render", "tiny-cpu", "--out", str(out)).code == 0
    (out / "compose" / "tiny-cpu").rename(elsewhere)
    (elsewhere / "compose.yaml").write_text("theirs\n")
    (out / "compose" / "tiny-cpu").symlink_to(elsewhere)
    before = snapshot(tmp_path)
    result = cli("render", "tiny-cpu", "--out", str(out))
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        f"error: nothing was written:\n  - {out}/compose/tiny-cpu: is a symbolic link; render writes "
        f"only real files and directories under {out} (remove the link)\n"
    )
    assert snapshot(tmp_path) == before
    check = cli("render", "tiny-cpu", "--out", str(out), "--check")
    assert check.code == 1
    assert (
        "out of date: compose/tiny-cpu/compose.yaml (compose/tiny-cpu is a symbolic link: render writes only real "
        "files and directories)\n"
    ) in check.err


@pytest.mark.parametrize("link", ["k8s/tiny-cpu/service.yaml", "compose/tiny-cpu/wheels", "k8s"])
def test_a_symbolic_link_anywhere_below_out_is_refused(cli, tmp_path, link):
    out = tmp_path / "out"
    assert cli("render", "tiny-cpu", "--out", str(out)).code == 0
    target = out / link
    moved = tmp_path / "moved"
    target.rename(moved)
    target.symlink_to(moved)
    before = snapshot(tmp_path)
    result = cli("render", "tiny-cpu", "--out", str(out))
    assert result.code == 2 and f"  - {out}/{link}: is a symbolic link; render writes only real files" in result.err
    assert snapshot(tmp_path) == before


def render_files() -> dict[str, str]:
    return rendered("tiny-cpu")


def failing_on(monkeypatch, name: str, call: int, error: int):
    """os.<name> in deploy.output raising OSError(error) on its `call`-th call (counted from 1)."""
    import deploy.output

    real = getattr(os, name)
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        if len(calls) == call:
            raise OSError(error, os.strerror(error))
        return real(*args, **kwargs)

    monkeypatch.setattr(deploy.output.os, name, fake)


@pytest.mark.parametrize(
    "name, call, error, reason",
    [
        ("replace", 3, errno.EXDEV, "Invalid cross-device link"),  # moving in, after two files are replaced
        ("open", 5, errno.ENOSPC, "No space left on device"),  # staging: a full disk
        ("mkdir", 1, errno.EACCES, "Permission denied"),  # a directory it may not create
    ],
)
def test_a_failure_midway_puts_every_file_back(monkeypatch, tmp_path, name, call, error, reason):
    files = render_files()
    write_files(files, tmp_path)
    for path in files:  # NB: every file differs, so every one is staged and moved in (an equal one is left alone)
        (tmp_path / path).write_text("hand edit\n")
    (tmp_path / "k8s" / "tiny-cpu" / "service.yaml").unlink()
    if name == "mkdir":
        (tmp_path / "compose" / "tiny-cpu" / "wheels" / "README").unlink()
        (tmp_path / "compose" / "tiny-cpu" / "wheels").rmdir()
    before = snapshot(tmp_path)
    failing_on(monkeypatch, name, call, error)
    with pytest.raises(UserError) as caught:
        write_files(files, tmp_path)
    assert str(caught.value).endswith(f": cannot be written ({reason}); nothing was changed")
    assert snapshot(tmp_path) == before  # replaced files back, created ones gone, nothing staged left


def test_a_file_that_already_holds_its_bytes_is_left_as_it_is(tmp_path):
    files = render_files()
    write_files(files, tmp_path)
    same, edited = tmp_path / "compose" / "tiny-cpu" / "compose.yaml", tmp_path / "k8s" / "tiny-cpu" / "service.yaml"
    edited.write_text("hand edit\n")
    loose = tmp_path / "k8s" / "tiny-cpu" / "deployment.yaml"
    loose.chmod(0o600)  # the same bytes, another mode: rewritten, 0644 again
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (same, edited, loose)}
    write_files(files, tmp_path)
    assert (same.stat().st_ino, same.stat().st_mtime_ns) == before[same]
    assert edited.stat().st_ino != before[edited][0] and edited.read_text() == files["k8s/tiny-cpu/service.yaml"]
    assert loose.stat().st_ino != before[loose][0] and loose.stat().st_mode & 0o777 == 0o644
    assert all((tmp_path / path).read_text(encoding="utf-8") == text for path, text in files.items())
    assert not list(tmp_path.rglob(".vllm-deploy-render-*"))


def test_a_failed_first_render_leaves_no_directory(monkeypatch, tmp_path):
    failing_on(monkeypatch, "replace", 4, errno.EIO)
    with pytest.raises(
        UserError,
        match=r"out/compose/tiny-cpu/\S+: cannot be written \(Input/output error\); "
        r"nothing was changed",
    ):
        write_files(render_files(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_link_that_appears_after_the_checks_is_not_followed(monkeypatch, tmp_path):
    """Directories are opened without following links: a swap between check and write is refused."""
    import deploy.output

    files = render_files()
    write_files(files, tmp_path / "out")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real = deploy.output._Write.stage

    def swap_then_stage(self, relative, content):
        k8s = tmp_path / "out" / "k8s" / "tiny-cpu"
        if not k8s.is_symlink():  # after every check passed, before the first file is staged
            shutil.rmtree(k8s)
            k8s.symlink_to(elsewhere)
        return real(self, relative, content)

    monkeypatch.setattr(deploy.output._Write, "stage", swap_then_stage)
    with pytest.raises(
        UserError, match=r"cannot be written \(a symbolic link appeared on its way\); nothing was changed"
    ):
        write_files(files, tmp_path / "out")
    assert list(elsewhere.iterdir()) == []


def test_check_reports_stray_undecodable_and_odd_files_but_not_the_stacks_secrets(cli, tmp_path):
    assert cli("render", "tiny-cpu", "--out", str(tmp_path)).code == 0
    compose, k8s = tmp_path / "compose" / "tiny-cpu", tmp_path / "k8s" / "tiny-cpu"
    for kept in (compose / ".env", k8s / "secrets.env", compose / "wheels" / "torch-2.9.0-cp312-none-any.whl"):
        kept.write_text("VLLM_API_KEY=sk-x\n")
    assert cli("render", "tiny-cpu", "--out", str(tmp_path), "--check").code == 0
    (compose / "notes\x1b[2J.txt").write_text("mine\n")
    (k8s / "service.yaml").write_bytes(b"\xff\xfe not UTF-8\n")
    (compose / "prometheus").mkdir()
    (compose / "prometheus" / "old.yml").write_text("x\n")
    os.mkfifo(compose / "Dockerfile.router")
    (k8s / "etc").symlink_to("/etc")
    (tmp_path / "compose" / "other").mkdir()
    (tmp_path / "compose" / "other" / "x").write_text("another profile's: not ours to judge\n")
    result = cli("render", "tiny-cpu", "--out", str(tmp_path), "--check")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "out of date: compose/tiny-cpu/Dockerfile.router (not written by render: delete it, or keep it outside "
        "compose/tiny-cpu/)\n"
        "out of date: compose/tiny-cpu/notes\\x1b[2J.txt (not written by render: delete it, or keep it outside "
        "compose/tiny-cpu/)\n"
        "out of date: compose/tiny-cpu/prometheus/old.yml (not written by render: delete it, or keep it outside "
        "compose/tiny-cpu/)\n"
        "out of date: k8s/tiny-cpu/etc (not written by render: delete it, or keep it outside k8s/tiny-cpu/)\n"
        "out of date: k8s/tiny-cpu/service.yaml (differs: not UTF-8 text)\n"
        "run `make render` (or `vllm-deploy render --all`) and commit the result\n"
    )


def test_check_reports_a_file_render_writes_that_became_a_fifo_without_blocking(cli, tmp_path):
    assert cli("render", "tiny-cpu", "--out", str(tmp_path)).code == 0
    service = tmp_path / "k8s" / "tiny-cpu" / "service.yaml"
    service.unlink()
    os.mkfifo(service)
    result = cli("render", "tiny-cpu", "--out", str(tmp_path), "--check")
    assert "out of date: k8s/tiny-cpu/service.yaml (not a regular file)\n" in result.err
    refused = cli("render", "tiny-cpu", "--out", str(tmp_path))
    assert refused.code == 2 and f"{service}: is not a regular file (a device, FIFO or socket)" in refused.err


def test_the_files_render_leaves_alone_are_the_ones_git_ignores():
    from deploy.output import KEPT

    samples = [pattern.replace("*", "x", 1).replace("*", "y") for pattern in KEPT]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *samples], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == samples


def test_floats_are_written_so_yaml_1_1_reads_them_back():
    from deploy.render import _yaml_flow, _yaml_scalar

    for value in (1e-07, 1e16, -2.5e-10, 0.1, 1.0):
        assert yaml.safe_load(_yaml_scalar(value)) == value and isinstance(yaml.safe_load(_yaml_scalar(value)), float)
    assert _yaml_flow({"temperature": 1e-07, "x": [1e16]}) == '{"temperature": 1.0e-07, "x": [1.0e+16]}'


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_an_out_name_too_long_for_the_filesystem_is_a_user_error(cli, tmp_path, check):
    out = tmp_path / ("a" * 300)
    result = cli("render", "tiny-cpu", "--out", str(out), *check)
    assert (result.code, result.err) == (2, f"error: {out}: cannot be used as the output root (File name too long)\n")


MONITORED = [ref for ref in [*builtin_names(), *map(str, FIXTURES)] if resolve(load_profile(ref)).monitoring]


@pytest.mark.parametrize("ref", MONITORED)
def test_the_rules_come_out_the_same_from_libyaml_and_from_pyyaml(ref, monkeypatch):
    from deploy import render as rendering

    assert len(MONITORED) >= 2  # tiny-cpu-x2 and a fixture at least
    plan = resolve(load_profile(ref))
    assert plan.monitoring is not None
    fast = rendering._rule_groups(plan.monitoring.rule_groups, 4)
    monkeypatch.setattr(rendering, "_SAFE_DUMPER", yaml.SafeDumper)
    assert fast == rendering._rule_groups(plan.monitoring.rule_groups, 4)
