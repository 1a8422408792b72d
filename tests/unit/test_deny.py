"""Deny by default, derived from the component (#17, items 3 and 4).

engine.extra-args is checked against vLLM's own option table and a reviewed classification of every
option in it; names and paths bound for Docker, Kubernetes and the container environment are checked
by the component's own rule (Docker's reference grammar, apimachinery's validation, vLLM's envs table),
not by a list of examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.spec import flags
from deploy.spec.flags import classes, extra_args_problems, option_table, resolve

CANARY = "sk-canary-7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b"

# ---------------------------------------------------------------------------------------------
# A. engine.extra-args: every option of the pinned parser classified, nothing else


def table_dests() -> set[str]:
    return {spec["dest"] for spec in option_table().values()}


def test_every_option_of_the_table_is_classified_exactly_once():
    known = classes()
    classified = [*known.allowed, *known.modelled, *known.refused]
    assert len(classified) == len(set(classified)), "a destination is classified twice"
    missing = sorted(table_dests() - set(classified))
    assert not missing, f"deploy/data/vllm-serve-classes.yaml does not classify {missing}: review and classify them"


def test_the_classification_names_no_option_the_table_lacks():
    stale = sorted({*classes().allowed, *classes().modelled, *classes().refused} - table_dests())
    assert not stale, f"deploy/data/vllm-serve-classes.yaml classifies options vLLM does not have: {stale}"


def test_the_classification_is_for_the_version_of_the_table():
    assert classes().vllm_version == flags.table_version()


def test_the_classification_counts():
    # NB: a vLLM upgrade or a reclassification changes these on purpose; the report names them.
    known = classes()
    assert (len(known.allowed), len(known.modelled), len(known.refused)) == (215, 21, 81)


def test_allowed_values_are_values_vllm_accepts():
    for dest, allowed in classes().allowed.items():
        if allowed.values is None:
            continue
        assert allowed.why, dest
        specs = [spec for spec in option_table().values() if spec["dest"] == dest]
        assert all(spec["takes_value"] for spec in specs), f"{dest} takes no value to restrict"
        for spec in specs:
            if "choices" in spec:
                assert set(allowed.values) <= {c.lower() for c in spec["choices"]}, dest


def test_modelled_options_name_real_profile_keys():
    from deploy.spec import Profile
    from deploy.spec.schema import section_class

    for dest, key in classes().modelled.items():
        *parents, last = key.split(".")
        cls = section_class(tuple(parents)) if parents else Profile
        assert cls is not None and last in {n.replace("_", "-") for n in cls.model_fields}, (dest, key)


def test_an_option_the_classification_lacks_is_refused(monkeypatch):
    known = classes()
    trimmed = flags.Classes(known.vllm_version, {k: v for k, v in known.allowed.items()
                                                 if k != "enable_prefix_caching"}, known.modelled, known.refused)
    monkeypatch.setattr(flags, "classes", lambda: trimmed)
    assert extra_args_problems(["--enable-prefix-caching"]) == [
        "item 0: '--enable-prefix-caching' is refused: deploy/data/vllm-serve-classes.yaml does not classify it yet "
        "(a flag newer than vLLM 0.32.0); whatever is not known to be safe is refused until it is reviewed there"]


def shortest_prefix(option: str) -> str | None:
    """The shortest prefix argparse reads as this option alone (None when only the full name is unique)."""
    table = option_table()
    long = option.startswith("--")
    for end in range(3 if long else 2, len(option)):
        prefix = option[:end]
        matches = [o for o in table if o.startswith(prefix) and o.startswith("--") == long]
        if matches == [option]:
            return prefix
    return None


def spellings(option: str) -> list[list[str]]:
    """Every way vLLM's parser reads `option`: as written, `=value`, underscores, a unique prefix, `.field`,
    and a one-letter option with its value glued on."""
    found = [[option, "x"], [f"{option}=x"], [f"{option}.field", "x"], [f"{option}.field=x"]]
    if option.startswith("--") and "-" in option[2:]:
        under = "--" + option[2:].replace("-", "_")
        found += [[under, "x"], [f"{under}=x"]]
    prefix = shortest_prefix(option)
    if prefix:
        found += [[prefix, "x"], [f"{prefix}=x"]]
    if not option.startswith("--") and len(option) == 2:
        found.append([f"{option}x"])
    return found


def cases(kind: str) -> list[tuple[str, list[str]]]:
    dests = getattr(classes(), kind)
    return [(option, argv) for option, spec in sorted(option_table().items()) if spec["dest"] in dests
            for argv in spellings(option)]


REFUSED_SPELLINGS = cases("refused")
MODELLED_SPELLINGS = cases("modelled")


@pytest.mark.parametrize("option, argv", REFUSED_SPELLINGS, ids=[" ".join(a) for _, a in REFUSED_SPELLINGS])
def test_a_refused_option_is_refused_under_every_spelling(option, argv):
    assert resolve(argv[0])[0] == option
    refused = classes().refused[option_table()[option]["dest"]]
    [problem] = extra_args_problems(argv)
    assert f"is refused: it {refused.reason}; instead: {refused.instead}" in problem


@pytest.mark.parametrize("option, argv", MODELLED_SPELLINGS, ids=[" ".join(a) for _, a in MODELLED_SPELLINGS])
def test_a_modelled_option_is_refused_under_every_spelling(option, argv):
    assert resolve(argv[0])[0] == option
    [problem] = extra_args_problems(argv)
    assert f"duplicates {classes().modelled[option_table()[option]['dest']]}: set the profile field instead" in problem


def test_every_allowed_option_passes_as_written():
    for option, spec in option_table().items():
        allowed = classes().allowed.get(spec["dest"])
        if allowed is None:
            continue
        value = [allowed.values[0]] if allowed.values else (["1"] if spec["takes_value"] else [])
        assert extra_args_problems([option, *value]) == [], option


# (extra-args, the exact problems): the cases issue #17 names, and the spellings that hid them.
PINNED = [
    (["--hf-token", CANARY],
     ["item 0: '--hf-token' is refused: it puts a secret on the command line: the token would sit in the rendered "
      "compose `command` and the Deployment's `args`, readable by anyone who can read those files or the pod spec; "
      "instead: put HF_TOKEN in the environment or the .env file: hub storage passes it to the container as a "
      "secret"]),
    ([f"--hf-tok={CANARY}"],
     ["item 0: '--hf-tok' (read by vLLM as --hf-token) is refused: it puts a secret on the command line: the token "
      "would sit in the rendered compose `command` and the Deployment's `args`, readable by anyone who can read "
      "those files or the pod spec; instead: put HF_TOKEN in the environment or the .env file: hub storage passes "
      "it to the container as a secret"]),
    (["--middleware", "my.module.Middleware"],
     ["item 0: '--middleware' is refused: it imports and runs Python code (an ASGI middleware) inside the API "
      "server, in front of the key check; the toolkit sets the server's middleware itself; instead: put a proxy in "
      "front of the server for request handling of your own"]),
    (["--tool_parser_plugin=/tmp/p.py"],
     ["item 0: '--tool_parser_plugin' (read by vLLM as --tool-parser-plugin) is refused: it imports a Python file "
      "from a path into the API server; instead: --tool-call-parser with one of vLLM's built-in parsers"]),
    (["--reasoning-parser-p", "/tmp/p.py"],
     ["item 0: '--reasoning-parser-p' (read by vLLM as --reasoning-parser-plugin) is refused: it imports a Python "
      "file from a path into the API server; instead: --reasoning-parser with one of vLLM's built-in parsers"]),
    (["--chat-template", "/proc/self/environ"],
     ["item 0: '--chat-template' is refused: it reads a file from any path in the container first (e.g. "
      "/proc/self/environ, which holds the API key) and serves it as the template; /tokenize would hand it back; "
      "instead: put the template in the model directory (chat_template.jinja or tokenizer_config.json), or use "
      "--chat-template-content-format"]),
    (["--uvicorn-log-level", "trace"],
     ["item 0: '--uvicorn-log-level' takes only critical, error, warning, info or debug in a profile: trace logs "
      "every request's ASGI scope, its Authorization header (the API key) included"]),
    (["--uvicorn_log_level=TRACE"],
     ["item 0: '--uvicorn_log_level' (read by vLLM as --uvicorn-log-level) takes only critical, error, warning, "
      "info or debug in a profile: trace logs every request's ASGI scope, its Authorization header (the API key) "
      "included"]),
    (["--uvicorn-log-level.x", "info"],
     ["item 0: '--uvicorn-log-level.x' (read by vLLM as --uvicorn-log-level) takes one plain value here: write it "
      "as --uvicorn-log-level VALUE (critical, error, warning, info or debug)"]),
    (["--root-path", "/v"],
     ["item 0: '--root-path' is refused: it is stripped from the path before the key check: --root-path /v turns "
      "/v1/chat/completions into 1/chat/completions for the check, which then lets it through unauthenticated; "
      "instead: serve at / and let a path-routing proxy strip its prefix"]),
    (["--code-revision", "main"],
     ["item 0: '--code-revision' is refused: it loads the model's remote code from another revision than "
      "model.revision pins, so trust-remote-code runs code nobody pinned (refused with or without "
      "trust-remote-code, so a profile cannot turn unsafe later); instead: pin model.revision to the commit whose "
      "code you reviewed"]),
    (["--distributed-executor-backend", "my.pkg.Executor"],
     ["item 0: '--distributed-executor-backend' takes only mp or uni in a profile: any other value is imported as "
      "a class (vllm/v1/executor/abstract.py), and ray joins a Ray cluster outside the container"]),
    (["-cc.backend=my.pkg.compile"],
     ["item 0: '-cc.backend' (read by vLLM as -cc) is refused: it can import a compile backend and inductor passes "
      "by name (code) and write dumps and caches to paths; instead: -O0..-O3 (--optimization-level), "
      "--cudagraph-capture-sizes, --max-cudagraph-capture-size or engine.enforce-eager"]),
    ([f"--api-key.{CANARY}", "x"],
     ["item 0: '--api-key.(not shown)' (read by vLLM as --api-key) duplicates api-key.env: set the profile field "
      "instead"]),
    ([f"-r{CANARY}"],
     ["item 0: '-r…' (read by vLLM as -r) is refused: it belongs to multi-node serving; instead: replicas: each "
      "replica is one engine in one container"]),
    (["--help"],
     ["item 0: '--help' is refused: it prints the help text and exits, so the server never starts; instead: run "
      "`vllm serve --help` yourself"]),
    (["--", "--api-key"],
     ["item 0: '--' is ambiguous in vLLM 0.32.0 (could be --additional-config, --aggregate-engine-logging, "
      "--all2all-backend, --allow-credentials, …); write it in full",
      "item 1: '--api-key' duplicates api-key.env: set the profile field instead"]),
]


@pytest.mark.parametrize("argv, expected", PINNED, ids=[" ".join(a)[:40] for a, _ in PINNED])
def test_refusals_say_why_and_what_instead_exactly(argv, expected):
    problems = extra_args_problems(argv)
    assert problems == expected
    assert not any(CANARY in p for p in problems)


ALLOWED = [
    ["--enable-prefix-caching"], ["--uvicorn-log-level", "debug"], ["--uvicorn-log=warning"],
    ["--max-num-batched-tokens", "8192"], ["--allowed-origins", '["https://app.example"]'], ["-O3"],
    ["--load-format", "SAFETENSORS"], ["--distributed-executor-backend=mp"], ["-asc", "2"], ["-as", "2"],
    ["-qfp8"], ["--prefix-caching-hash-algo", "sha256_cbor"], ["--log-level", "DEBUG"], ["--seed", "-1"],
    ["--chat-template-content-format", "openai"], ["--override-generation-config", '{"temperature": 0.2}'],
]


@pytest.mark.parametrize("argv", ALLOWED, ids=[" ".join(a) for a in ALLOWED])
def test_known_safe_flags_pass(argv):
    assert extra_args_problems(argv) == []


def test_the_option_table_lists_choices_where_argparse_has_them():
    table = json.loads(Path(flags.OPTIONS_FILE).read_text(encoding="utf-8"))["options"]
    assert table["--uvicorn-log-level"]["choices"] == ["critical", "debug", "error", "info", "trace", "warning"]
    assert "choices" not in table["--load-format"]
