"""The tables generated from the pinned vLLM are current: regenerating them in the engine venv gives the
committed bytes (deploy/data/vllm-serve-options.json, vllm-envs.json, vllm-architectures.json); the
hand-reviewed classification (vllm-serve-classes.yaml) covers exactly the real parser's options; and the
extra-args guard reads every spelling of every option as vLLM's own parser does. Every answer comes from the
session's one vLLM process (the `vllm` fixture, tests/tools/vllm_session.py), which runs the generators' own
`table()` functions."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.engine
# The committed table -> the make target that regenerates it (tests/tools/vllm_session.py names the generators).
TABLES = {
    "vllm-serve-options.json": "make vllm-options",
    "vllm-envs.json": "make vllm-envs",
    "vllm-architectures.json": "make vllm-architectures",
}


@pytest.mark.parametrize("table", list(TABLES))
def test_the_committed_table_is_what_the_pinned_vllm_generates(vllm, table):
    target = TABLES[table]
    committed = (REPO / "deploy" / "data" / table).read_text(encoding="utf-8")
    assert vllm.table(table) == committed, f"deploy/data/{table} drifted from the engine venv's vLLM: run `{target}`"


def test_every_option_of_the_real_parser_is_classified_and_nothing_else(vllm):
    import json

    from deploy.facts import option_classes

    parser = {spec["dest"] for spec in json.loads(vllm.table("vllm-serve-options.json"))["options"].values()}
    known = option_classes()
    classified = {*known.allowed, *known.modelled, *known.refused}
    assert not parser - classified, (
        f"unclassified in deploy/data/vllm-serve-classes.yaml: {sorted(parser - classified)}"
    )
    assert not classified - parser, f"classified but not in vLLM's parser: {sorted(classified - parser)}"


def test_the_guard_reads_every_spelling_as_vllms_parser_does(vllm):
    """Each option under each spelling vLLM accepts (`_`, `=value`, a unique prefix, `.field`, a glued value):
    the option the guard resolves is the one vLLM's FlexibleArgumentParser and argparse resolve."""
    from deploy.facts import option_table
    from deploy.spec.flags import resolve
    from tests.unit.test_deny import spellings

    argvs = [argv for option in sorted(option_table()) for argv in spellings(option)]
    argvs += [["--api", "x"], ["--max-num", "8"], ["-d", "1"], ["--nonexistent-flag"], ["-O3"], ["-Odecode"]]
    theirs = vllm.resolve(argvs)  # tests/tools/vllm_resolve.py's answer
    table = option_table()
    unsafe: list[tuple[list[str], str | None, str | None]] = []
    lenient: list[tuple[list[str], str | None, str | None]] = []
    for argv, dest in zip(argvs, theirs, strict=True):
        option, candidates = resolve(argv[0])
        ours = table[option]["dest"] if option else ("ambiguous" if len(candidates) > 1 else None)
        if ours != dest:
            # NB: where one side reads no option at all, vLLM fails to start or the guard refuses: no hole.
            (lenient if None in (option, dest) or dest == "ambiguous" else unsafe).append((argv, ours, dest))
    assert not unsafe, f"the guard and vLLM's parser read these as different options (argv, guard, vLLM): {unsafe}"
    # NB: Python 3.11's argparse does not prefix-match `-as=2` (later versions do); the guard reads it as
    # `-asc` either way. That is the only leniency: anything else means the guard's mirror drifted.
    assert all(not a[0].startswith("--") and "=" in a[0] for a, _, _ in lenient), lenient


def test_the_architecture_table_knows_the_built_in_models():
    import json

    table = json.loads((REPO / "deploy" / "data" / "vllm-architectures.json").read_text(encoding="utf-8"))
    assert {"MiniCPMV", "Qwen2_5_VLForConditionalGeneration", "Idefics3ForConditionalGeneration"} <= set(
        table["multimodal"]
    )


def test_every_folder_the_image_compiles_is_in_the_engine_venv():
    """deploy/assets/engine-bytecode-dirs.txt (the folders a served vLLM loads modules from, compiled at the image's
    build) names folders of modules this vLLM release has: a release that moves them shows up here."""
    import subprocess
    from pathlib import Path

    from tests.integration.conftest import engine_python

    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(engine_python()), "-c", purelib], capture_output=True, text=True).stdout.strip())
    listed = [
        line for line in (REPO / "deploy/assets/engine-bytecode-dirs.txt").read_text().splitlines() if line[:1] != "#"
    ]
    assert len(listed) > 500 and {"vllm", "vllm/entrypoints/openai", "torch", "transformers"} <= set(listed)
    missing = [folder for folder in listed if not any((site / folder).glob("*.py"))]
    assert not missing, f"no modules in these folders: {missing[:20]} (scripts/import_trace.py --bytecode-dirs)"
