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

from deploy import facts
from deploy.facts import option_classes, option_table
from deploy.spec import flags
from deploy.spec.flags import extra_args_problems, resolve

CANARY = "sk-canary-7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b"

# ---------------------------------------------------------------------------------------------
# A. engine.extra-args: every option of the pinned parser classified, nothing else


def table_dests() -> set[str]:
    return {spec["dest"] for spec in option_table().values()}


def test_every_option_of_the_table_is_classified_exactly_once():
    known = option_classes()
    classified = [*known.allowed, *known.modelled, *known.refused]
    assert len(classified) == len(set(classified)), "a destination is classified twice"
    missing = sorted(table_dests() - set(classified))
    assert not missing, f"deploy/data/vllm-serve-classes.yaml does not classify {missing}: review and classify them"


def test_the_classification_names_no_option_the_table_lacks():
    stale = sorted({*option_classes().allowed, *option_classes().modelled, *option_classes().refused} - table_dests())
    assert not stale, f"deploy/data/vllm-serve-classes.yaml classifies options vLLM does not have: {stale}"


def test_the_classification_is_for_the_version_of_the_table():
    assert option_classes().vllm_version == facts.option_table_version()


def test_the_classification_counts():
    # NB: a vLLM upgrade or a reclassification changes these on purpose; the report names them.
    known = option_classes()
    assert (len(known.allowed), len(known.modelled), len(known.refused)) == (215, 21, 81)


def test_allowed_values_are_values_vllm_accepts():
    for dest, allowed in option_classes().allowed.items():
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

    for dest, key in option_classes().modelled.items():
        *parents, last = key.split(".")
        cls = section_class(tuple(parents)) if parents else Profile
        assert cls is not None and last in {n.replace("_", "-") for n in cls.model_fields}, (dest, key)


def test_an_option_the_classification_lacks_is_refused(monkeypatch):
    known = option_classes()
    trimmed = facts.Classes(
        known.vllm_version,
        {k: v for k, v in known.allowed.items() if k != "enable_prefix_caching"},
        known.modelled,
        known.refused,
    )
    monkeypatch.setattr(flags, "option_classes", lambda: trimmed)
    assert extra_args_problems(["--enable-prefix-caching"]) == [
        "item 0: '--enable-prefix-caching' is refused: deploy/data/vllm-serve-classes.yaml does not classify it yet "
        "(a flag newer than vLLM 0.32.0); whatever is not known to be safe is refused until it is reviewed there"
    ]


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
    dests = getattr(option_classes(), kind)
    return [
        (option, argv)
        for option, spec in sorted(option_table().items())
        if spec["dest"] in dests
        for argv in spellings(option)
    ]


REFUSED_SPELLINGS = cases("refused")
MODELLED_SPELLINGS = cases("modelled")


@pytest.mark.parametrize("option, argv", REFUSED_SPELLINGS, ids=[" ".join(a) for _, a in REFUSED_SPELLINGS])
def test_a_refused_option_is_refused_under_every_spelling(option, argv):
    assert resolve(argv[0])[0] == option
    refused = option_classes().refused[option_table()[option]["dest"]]
    [problem] = extra_args_problems(argv)
    assert f"is refused: it {refused.reason}; instead: {refused.instead}" in problem


@pytest.mark.parametrize("option, argv", MODELLED_SPELLINGS, ids=[" ".join(a) for _, a in MODELLED_SPELLINGS])
def test_a_modelled_option_is_refused_under_every_spelling(option, argv):
    assert resolve(argv[0])[0] == option
    [problem] = extra_args_problems(argv)
    assert (
        f"duplicates {option_classes().modelled[option_table()[option]['dest']]}: set the profile field instead"
        in problem
    )


def test_every_allowed_option_passes_as_written():
    for option, spec in option_table().items():
        allowed = option_classes().allowed.get(spec["dest"])
        if allowed is None:
            continue
        value = [allowed.values[0]] if allowed.values else (["1"] if spec["takes_value"] else [])
        assert extra_args_problems([option, *value]) == [], option


