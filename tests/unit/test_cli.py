"""The CLI contract: commands, exit codes, and no secret in any output."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import pytest
import yaml

from deploy.plan import resolve
from deploy.spec import builtin_names, json_schema, load_profile
from tests.conftest import REPO, venv_tool


def test_show_prints_the_plan_as_yaml(cli):
    result = cli("show", "minicpm-v-2_6")
    assert result.code == 0
    shown = yaml.safe_load(result.out)
    assert shown["argv"] == resolve(load_profile("minicpm-v-2_6")).argv
    assert shown["secrets"][0] == {"name": "VLLM_API_KEY", "source": "VLLM_API_KEY", "required": True}


def test_key_value_appears_in_no_output_and_no_file(cli, monkeypatch, tmp_path):
    key = "sk-" + secrets.token_hex(16)
    monkeypatch.setenv("VLLM_API_KEY", key)
    monkeypatch.setenv("HF_TOKEN", key)
    outputs = []
    for name in builtin_names():
        for command in ("validate", "show"):
            result = cli(command, name)
            outputs += [result.out, result.err]
    result = cli("render", "--all", "--out", str(tmp_path))
    assert result.code == 0
    outputs.append(result.out + result.err)
    files = [p.read_text(encoding="utf-8") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 3 * len(builtin_names())
    assert all(key not in text for text in outputs + files)


def test_render_check_detects_drift(cli, tmp_path):
    assert cli("render", "tiny-cpu", "--out", str(tmp_path)).code == 0
    assert cli("render", "tiny-cpu", "--check", "--out", str(tmp_path)).code == 0
    compose_file = tmp_path / "compose" / "tiny-cpu" / "compose.yaml"
    compose_file.write_text(compose_file.read_text() + "# hand edit\n")
    result = cli("render", "tiny-cpu", "--check", "--out", str(tmp_path))
    assert result.code == 1
    assert "out of date: compose/tiny-cpu/compose.yaml" in result.err


def test_render_without_profiles_is_a_user_error(cli):
    result = cli("render")
    assert (result.code, result.err) == (2, "error: render: name at least one profile, or pass --all\n")


def test_schema_command_prints_the_model_schema(cli):
    result = cli("schema")
    assert result.code == 0
    assert json.loads(result.out) == json_schema()


def test_committed_schema_matches_the_model():
    committed = json.loads((REPO / "schema" / "profile.schema.json").read_text(encoding="utf-8"))
    assert committed == json_schema(), "schema/profile.schema.json drifted: run `make golden`"


def test_schema_requires_the_seed_fields():
    schema = json_schema()
    assert set(schema["required"]) >= {"name", "model", "engine", "api-key"}
    engine = schema["$defs"]["Engine"]
    assert set(engine["required"]) == {"dtype", "max-model-len", "gpu-memory-utilization", "trust-remote-code"}
    assert engine["additionalProperties"] is False


def test_usage_errors_exit_2_and_debug_shows_tracebacks(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "deploy", *args], capture_output=True, text=True, cwd=REPO)

    assert run("nonsense").returncode == 2
    bad = tmp_path / "p.yaml"
    bad.write_text("name: x\n")
    plain = run("validate", str(bad))
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = run("--debug", "validate", str(bad))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UserError" in debug.stderr


def test_console_script_and_module_agree():
    module = subprocess.run([sys.executable, "-m", "deploy", "show", "tiny-cpu"], capture_output=True, text=True)
    direct = subprocess.run([venv_tool("vllm-deploy"), "show", "tiny-cpu"], capture_output=True, text=True)
    assert module.returncode == direct.returncode == 0
    assert direct.stdout == module.stdout


# ---------------------------------------------------------------------------------------------
# The one error boundary: a bug is one line and exit 70, never a traceback or a raw control character


def test_an_unexpected_exception_is_one_escaped_line_and_exit_70(cli, monkeypatch):
    import deploy.cli

    message = "boom \x1b[2J\u202e sk-abcdefghijklmnopqrstuvwxyz123456 " + "word " * 100

    def broken(args):
        raise RuntimeError(message)

    monkeypatch.setattr(deploy.cli, "cmd_validate", broken)
    result = cli("validate", "tiny-cpu")
    shown = "boom \\x1b[2J\\u202e (hidden) " + "word " * 100  # the key-shaped word is hidden
    assert (result.code, result.out) == (70, "")
    assert result.err == (
        f"vllm-deploy: internal error: RuntimeError: {shown[:300]}… ({len(shown) - 300} more "
        "characters) "
        "(run with --debug for the traceback)\n"
    )


def test_debug_shows_the_traceback_of_an_unexpected_exception(cli, monkeypatch):
    import deploy.cli

    empty: dict[str, int] = {}
    monkeypatch.setattr(deploy.cli, "cmd_schema", lambda args: empty["missing"])
    assert cli("schema").err == (
        "vllm-deploy: internal error: KeyError: 'missing' (run with --debug for the traceback)\n"
    )
    with pytest.raises(KeyError):
        cli("--debug", "schema")


def test_ctrl_c_stays_exit_130_and_a_closed_pipe_is_quiet(cli, monkeypatch):
    import deploy.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(deploy.cli, "cmd_schema", interrupted)
    assert (cli("schema").code, cli("schema").err) == (130, "")

    def closed(args):
        raise BrokenPipeError

    monkeypatch.setattr(deploy.cli, "cmd_schema", closed)
    assert (cli("schema").code, cli("schema").err) == (1, "")


def test_command_line_words_in_usage_errors_are_escaped(capsys):
    from deploy.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["schema", "\x1b]0;owned\x07", "\u202ex"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "vllm-deploy: error: unrecognized arguments: \\x1b]0;owned\\x07 \\u202ex"
    )


def test_a_profile_name_too_long_for_the_filesystem_is_a_user_error(cli):
    result = cli("validate", "a" * 300)
    assert (result.code, result.err) == (2, f"error: {'a' * 300}: cannot read profile: File name too long\n")


def test_valid_echoes_the_reference_escaped(cli, tmp_path):
    target = tmp_path / "p\u202e.yaml"
    target.write_text((REPO / "deploy" / "profiles" / "tiny-cpu.yaml").read_text(encoding="utf-8"))
    result = cli("validate", str(target))
    assert (result.code, result.out) == (0, f"{tmp_path}/p\\u202e.yaml: valid\n")


def test_show_escapes_what_the_profile_said(cli, tmp_path):
    lines = (REPO / "deploy" / "profiles" / "tiny-cpu.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    target = tmp_path / "p.yaml"
    target.write_text(
        "".join('description: "\\u202e\\u2066 x"\n' if line.startswith("description:") else line for line in lines),
        encoding="utf-8",
    )
    result = cli("show", str(target))
    assert result.code == 0 and "\u202e" not in result.out and "\u2066" not in result.out
    assert result.out.splitlines()[1] == "description: \\u202e\\u2066 x"
