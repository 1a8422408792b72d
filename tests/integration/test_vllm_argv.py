"""vLLM's own parser accepts every rendered `vllm serve` argv, and reads back the plan's settings.

The argv is taken from the rendered files themselves (compose.yaml's command, the Deployment's args),
not from the plan, then parsed by vLLM 0.32's `vllm serve` parser in the engine venv (ENGINE_PYTHON,
set by `make test`; else .venv-engine) with tests/tools/vllm_parse.py, in the session's one vLLM process (the
`vllm` fixture). No server starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deploy.init import init_profile
from deploy.plan import Plan, resolve
from deploy.render import render
from deploy.spec import builtin_names, load_profile, parse_profile
from tests.conftest import FIXTURE_PROFILES, REPO, kubernetes_expand

pytestmark = pytest.mark.engine
PROFILES = builtin_names() + [str(p) for p in sorted(FIXTURE_PROFILES.glob("*.yaml"))]
PARSER_SCRIPT = REPO / "tests" / "tools" / "vllm_parse.py"


def from_compose(argv: list[str]) -> list[str]:
    """Compose reads `$$` as a literal `$`: what the container really receives."""
    return [arg.replace("$$", "$") for arg in argv]


def from_kubernetes(argv: list[str]) -> list[str]:
    """Kubernetes' own expansion, with the key variable defined as it is in the pod."""
    return [kubernetes_expand(arg, {"VLLM_API_KEY": "sk-in-the-pod"}) for arg in argv]


def rendered_argvs(plan: Plan) -> dict[str, list[str]]:
    files = render(plan)
    compose = yaml.safe_load(files[f"compose/{plan.name}/compose.yaml"])
    deployment = yaml.safe_load(files[f"k8s/{plan.name}/deployment.yaml"])
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["vllm"]
    return {
        "compose": from_compose(compose["services"][plan.instances[0].service]["command"]),
        "kubernetes": from_kubernetes(containers[0]["args"]),
    }


PLANS = {Path(ref).stem: resolve(load_profile(ref)) for ref in PROFILES}
# The profiles `vllm-deploy init` drafts from the model fixtures (config files only), as written.
MODELS = REPO / "tests" / "fixtures" / "models"
PLANS.update(
    {
        f"init-{m.name}": resolve(parse_profile(init_profile(str(m)), m.name))
        for m in sorted(MODELS.iterdir())
        if m.is_dir()
    }
)
RENDERED = {name: rendered_argvs(plan) for name, plan in PLANS.items()}

# A valid argv (tiny-cpu's) with one thing wrong each; they ride in the same parser session.
BASE = list(PLANS["tiny-cpu"].argv)
NEGATIVE = {
    "unknown-flag": BASE + ["--no-such-flag"],
    "bad-dtype": [a if a != "bfloat16" else "fp7" for a in BASE],
    "api-key-prefix": BASE + ["--api-ke", "sk-leaked"],
    "no-positional-model": BASE[1:],
}
assert NEGATIVE["bad-dtype"] != BASE, "tiny-cpu no longer uses bfloat16: pick another bad-value target"


@pytest.fixture(scope="module")
def session(vllm) -> tuple[dict[tuple[str, ...], dict], str]:
    """Every distinct argv (rendered, planned, negative) parsed by vLLM, all in one request to the session's
    vLLM process (tests/tools/vllm_parse.py's `parse`)."""
    argvs: list[list[str]] = []
    for name, plan in PLANS.items():
        argvs += [list(plan.argv), *RENDERED[name].values()]
    argvs += NEGATIVE.values()
    unique = list({tuple(a): a for a in argvs}.values())
    started = time.monotonic()
    answers = vllm.parse(unique)
    elapsed = time.monotonic() - started
    assert len(answers) == len(unique)
    figure = f"{elapsed:.1f} s for {len(unique)} argv"
    return {tuple(a): answer for a, answer in zip(unique, answers, strict=True)}, figure


@pytest.fixture
def parsed(session, measured) -> dict[tuple[str, ...], dict]:
    """vLLM's answer for each argv; the parse's wall time goes to the run's measured figures."""
    answers, figure = session
    measured["vLLM parser (every argv, vLLM already imported)"] = figure
    return answers


@pytest.mark.parametrize("name", list(PLANS))
def test_rendered_argv_is_the_plans_argv(name):
    plan = PLANS[name]
    assert RENDERED[name]["compose"] == plan.argv
    assert RENDERED[name]["kubernetes"] == plan.argv
    assert plan.argv[0] == plan.model  # `vllm serve MODEL …`: the positional model first