# (extra-args, the exact problems): the cases issue #17 names, and the spellings that hid them.
PINNED = [
    (
        ["--hf-token", CANARY],
        [
            "item 0: '--hf-token' is refused: it puts a secret on the command line: the token would sit in the rendered "
            "compose `command` and the Deployment's `args`, readable by anyone who can read those files or the pod spec; "
            "instead: put HF_TOKEN in the environment or the .env file: hub storage passes it to the container as a "
            "secret"
        ],
    ),
    (
        [f"--hf-tok={CANARY}"],
        [
            "item 0: '--hf-tok' (read by vLLM as --hf-token) is refused: it puts a secret on the command line: the token "
            "would sit in the rendered compose `command` and the Deployment's `args`, readable by anyone who can read "
            "those files or the pod spec; instead: put HF_TOKEN in the environment or the .env file: hub storage passes "
            "it to the container as a secret"
        ],
    ),
    (
        ["--middleware", "my.module.Middleware"],
        [
            "item 0: '--middleware' is refused: it imports and runs Python code (an ASGI middleware) inside the API "
            "server, in front of the key check; the toolkit sets the server's middleware itself; instead: put a proxy in "
            "front of the server for request handling of your own"
        ],
    ),
    (
        ["--tool_parser_plugin=/tmp/p.py"],
        [
            "item 0: '--tool_parser_plugin' (read by vLLM as --tool-parser-plugin) is refused: it imports a Python file "
            "from a path into the API server; instead: --tool-call-parser with one of vLLM's built-in parsers"
        ],
    ),
    (
        ["--reasoning-parser-p", "/tmp/p.py"],
        [
            "item 0: '--reasoning-parser-p' (read by vLLM as --reasoning-parser-plugin) is refused: it imports a Python "
            "file from a path into the API server; instead: --reasoning-parser with one of vLLM's built-in parsers"
        ],
    ),
    (
        ["--chat-template", "/proc/self/environ"],
        [
            "item 0: '--chat-template' is refused: it reads a file from any path in the container first (e.g. "
            "/proc/self/environ, which holds the API key) and serves it as the template; /tokenize would hand it back; "
            "instead: put the template in the model directory (chat_template.jinja or tokenizer_config.json), or use "
            "--chat-template-content-format"
        ],
    ),
    (
        ["--uvicorn-log-level", "trace"],
        [
            "item 0: '--uvicorn-log-level' takes only critical, error, warning, info or debug in a profile: trace logs "
            "every request's ASGI scope, its Authorization header (the API key) included"
        ],
    ),
    (
        ["--uvicorn_log_level=TRACE"],
        [
            "item 0: '--uvicorn_log_level' (read by vLLM as --uvicorn-log-level) takes only critical, error, warning, "
            "info or debug in a profile: trace logs every request's ASGI scope, its Authorization header (the API key) "
            "included"
        ],
    ),
    (
        ["--uvicorn-log-level.x", "info"],
        [
            "item 0: '--uvicorn-log-level.x' (read by vLLM as --uvicorn-log-level) takes one plain value here: write it "
            "as --uvicorn-log-level VALUE (critical, error, warning, info or debug)"
        ],
    ),
    (
        ["--root-path", "/v"],
        [
            "item 0: '--root-path' is refused: it is stripped from the path before the key check: --root-path /v turns "
            "/v1/chat/completions into 1/chat/completions for the check, which then lets it through unauthenticated; "
            "instead: serve at / and let a path-routing proxy strip its prefix"
        ],
    ),
    (
        ["--code-revision", "main"],
        [
            "item 0: '--code-revision' is refused: it loads the model's remote code from another revision than "
            "model.revision pins, so trust-remote-code runs code nobody pinned (refused with or without "
            "trust-remote-code, so a profile cannot turn unsafe later); instead: pin model.revision to the commit whose "
            "code you reviewed"
        ],
    ),
    (
        ["--distributed-executor-backend", "my.pkg.Executor"],
        [
            "item 0: '--distributed-executor-backend' takes only mp or uni in a profile: any other value is imported as "
            "a class (vllm/v1/executor/abstract.py), and ray joins a Ray cluster outside the container"
        ],
    ),
    (
        ["-cc.backend=my.pkg.compile"],
        [
            "item 0: '-cc.backend' (read by vLLM as -cc) is refused: it can import a compile backend and inductor passes "
            "by name (code) and write dumps and caches to paths; instead: -O0..-O3 (--optimization-level), "
            "--cudagraph-capture-sizes, --max-cudagraph-capture-size or engine.enforce-eager"
        ],
    ),
    (
        [f"--api-key.{CANARY}", "x"],
        [
            "item 0: '--api-key.(not shown)' (read by vLLM as --api-key) duplicates api-key.env: set the profile field "
            "instead"
        ],
    ),
    (
        [f"-r{CANARY}"],
        [
            "item 0: '-r…' (read by vLLM as -r) is refused: it belongs to multi-node serving; instead: replicas: each "
            "replica is one engine in one container"
        ],
    ),
    (
        ["--help"],
        [
            "item 0: '--help' is refused: it prints the help text and exits, so the server never starts; instead: run "
            "`vllm serve --help` yourself"
        ],
    ),
    (
        ["--", "--api-key"],
        [
            "item 0: '--' is ambiguous in vLLM 0.32.0 (could be --additional-config, --aggregate-engine-logging, "
            "--all2all-backend, --allow-credentials, …); write it in full",
            "item 1: '--api-key' duplicates api-key.env: set the profile field instead",
        ],
    ),
]


