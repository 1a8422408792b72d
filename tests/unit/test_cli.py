"""The CLI contract: commands, exit codes, and no secret in any output."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

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
