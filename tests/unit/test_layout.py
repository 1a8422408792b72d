"""The code's shape: data flows one way (no import cycle in deploy/, lazy imports included), modules
stay small, and the smoke suite stands alone (it imports nothing from deploy)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (resolved to the deepest known name)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def graph(package: str) -> dict[str, set[str]]:
    files = {module_name(p): p for p in (REPO / package).rglob("*.py")}
    edges = {}
    for name, path in files.items():
        # A package's __init__ re-exports its modules: it depends on them, not the other way round.
        targets = {t for t in imports(path) if t in files and t != name}
        edges[name] = targets
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_deploy_package_has_no_import_cycle():
    edges = graph("deploy")
    # A package importing its own submodules (re-exports) is not a cycle in the data flow.
    flow = {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in edges.items()}
    assert cycle(flow) is None, " -> ".join(cycle(flow) or [])


def test_the_checker_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in [*(REPO / "deploy").rglob("*.py"), *(REPO / "smoke_tests").rglob("*.py")]
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_smoke_suite_imports_nothing_from_deploy():
    for path in (REPO / "smoke_tests").rglob("*.py"):
        assert not {i for i in imports(path) if i == "deploy" or i.startswith("deploy.")}, path


def test_the_facts_sit_below_the_profile():
    """deploy/facts (the data files and their loaders) is the bottom layer: spec and everything above it read
    the files through it, and it reads nothing of the project but where the package lives."""
    edges = graph("deploy")
    facts = [n for n in edges if n == "deploy.facts" or n.startswith("deploy.facts.")]
    assert facts
    for name in facts:
        assert {t for t in edges[name] if not t.startswith("deploy.facts")} <= {"deploy.paths"}, name


def test_no_module_but_the_facts_opens_the_data_files():
    """One owner for deploy/data/: elsewhere the data files are named in prose (messages, docstrings), never opened."""
    owners = {REPO / "deploy" / "paths.py", *(REPO / "deploy" / "facts").rglob("*.py")}
    for path in {*(REPO / "deploy").rglob("*.py"), *(REPO / "scripts").rglob("*.py")} - owners:
        text = path.read_text(encoding="utf-8")
        assert "DATA_DIR" not in text and '/ "data"' not in text, path


def test_the_runtime_sits_above_the_core():
    """facts, spec, plan, targets and render never reach up into the runtime or the benchmarks."""
    edges = graph("deploy")
    core = [
        n
        for n in edges
        if n.startswith(("deploy.facts", "deploy.plan", "deploy.spec", "deploy.targets")) or n == "deploy.render"
    ]
    for name in core:
        assert not {t for t in edges[name] if t.startswith(("deploy.runtime", "deploy.bench", "deploy.cli"))}, name


def test_the_core_layers_import_only_downwards():
    """spec -> plan -> targets -> render: the neutral plan never reaches into a target's projection, a projection
    never into render, and the profile's types into none of them."""
    layers = ["deploy.spec", "deploy.plan", "deploy.targets", "deploy.render"]
    edges = graph("deploy")
    for name, targets in edges.items():
        own = next((i for i, layer in enumerate(layers) if name == layer or name.startswith(layer + ".")), None)
        if own is None:
            continue
        above = {t for t in targets for layer in layers[own + 1 :] if t == layer or t.startswith(layer + ".")}
        assert not above, (name, above)


LISTED_PACKAGES = ["bench", "init", "plan", "runtime", "spec", "targets"]


def listed_modules(package: str) -> list[str]:
    """The modules a package's docstring lists, one a line: the name, two spaces or more, what it is."""
    doc = ast.get_docstring(ast.parse((REPO / "deploy" / package / "__init__.py").read_text(encoding="utf-8")))
    return re.findall(r"(?m)^([a-z_]+) {2,}\S", doc or "")


@pytest.mark.parametrize("package", LISTED_PACKAGES)
def test_a_package_docstring_lists_exactly_its_modules_in_import_order(package):
    folder = REPO / "deploy" / package
    present = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    present |= {p.parent.name for p in folder.glob("*/__init__.py")}
    listed = listed_modules(package)
    assert sorted(listed) == sorted(present), f"deploy/{package}/__init__.py lists {listed}, present: {sorted(present)}"
    edges = graph("deploy")
    for index, name in enumerate(listed):
        later = {f"deploy.{package}.{other}" for other in listed[index:]}
        assert not edges[f"deploy.{package}.{name}"] & later, (
            f"deploy.{package}.{name} imports a module listed after it"
        )