@pytest.mark.parametrize("argv, expected", PINNED, ids=[" ".join(a)[:40] for a, _ in PINNED])
def test_refusals_say_why_and_what_instead_exactly(argv, expected):
    problems = extra_args_problems(argv)
    assert problems == expected
    assert not any(CANARY in p for p in problems)


ALLOWED = [
    ["--enable-prefix-caching"],
    ["--uvicorn-log-level", "debug"],
    ["--uvicorn-log=warning"],
    ["--max-num-batched-tokens", "8192"],
    ["--allowed-origins", '["https://app.example"]'],
    ["-O3"],
    ["--load-format", "SAFETENSORS"],
    ["--distributed-executor-backend=mp"],
    ["-asc", "2"],
    ["-as", "2"],
    ["-qfp8"],
    ["--prefix-caching-hash-algo", "sha256_cbor"],
    ["--log-level", "DEBUG"],
    ["--seed", "-1"],
    ["--chat-template-content-format", "openai"],
    ["--override-generation-config", '{"temperature": 0.2}'],
]


@pytest.mark.parametrize("argv", ALLOWED, ids=[" ".join(a) for a in ALLOWED])
def test_known_safe_flags_pass(argv):
    assert extra_args_problems(argv) == []


def test_the_option_table_lists_choices_where_argparse_has_them():
    table = json.loads(Path(facts.OPTIONS_FILE).read_text(encoding="utf-8"))["options"]
    assert table["--uvicorn-log-level"]["choices"] == ["critical", "debug", "error", "info", "trace", "warning"]
    assert "choices" not in table["--load-format"]


# ---------------------------------------------------------------------------------------------
# B. names and paths by the component's rule


def problems_of(text: str) -> list[str]:
    """Each problem of a profile as `dotted.path: message` ([] when it is valid), after checking that its line
    is the line of that key in the text (the `file:line` the CLI prints)."""
    from deploy.errors import UserError
    from deploy.spec.load import parse_profile

    try:
        parse_profile(text, "p.yaml")
    except UserError as exc:
        lines = text.splitlines()
        for problem in exc.problems:
            last = problem.path.split(".")[-1]
            here = lines[problem.line - 1].strip()
            assert here.startswith("-") if last.isdigit() else last.split("/")[-1][:20] in here or "(" in last, (
                problem,
                here,
            )
        return [f"{p.path}: {p.message}" for p in exc.problems]
    return []


def hostile(**changes: object) -> str:
    from tests.unit.test_hostile import profile

    return profile(**changes)


