"""The compiled-template cache of deploy/render.py: a second run loads what the first compiled, and a cache that is
corrupt or cannot be written is only a slower run, never an error nor other bytes."""

from __future__ import annotations

import pytest

from deploy import render as rendering
from deploy.plan import resolve
from deploy.spec import load_profile

TEMPLATE = "compose/compose.yaml.j2"


def _plan():
    return resolve(load_profile("tiny-cpu"))


def test_a_second_environment_loads_the_compiled_templates_instead_of_compiling(tmp_path, monkeypatch):
    plan = _plan()
    first = rendering._new_environment(rendering._BytecodeCache(str(tmp_path)))
    expected = first.get_template(TEMPLATE).render(plan=plan, compose=rendering.compose_plan(plan))
    assert list(tmp_path.iterdir()), "nothing was cached"
    second = rendering._new_environment(rendering._BytecodeCache(str(tmp_path)))

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled although the cache holds the template")

    monkeypatch.setattr(second, "compile", no_compiling)
    assert second.get_template(TEMPLATE).render(plan=plan, compose=rendering.compose_plan(plan)) == expected


@pytest.mark.parametrize("damage", ["corrupt", "unwritable"])
def test_a_broken_cache_renders_the_same_bytes(tmp_path, damage):
    plan = _plan()
    expected = (
        rendering._new_environment(None).get_template(TEMPLATE).render(plan=plan, compose=rendering.compose_plan(plan))
    )
    directory = tmp_path / "cache"
    if damage == "corrupt":
        directory.mkdir()
        rendering._new_environment(rendering._BytecodeCache(str(directory))).get_template(TEMPLATE)
        for path in directory.iterdir():
            path.write_bytes(path.read_bytes()[:40] + b"\x00garbage")
    # NB: "unwritable": a directory that does not exist (the tests may run as root, which writes anywhere)
    env = rendering._new_environment(rendering._BytecodeCache(str(directory)))
    assert env.get_template(TEMPLATE).render(plan=plan, compose=rendering.compose_plan(plan)) == expected


def test_render_uses_the_cache_and_gives_the_golden_bytes():
    """The cached environment is the one render() uses (the golden tests compare its bytes)."""
    assert isinstance(rendering._environment().bytecode_cache, rendering._BytecodeCache)