@pytest.mark.parametrize("name", list(PLANS))
@pytest.mark.parametrize("source", ["compose", "kubernetes"])
def test_vllm_parses_the_rendered_argv_to_the_plans_settings(parsed, name, source):
    plan = PLANS[name]
    answer = parsed[tuple(RENDERED[name][source])]
    assert answer["ok"], f"vLLM rejects the {source} argv of {name} ({answer['stage']}): {answer['error']}"
    ns = answer["namespace"]
    # The key reaches vLLM through VLLM_API_KEY only, never argv (where `ps` and the pod spec would show it).
    assert not ns["api_key"]
    assert "api_key" not in answer["changed"]
    assert ns["subparser"] == "serve"
    assert ns["model_tag"] == plan.model
    assert ns["model"] == plan.model
    assert ns["served_model_name"] == [plan.served_model_name]
    assert (ns["host"], ns["port"]) == ("0.0.0.0", plan.container_port)
    e = plan.engine
    assert ns["dtype"] == e.dtype
    assert ns["max_model_len"] == e.max_model_len
    assert ns["gpu_memory_utilization"] == e.gpu_memory_utilization
    assert ns["trust_remote_code"] is e.trust_remote_code
    assert ns["tensor_parallel_size"] == e.tensor_parallel_size
    assert ns["max_num_seqs"] == e.max_num_seqs
    # Neither a deprecated flag nor one given twice (vLLM only logs those, and the last one wins).
    assert not [line for line in answer["log"] if "deprecated" in line or "duplicate" in line], answer["log"]


def test_vllm_reads_the_multimodal_and_cache_settings(parsed):
    """Flags whose values are JSON or byte counts come out as vLLM's types, not strings."""
    tiny = parsed[tuple(PLANS["tiny-cpu"].argv)]["namespace"]
    assert tiny["limit_mm_per_prompt"] == {"image": 2}
    assert tiny["kv_cache_memory_bytes"] == 2**30
    assert tiny["enforce_eager"] is True
    sink = parsed[tuple(PLANS["kitchen-sink"].argv)]["namespace"]
    assert sink["allowed_media_domains"] == ["images.internal.example", "upload.example.org"]
    assert sink["revision"] == "4a1b2c3d"
    # `$HOME` reaches vLLM literally: neither compose nor Kubernetes expanded it.
    assert sink["override_generation_config"] == {"note": "$HOME stays literal"}


@pytest.mark.parametrize(
    "name", [n for n, plan in PLANS.items() if plan.generation or plan.engine_flags.count("--mm-processor-kwargs")]
)
def test_vllm_reads_the_generation_config_dir_and_the_processor_settings(parsed, name):
    """--generation-config names the mounted directory; --mm-processor-kwargs arrives as a dict of typed values."""
    plan = PLANS[name]
    ns = parsed[tuple(plan.argv)]["namespace"]
    assert ns["generation_config"] == (plan.generation.directory if plan.generation else "auto")
    flags = plan.engine_flags
    kwargs = json.loads(flags[flags.index("--mm-processor-kwargs") + 1]) if "--mm-processor-kwargs" in flags else None
    assert ns["mm_processor_kwargs"] == kwargs
    if plan.vision:
        assert {k: plan.vision.mm_processor_kwargs[k] for k in kwargs or {}} == (kwargs or {})


def test_the_check_catches_an_unknown_flag(parsed):
    answer = parsed[tuple(NEGATIVE["unknown-flag"])]
    assert not answer["ok"]
    assert "unrecognized arguments: --no-such-flag" in answer["error"]


def test_the_check_catches_a_bad_value(parsed):
    answer = parsed[tuple(NEGATIVE["bad-dtype"])]
    assert not answer["ok"]
    assert "argument --dtype: invalid choice: 'fp7'" in answer["error"]


def test_the_check_catches_a_key_smuggled_in_by_a_flag_prefix(parsed):
    """argparse resolves `--api-ke` to `--api-key`: the parse succeeds, and the api_key check sees it."""
    answer = parsed[tuple(NEGATIVE["api-key-prefix"])]
    assert answer["ok"], answer["error"]
    assert answer["namespace"]["api_key"] == ["sk-leaked"]
    assert "api_key" in answer["changed"]


def test_the_check_needs_the_model_first(parsed):
    """Like `vllm serve`, a --served-model-name without the positional model is refused."""
    answer = parsed[tuple(NEGATIVE["no-positional-model"])]
    assert not answer["ok"]
    assert "`model` should be provided as the first positional argument" in answer["error"]


def test_parser_script_rejects_input_that_is_not_a_list_of_argvs():
    """The helper itself fails loudly on malformed input (it needs no vLLM to find that out)."""
    result = subprocess.run(
        [sys.executable, str(PARSER_SCRIPT)], input='{"not": "a list"}', capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "a JSON list of argv lists" in result.stderr
    assert not result.stdout