# --- B1. model.source: no system directory of the host, after lexical normalisation

SYSTEM_SOURCES = [
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/etc",
    "/boot",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/run/docker.sock",
    "/proc/1/root",
    "/etc/kubernetes/pki",
    "/usr/local/models",
    "/var/lib/kubelet/pods",
    "/dev/shm",
    "/run/containerd",
    "/sys/fs/cgroup",
    "/boot/efi",
    "/lib/modules",
    "/var",
    "/var/lib",  # they hold /var/run and /var/lib/docker
    "/var/run/",
    "/etc/",
    "/models/../proc",
    "/models/./../var/run",
    "/srv/models/../../etc/ssl",
    "/./proc",
    "/models/../../../../dev",
]


@pytest.mark.parametrize("source", SYSTEM_SOURCES)
def test_a_system_directory_is_no_model_source(source):
    [problem] = problems_of(hostile(**{"model.source": source}))
    assert problem.startswith("model.source: ") and "a system directory (" in problem, problem
    assert "put the model in a directory of its own" in problem


def test_the_root_and_doubled_slashes_are_no_model_source():
    # NB: the path pattern refuses them before the system-directory rule sees them.
    for source in ("/", "//proc", "/models//demo"):
        [problem] = problems_of(hostile(**{"model.source": source}))
        assert problem.startswith("model.source: storage 'host' needs an absolute path"), problem


@pytest.mark.parametrize(
    "source",
    [
        "/models/demo",
        "/root/ld/ld_model_pretrained/Minicpmv2_6",
        "/srv/models/x",
        "/data/lib/models",
        "/variable/x",
        "/runs/x",
        "/etcetera",
        "/user/models",
        "/mnt/var/run/x",
        "/models/demo/",
    ],
)
def test_an_ordinary_directory_is_a_model_source(source):
    assert problems_of(hostile(**{"model.source": source})) == []


PINNED_SOURCES = [
    (
        "/var/run",
        "model.source: '/var/run' is a system directory (the host's runtime sockets, Docker's and "
        "containerd's among them): host storage mounts it into the container; put the model in a directory of "
        "its own, e.g. /models/<name> or /srv/models/<name>",
    ),
    (
        "/models/../proc/1/root",
        "model.source: '/models/../proc/1/root' (that is /proc/1/root) is under "
        "/proc, a system directory (the host's kernel interfaces): host storage mounts it into "
        "the container; put the model in a directory of its own, e.g. /models/<name> or "
        "/srv/models/<name>",
    ),
    (
        "/var",
        "model.source: '/var' holds /var/run, a system directory (the host's runtime sockets, Docker's "
        "and containerd's among them): host storage mounts all of it into the container; put the model in a "
        "directory of its own, e.g. /models/<name> or /srv/models/<name>",
    ),
    (
        "/models/x/../demo",
        "model.source: write the path without '.' or '..' parts (Kubernetes refuses '..' "
        "in a hostPath), e.g. /models/demo",
    ),
]


@pytest.mark.parametrize("source, line", PINNED_SOURCES, ids=[s for s, _ in PINNED_SOURCES])
def test_system_directory_messages(source, line):
    assert problems_of(hostile(**{"model.source": source})) == [line]


# --- B2. image.registry: a registry host by Docker's rule, never a Docker Hub account


@pytest.mark.parametrize("registry", ["team", "team/ml", "ml-team/x/y", "library", "docker/x"])
def test_a_docker_hub_account_is_no_registry(registry):
    [problem] = problems_of(hostile(**{"image.registry": registry}))
    assert problem.startswith("image.registry: expected a registry host first"), problem


@pytest.mark.parametrize(
    "registry",
    [
        "registry.example.com",
        "registry.example.com/ml",
        "localhost",
        "localhost/x",
        "localhost:5000/ml",
        "127.0.0.1:5000/team",
        "ghcr.io/org/team",
        "registry.example.com:443/ml",
    ],
)
def test_a_registry_host_is_a_registry(registry):
    assert problems_of(hostile(**{"image.registry": registry})) == []


