"""`make test-times`: the stages scripts/make-test.sh recorded and the module times tests/conftest.py recorded."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, module_from_file

test_times = module_from_file("test_times", REPO / "scripts" / "test_times.py")


def test_stages_in_order_and_the_slowest_modules_first(tmp_path, capsys):
    (tmp_path / "stages.tsv").write_text("tool venv\t144.3\t0\nengine venv\t226.6\t0\nmake test (wall)\t1139.2\t1\n")
    (tmp_path / "modules.tsv").write_text(
        "tests/unit/test_a.py\t2.0\t10\ntests/integration/test_b.py\t351.2\t11\ntests/unit/test_c.py\t0.5\t3\n"
    )
    assert test_times.main(str(tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    stages = [line.split()[0] for line in lines[1:4]]
    assert stages == ["tool", "engine", "make"]  # in the order the run recorded them
    assert lines[3].rstrip().endswith("exit 1")  # a failed stage says so
    modules = [line.split()[0] for line in lines[5:]]
    assert modules == ["tests/integration/test_b.py", "tests/unit/test_a.py", "tests/unit/test_c.py"]
    assert "of 3, 354 s in all" in lines[4]


def test_no_timings_is_a_clear_message(tmp_path, capsys):
    assert test_times.main(str(tmp_path / "none")) == 1
    assert "run `make test` first" in capsys.readouterr().err


def test_ci_runs_make_test_and_make_test_runs_the_driver():
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert "scripts/make-test.sh" in recipe
    assert Path(REPO / "scripts" / "make-test.sh").stat().st_mode & 0o111