def test_registry_message():
    assert problems_of(hostile(**{"image.registry": "team"})) == [
        "image.registry: expected a registry host first (a name with a '.', a host:port, or localhost), "
        "e.g. registry.example.com/ml, localhost:5000/ml or 127.0.0.1:5000/team: Docker reads 'team' as an account "
        "on Docker Hub, so the images would be pushed to and pulled from docker.io, where anyone can register that "
        "name"
    ]


# --- B3. api-key.env: no variable the container's software reads


def vllm_variables() -> list[str]:
    from deploy.facts import vllm_variables

    return sorted(vllm_variables())


@pytest.mark.parametrize("name", [n for n in vllm_variables() if n != "VLLM_API_KEY"])
def test_no_variable_vllm_reads_carries_the_key(name):
    from deploy.spec.names import key_variable_problem

    assert key_variable_problem(name), name


FAMILIES = [
    "HF_TOKEN",
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "HUGGING_FACE_HUB_TOKEN",
    "TRANSFORMERS_CACHE",
    "TOKENIZERS_PARALLELISM",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_INDEX_URL",
    "PIP_CERT",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_CACHE_PATH",
    "NVIDIA_VISIBLE_DEVICES",
    "NCCL_DEBUG",
    "TORCH_HOME",
    "TORCHINDUCTOR_CACHE_DIR",
    "OMP_NUM_THREADS",
    "KMP_AFFINITY",
    "MKL_NUM_THREADS",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "PATH",
    "HOME",
    "USER",
    "SHELL",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "TZ",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "TRITON_CACHE_DIR",
    "FLASHINFER_WORKSPACE_BASE",
    "DO_NOT_TRACK",
    "VLLM_ROUTER_API_KEY",
    "VLLM_HOST_IP",
    "VLLM_SOMETHING_FUTURE",
    "KUBERNETES_SERVICE_HOST",
    "COMPOSE_PROJECT_NAME",
    "DOCKER_HOST",
    "BUILDKIT_PROGRESS",
    "S3_SECRET_ACCESS_KEY",
    "LOCAL_RANK",
]


@pytest.mark.parametrize("name", FAMILIES)
def test_no_variable_of_these_families_carries_the_key(name):
    [problem] = problems_of(hostile(**{"api-key.env": name}))
    assert problem.startswith(f"api-key.env: {name} is a variable the container or vLLM reads for something else ("), (
        problem
    )


@pytest.mark.parametrize(
    "name", ["VLLM_API_KEY", "MINICPM_KEY", "MY_MODEL_KEY", "OPENAI_API_KEY", "SERVE_KEY", "HFX_KEY", "PATHS_KEY"]
)
def test_a_variable_of_ones_own_carries_the_key(name):
    assert problems_of(hostile(**{"api-key.env": name})) == []


def test_every_variable_the_rendered_files_set_is_refused_as_the_key(tmp_path):
    """What the plan puts in any container's environment (engines, router, Prometheus), read back from the
    rendered compose files and Kubernetes manifests of every shipped profile: none may carry the key."""
    import yaml

    from deploy.plan import resolve as plan
    from deploy.render import render
    from deploy.spec import builtin_names, load_profile
    from deploy.spec.names import key_variable_problem
    from tests.conftest import FIXTURE_PROFILES

    names: set[str] = set()
    for ref in [*builtin_names(), *map(str, FIXTURE_PROFILES.glob("*.yaml"))]:
        for path, text in render(plan(load_profile(ref))).items():
            if not path.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(text):
                for service in ((doc or {}).get("services") or {}).values():
                    env = service.get("environment") or {}
                    names |= set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
                spec = (((doc or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
                for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
                    names |= {e["name"] for e in container.get("env", [])}
    assert {"VLLM_NO_USAGE_STATS", "HF_HUB_OFFLINE", "VLLM_ROUTER_API_KEY", "HOME"} <= names  # the walk found them
    assert sorted(n for n in names - {"VLLM_API_KEY"} if not key_variable_problem(n)) == []


def test_key_variable_messages():
    assert problems_of(hostile(**{"api-key.env": "HTTPS_PROXY"})) == [
        "api-key.env: HTTPS_PROXY is a variable the container or vLLM reads for something else (HTTP "
        "clients take it as their proxy); name one of your own, e.g. VLLM_API_KEY or MY_MODEL_KEY"
    ]
    assert problems_of(hostile(**{"api-key.env": "CUDA_VISIBLE_DEVICES"})) == [
        "api-key.env: CUDA_VISIBLE_DEVICES is a variable the container or vLLM reads for something else "
        "(vLLM, by its own table: deploy/data/vllm-envs.json); name one of your own, e.g. VLLM_API_KEY or MY_MODEL_KEY"
    ]
    # A reserved family with a pasted key after it: the name is not repeated.
    [problem] = problems_of(hostile(**{"api-key.env": "HF_" + CANARY.upper().replace("-", "_")}))
    assert problem.startswith("api-key.env: this name is a variable") and CANARY.upper() not in problem


# --- B4. Kubernetes fields as the API server validates them

TOLERATIONS_REFUSED = [
    (
        [{}],
        "kubernetes.tolerations.0: operator Equal (the default) needs a key: name the taint's key, e.g. "
        "{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}, or write operator: Exists alone to tolerate "
        "every taint",
    ),
    (
        [{"operator": "Equal", "value": "x"}],
        "kubernetes.tolerations.0: operator Equal (the default) needs a "
        "key: name the taint's key, e.g. {key: nvidia.com/gpu, operator: Exists, "
        "effect: NoSchedule}, or write operator: Exists alone to tolerate every "
        "taint",
    ),
    (
        [{"key": "a", "operator": "Exists", "value": "x"}],
        "kubernetes.tolerations.0: value must be empty with operator Exists (it matches every value of the "
        "key); use operator Equal to match one value",
    ),
    (
        [{"key": "a", "tolerationSeconds": 60}],
        "kubernetes.tolerations.0: tolerationSeconds needs effect NoExecute (it bounds how long the pod stays "
        "on a node tainted NoExecute)",
    ),
    (
        [{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 60}],
        "kubernetes.tolerations.0: tolerationSeconds needs effect NoExecute (it bounds how long the pod stays "
        "on a node tainted NoExecute)",
    ),
    (
        [{"key": "a", "operator": "Gt", "value": "1"}],
        "kubernetes.tolerations.0.operator: expected one of 'Exists' or 'Equal', got 'Gt' (str)",
    ),
    (
        [{"key": "a", "effect": "NoSchedul"}],
        "kubernetes.tolerations.0.effect: expected one of 'NoSchedule', 'PreferNoSchedule' or 'NoExecute', "
        "got 'NoSchedul' (str)",
    ),
    (
        [{"key": "a b", "operator": "Exists"}],
        "kubernetes.tolerations.0.key: expected a Kubernetes label key like app.kubernetes.io/name or gpu-type, "
        "got 'a b' (str)",
    ),
    ([{"key": "a", "value": "v" * 64}], "kubernetes.tolerations.0.value: expected at most 63 characters, got 64"),
]


@pytest.mark.parametrize("tolerations, line", TOLERATIONS_REFUSED, ids=[str(t)[:40] for t, _ in TOLERATIONS_REFUSED])
def test_tolerations_are_validated_as_the_api_server_would(tolerations, line):
    assert problems_of(hostile(**{"kubernetes.tolerations": tolerations})) == [line]


@pytest.mark.parametrize(
    "tolerations",
    [
        [{"operator": "Exists"}],
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        [{"key": "a"}],
        [{"key": "a", "value": ""}],
        [{"key": "a", "operator": "Equal", "value": "b", "effect": "NoExecute", "tolerationSeconds": 300}],
        [{"key": "example.com/" + "k" * 63, "operator": "Exists", "effect": "PreferNoSchedule"}],
    ],
)
def test_valid_tolerations_pass(tolerations):
    assert problems_of(hostile(**{"kubernetes.tolerations": tolerations})) == []


LONG_PREFIX = ".".join(["a" * 63] * 4)  # 255 characters: a DNS-1123 subdomain is at most 253
VALID_PREFIX = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253


@pytest.mark.parametrize(
    "changes, line",
    [
        (
            {"kubernetes.node-selector": {f"{LONG_PREFIX}/gpu": "x"}},
            "kubernetes.node-selector.(a key that may be a secret): expected a Kubernetes label key whose prefix "
            "(before '/') is at most 253 characters, got 255",
        ),
        (
            {"kubernetes.node-selector": {"a/" + "n" * 64: "x"}},
            "kubernetes.node-selector.(a key that may be a secret): expected a Kubernetes label key like "
            "app.kubernetes.io/name or gpu-type, got a string of 66 characters (not shown: it may be a secret)",
        ),
        (
            {"kubernetes.node-selector": {"-gpu": "x"}},
            "kubernetes.node-selector.-gpu: expected a Kubernetes label key like app.kubernetes.io/name or "
            "gpu-type, got '-gpu' (str)",
        ),
        (
            {"kubernetes.node-selector": {"gpu": "x-"}},
            "kubernetes.node-selector.gpu: expected a Kubernetes label value: up to 63 letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit, got 'x-' (str)",
        ),
        (
            {"kubernetes.node-affinity": {"Example.com/gpu": ["a"]}},
            "kubernetes.node-affinity.Example.com/gpu: expected a Kubernetes label key like "
            "app.kubernetes.io/name or gpu-type, got 'Example.com/gpu' (str)",
        ),
        (
            {"kubernetes.network-policy-from": {"app/name/x": "gateway"}},
            "kubernetes.network-policy-from.app/name/x: expected a Kubernetes label key like "
            "app.kubernetes.io/name or gpu-type, got 'app/name/x' (str)",
        ),
        (
            {"kubernetes.namespace": "kube-system"},
            "kubernetes.namespace: the kube- prefix is reserved for Kubernetes' own namespaces (kube-system, "
            "kube-public, kube-node-lease): deploy into a namespace of its own, e.g. vllm",
        ),
        ({"kubernetes.namespace": "a" * 64}, "kubernetes.namespace: expected at most 63 characters, got 64"),
        (
            {"kubernetes.namespace": "ml.team"},
            "kubernetes.namespace: expected lowercase letters, digits and '-', starting and ending with a letter "
            "or digit, got 'ml.team' (str)",
        ),
        (
            {"kubernetes.storage-class": "Fast"},
            "kubernetes.storage-class: expected a Kubernetes name: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, e.g. fast-ssd or nvidia, got 'Fast' (str)",
        ),
        (
            {"kubernetes.runtime-class-name": "nvidia."},
            "kubernetes.runtime-class-name: expected a Kubernetes name: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, e.g. fast-ssd or nvidia, got 'nvidia.' (str)",
        ),
    ],
    ids=[
        "key-prefix-255",
        "key-name-64",
        "key-dash",
        "value-dash",
        "affinity-uppercase-prefix",
        "two-slashes",
        "kube-namespace",
        "namespace-64",
        "namespace-dot",
        "storage-class-upper",
        "runtime-class-dot",
    ],
)
def test_kubernetes_names_are_validated_as_the_api_server_would(changes, line):
    assert problems_of(hostile(**changes)) == [line]


@pytest.mark.parametrize(
    "changes",
    [
        {"kubernetes.node-selector": {f"{VALID_PREFIX}/gpu": "x"}},  # 257 characters, valid in Kubernetes
        {"kubernetes.node-selector": {"kubernetes.io/hostname": "node-1", "gpu": ""}},
        {"kubernetes.storage-class": "fast.ssd.example.com"},
        {"kubernetes.runtime-class-name": "nvidia.com"},
        {"kubernetes.namespace": "kubeflow"},
    ],
)
def test_valid_kubernetes_names_pass(changes):
    assert problems_of(hostile(**changes)) == []
