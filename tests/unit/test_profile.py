"""Profile validation: every way a user gets a profile wrong gives exit 2 and precise messages."""

from __future__ import annotations

import textwrap

import pytest

from deploy.spec import Profile, builtin_names, load_profile
from tests.conftest import REPO

VALID = """\
name: demo
model:
  source: /models/demo
engine:
  dtype: auto
  max-model-len: 2048
  gpu-memory-utilization: 0.9
  trust-remote-code: false
api-key:
  env: VLLM_API_KEY
kubernetes: {node-selector: {vllm-deploy/model: demo}}
"""


def edit(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new)


def add(section_line: str, extra: str) -> str:
    """Insert lines after a line of VALID."""
    return edit(section_line, section_line + extra)


# A CPU image is built here: the profile says it is loaded onto the nodes by hand.
LOCAL = ("{vllm-deploy/model: demo}}", "{vllm-deploy/model: demo}, local-images: true}")
CPU = add("  trust-remote-code: false\n", "  kv-cache-space-gib: 1\n").replace(*LOCAL) + "image:\n  device: cpu\n"

# (id, profile text, expected problem lines after the "p.yaml is invalid (N problems):" header)
MALFORMED = [
    (
        "operator-label-key",
        VALID + "monitoring:\n  enabled: true\n  operator-labels: {'bad key!': kps}\n",
        [
            "p.yaml:14: monitoring.operator-labels.bad key!: expected a Kubernetes label key like "
            "app.kubernetes.io/name or gpu-type, got 'bad key!' (str)"
        ],
    ),
    (
        "operator-label-value",
        VALID + "monitoring:\n  enabled: true\n  operator-labels: {release: -kps}\n",
        [
            "p.yaml:14: monitoring.operator-labels.release: expected a Kubernetes label value: up to 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit, got '-kps' (str)"
        ],
    ),
    (
        "operator-label-ours",
        VALID + "monitoring:\n  enabled: true\n  operator-labels: {release: kps, app.kubernetes.io/name: x}\n",
        [
            "p.yaml:14: monitoring.operator-labels: app.kubernetes.io/name: the app.kubernetes.io/* labels are "
            "vllm-deploy's own (the Services and the ServiceMonitors select the pods by them) and cannot be "
            "overridden; use another key, e.g. release"
        ],
    ),
    (
        "dtype-unknown",
        edit("dtype: auto", "dtype: fp8"),
        [
            "p.yaml:5: engine.dtype: expected one of 'auto', 'half', 'float16', 'bfloat16', 'float' or 'float32', got 'fp8' (str)"
        ],
    ),
    (
        "dtype-missing",
        edit("  dtype: auto\n", ""),
        [
            "p.yaml:4: engine.dtype: required key is missing; expected one of 'auto', 'half', 'float16', 'bfloat16', 'float', 'float32'"
        ],
    ),
    (
        "max-model-len-zero",
        edit("max-model-len: 2048", "max-model-len: 0"),
        ["p.yaml:6: engine.max-model-len: expected a number greater than 0, got 0 (int)"],
    ),
    (
        "max-model-len-text",
        edit("max-model-len: 2048", "max-model-len: 2k"),
        ["p.yaml:6: engine.max-model-len: expected an integer, got '2k' (str)"],
    ),
    (
        "max-model-len-float",
        edit("max-model-len: 2048", "max-model-len: 2048.5"),
        ["p.yaml:6: engine.max-model-len: expected an integer, got 2048.5 (float)"],
    ),
    (
        "gmu-above-one",
        edit("gpu-memory-utilization: 0.9", "gpu-memory-utilization: 1.5"),
        ["p.yaml:7: engine.gpu-memory-utilization: expected a number of at most 1.0, got 1.5 (float)"],
    ),
    (
        "gmu-zero",
        edit("gpu-memory-utilization: 0.9", "gpu-memory-utilization: 0"),
        ["p.yaml:7: engine.gpu-memory-utilization: expected a number greater than 0.0, got 0 (int)"],
    ),
    (
        "gmu-percent-string",
        edit("gpu-memory-utilization: 0.9", "gpu-memory-utilization: 90%"),
        ["p.yaml:7: engine.gpu-memory-utilization: expected a number, got '90%' (str)"],
    ),
    (
        "trust-remote-code-text",
        edit("trust-remote-code: false", "trust-remote-code: maybe"),
        ["p.yaml:8: engine.trust-remote-code: expected true or false, got 'maybe' (str)"],
    ),
    (
        "misspelt-engine-key",
        edit("max-model-len: 2048", "max-model-length: 2048"),
        [
            "p.yaml:4: engine.max-model-len: required key is missing; expected an integer",
            "p.yaml:6: engine.max-model-length: unknown key (did you mean 'max-model-len'?); expected one of: dtype, "
            "enforce-eager, extra-args, gpu-memory-utilization, kv-cache-space-gib, limit-mm-per-prompt, max-model-len, "
            "max-num-seqs, mm-processor-kwargs, shutdown-timeout-seconds, tensor-parallel-size, trust-remote-code",
        ],
    ),
    (
        "misspelt-top-key",
        VALID + "resorces:\n  gpus: 1\n",
        [
            "p.yaml:12: resorces: unknown key (did you mean 'resources'?); expected one of: api-key, description, engine, "
            "generation, image, kubernetes, media, model, monitoring, name, replicas, resources, router, server, smoke, twin-of"
        ],
    ),
    (
        "unknown-key-no-suggestion",
        VALID + "zzz: 1\n",
        [
            "p.yaml:12: zzz: unknown key; expected one of: api-key, description, engine, generation, image, kubernetes, "
            "media, model, monitoring, name, replicas, resources, router, server, smoke, twin-of"
        ],
    ),
    (
        "snake-case-key",
        edit("max-model-len: 2048", "max_model_len: 2048"),
        [
            "p.yaml:4: engine.max-model-len: required key is missing; expected an integer",
            "p.yaml:6: engine.max_model_len: unknown key (did you mean 'max-model-len'?); expected one of: dtype, "
            "enforce-eager, extra-args, gpu-memory-utilization, kv-cache-space-gib, limit-mm-per-prompt, max-model-len, "
            "max-num-seqs, mm-processor-kwargs, shutdown-timeout-seconds, tensor-parallel-size, trust-remote-code",
        ],
    ),
    (
        "inline-api-key",
        edit("api-key:\n  env: VLLM_API_KEY\n", "api-key: token-abc123\n"),
        [
            "p.yaml:9: api-key: expected a reference like {env: VLLM_API_KEY}, not the key itself; put the value in the "
            "environment or a git-ignored .env file"
        ],
    ),
    (
        "api-key-env-lowercase",
        edit("env: VLLM_API_KEY", "env: vllm-key"),
        [
            "p.yaml:10: api-key.env: expected an environment variable name: capital letters, digits and '_', e.g. "
            "VLLM_API_KEY, got a string of 8 characters (not shown: it may be a secret)"
        ],
    ),
    (
        "api-key-missing",
        edit("api-key:\n  env: VLLM_API_KEY\n", ""),
        ["p.yaml:1: api-key: required key is missing; expected a mapping"],
    ),
    (
        "name-uppercase",
        edit("name: demo", "name: Demo"),
        [
            "p.yaml:1: name: expected lowercase letters, digits, '-' and '_', starting and ending with a letter or digit, "
            "got 'Demo' (str)"
        ],
    ),
    (
        "model-not-mapping",
        edit("model:\n  source: /models/demo\n", "model: /models/demo\n"),
        ["p.yaml:2: model: expected a mapping, got '/models/demo' (str)"],
    ),
    (
        "relative-model-path",
        edit("source: /models/demo", "source: models/demo\n  storage: host"),
        [
            "p.yaml:3: model.source: storage 'host' needs an absolute path of plain characters (letters, digits, '.', "
            "'_', '+', '-'), got 'models/demo' (str)"
        ],
    ),
    (
        "hub-id-malformed",
        edit("source: /models/demo", "source: not a hub id"),
        [
            "p.yaml:3: model.source: expected a Hugging Face id like Qwen/Qwen2.5-VL-7B-Instruct, got 'not a hub id' (str)"
        ],
    ),
    (
        "revision-on-local-path",
        edit("source: /models/demo", "source: /models/demo\n  revision: main"),
        ["p.yaml:4: model.revision: a revision pins hub downloads; it needs storage 'hub'"],
    ),
    (
        "extra-args-duplicate-flag",
        add("  trust-remote-code: false\n", "  extra-args: [--max-model-len=4096, --enforce-eager]\n"),
        [
            "p.yaml:9: engine.extra-args: item 0: '--max-model-len' duplicates engine.max-model-len: set the profile field "
            "instead; item 1: '--enforce-eager' duplicates engine.enforce-eager: set the profile field instead"
        ],
    ),
    (
        "extra-args-underscore-spelling",
        add("  trust-remote-code: false\n", "  extra-args: [--gpu_memory_utilization, '1']\n"),
        [
            "p.yaml:9: engine.extra-args: item 0: '--gpu_memory_utilization' (read by vLLM as --gpu-memory-utilization) "
            "duplicates engine.gpu-memory-utilization: set the profile field instead"
        ],
    ),
    (
        "extra-args-api-key",
        add("  trust-remote-code: false\n", "  extra-args: [--api-key, token-abc123]\n"),
        ["p.yaml:9: engine.extra-args: item 0: '--api-key' duplicates api-key.env: set the profile field instead"],
    ),
    (
        "extra-args-not-list",
        add("  trust-remote-code: false\n", "  extra-args: --enable-prefix-caching\n"),
        ["p.yaml:9: engine.extra-args: expected a list, got '--enable-prefix-caching' (str)"],
    ),
    (
        "tp-larger-than-gpus",
        add("  trust-remote-code: false\n", "  tensor-parallel-size: 4\n") + "resources:\n  gpus: 2\n",
        ["p.yaml:14: resources.gpus: tensor-parallel-size 4 needs at least as many GPUs, got 2"],
    ),
    (
        "device-unknown",
        VALID + "image:\n  device: tpu\n",
        ["p.yaml:13: image.device: expected one of 'cuda' or 'cpu', got 'tpu' (str)"],
    ),
    (
        "base-image-latest",
        VALID + "image:\n  base: vllm/vllm-openai:latest\n",
        [
            "p.yaml:13: image.base: expected a pinned image reference (a tag other than latest, or a digest) like "
            "vllm/vllm-openai:v0.32.0"
        ],
    ),
    (
        "base-image-untagged",
        VALID + "image:\n  base: vllm/vllm-openai\n",
        [
            "p.yaml:13: image.base: expected a pinned image reference (a tag other than latest, or a digest) like "
            "vllm/vllm-openai:v0.32.0"
        ],
    ),
    (
        "cpu-without-kv-cache",
        VALID.replace(*LOCAL) + "image:\n  device: cpu\n",
        ["p.yaml:4: engine.kv-cache-space-gib: required for device cpu, e.g. 1 (GiB)"],
    ),
    ("cpu-with-gpus", CPU + "resources:\n  gpus: 1\n", ["p.yaml:16: resources.gpus: device cpu takes no GPUs, got 1"]),
    (
        "kv-cache-on-cuda",
        add("  trust-remote-code: false\n", "  kv-cache-space-gib: 4\n"),
        ["p.yaml:9: engine.kv-cache-space-gib: only for device cpu; on cuda use gpu-memory-utilization"],
    ),
    (
        "port-out-of-range",
        VALID + "server:\n  port: 70000\n",
        ["p.yaml:13: server.port: expected a number of at most 65535, got 70000 (int)"],
    ),
    (
        "port-negative-and-gpus-text",
        VALID + "server:\n  port: -1\nresources:\n  gpus: two\n",
        [
            "p.yaml:13: server.port: expected a number of at least 1, got -1 (int)",
            "p.yaml:15: resources.gpus: expected an integer, got 'two' (str)",
        ],
    ),
    (
        "limit-mm-unknown-modality",
        add("  trust-remote-code: false\n", "  limit-mm-per-prompt: {imgs: 2}\n"),
        ["p.yaml:9: engine.limit-mm-per-prompt.imgs: expected one of 'image', 'video' or 'audio', got 'imgs' (str)"],
    ),
    (
        "limit-mm-negative",
        add("  trust-remote-code: false\n", "  limit-mm-per-prompt: {image: -1}\n"),
        ["p.yaml:9: engine.limit-mm-per-prompt.image: expected a number of at least 0, got -1 (int)"],
    ),
    (
        "namespace-invalid",
        edit("node-selector:", "namespace: My_NS, node-selector:"),
        [
            "p.yaml:11: kubernetes.namespace: expected lowercase letters, digits and '-', starting and ending with a letter "
            "or digit, got 'My_NS' (str)"
        ],
    ),
    (
        "load-budget-too-small",
        edit("node-selector:", "load-budget-seconds: 5, node-selector:"),
        ["p.yaml:11: kubernetes.load-budget-seconds: expected a number of at least 30, got 5 (int)"],
    ),
    (
        "stop-token-ids-text",
        VALID + "smoke:\n  stop-token-ids: [151645, eos]\n",
        ["p.yaml:13: smoke.stop-token-ids.1: expected an integer, got 'eos' (str)"],
    ),
    (
        "media-retries-too-many",
        VALID + "media:\n  fetch-max-retries: 50\n",
        ["p.yaml:13: media.fetch-max-retries: expected a number of at most 10, got 50 (int)"],
    ),
    (
        "media-domains-in-extra-args",
        add("  trust-remote-code: false\n", "  extra-args: [--allowed-media-domains, a.example]\n"),
        [
            "p.yaml:9: engine.extra-args: item 0: '--allowed-media-domains' duplicates media.allowed-domains: set the "
            "profile field instead"
        ],
    ),
    ("duplicate-keys", VALID + "name: other\n", ["p.yaml:12: name: duplicate key (first defined on line 1)"]),
    (
        "duplicate-nested-key",
        edit("  dtype: auto\n", "  dtype: auto\n  dtype: half\n"),
        ["p.yaml:6: engine.dtype: duplicate key (first defined on line 5)"],
    ),
    (
        "gmu-1-on-cuda",
        edit("gpu-memory-utilization: 0.9", "gpu-memory-utilization: 1"),
        [
            "p.yaml:7: engine.gpu-memory-utilization: at most 0.95 on cuda, got 1.0: vLLM refuses to start when total "
            "memory × utilization exceeds the memory free at start-up, and the CUDA context alone takes some, so 1 (the "
            "guide's value) never starts; use 0.95 for a GPU of its own, less if other processes share it"
        ],
    ),
    (
        "host-storage-without-node-selection",
        edit("kubernetes: {node-selector: {vllm-deploy/model: demo}}\n", ""),
        [
            "p.yaml:1: kubernetes.node-selector: required with host storage: /models/demo exists only on the nodes you "
            "copied it to, and a pod scheduled elsewhere fails to start; label those nodes and select them, e.g. "
            "{vllm-deploy/model: demo} (or set kubernetes.node-affinity)"
        ],
    ),
    (
        "registry-with-scheme",
        VALID + "image:\n  registry: https://Registry.example.com\n",
        [
            "p.yaml:13: image.registry: expected a registry host and path in lowercase, e.g. registry.example.com/ml or "
            "127.0.0.1:5000/team, got 'https://Registry.example.com' (str)"
        ],
    ),
    (
        "many-problems-at-once",
        edit("dtype: auto", "dtype: fp8")
        .replace("max-model-len: 2048", "max-model-len: -1")
        .replace("name: demo", "nam: demo"),
        [
            "p.yaml:1: nam: unknown key (did you mean 'name'?); expected one of: api-key, description, engine, "
            "generation, image, kubernetes, media, model, monitoring, name, replicas, resources, router, server, smoke, twin-of",
            "p.yaml:1: name: required key is missing; expected a string",
            "p.yaml:5: engine.dtype: expected one of 'auto', 'half', 'float16', 'bfloat16', 'float' or 'float32', got 'fp8' (str)",
            "p.yaml:6: engine.max-model-len: expected a number greater than 0, got -1 (int)",
        ],
    ),
]

WHOLE_FILE = [
    (
        "yaml-syntax",
        "name: demo\nmodel: [\n",
        "error: p.yaml is invalid:\n"
        "  - p.yaml:3: YAML syntax error: expected the node content, but found '<stream end>'\n",
    ),
    (
        "yaml-tab-indent",
        "name: demo\nmodel:\n\tsource: /x\n",
        "error: p.yaml is invalid:\n"
        "  - p.yaml:3: YAML syntax error: found character '\\t' that cannot start any token\n",
    ),
    (
        "empty-file",
        "",
        "error: p.yaml is invalid:\n"
        "  - p.yaml: profile is empty; expected a mapping with at least name, model, engine, api-key\n",
    ),
    (
        "comment-only",
        "# nothing yet\n",
        "error: p.yaml is invalid:\n"
        "  - p.yaml: profile is empty; expected a mapping with at least name, model, engine, api-key\n",
    ),
    (
        "top-level-list",
        "- name: demo\n",
        "error: p.yaml is invalid:\n  - p.yaml:1: expected a mapping of keys at the top level, got a list\n",
    ),
    (
        "python-tag",
        "name: !!python/object:os.system demo\n",
        "error: p.yaml is invalid:\n"
        "  - p.yaml:1: YAML error: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'\n",
    ),
]


@pytest.mark.parametrize("case_id, text, expected", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_profile_lists_every_problem(cli, tmp_path, case_id, text, expected):
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    result = cli("validate", "p.yaml", cwd=tmp_path)
    count = f"{len(expected)} problem{'s' if len(expected) > 1 else ''}"
    assert result.err == f"error: p.yaml is invalid ({count}):\n" + "".join(f"  - {line}\n" for line in expected)
    assert result.code == 2
    assert result.out == ""


@pytest.mark.parametrize("case_id, text, expected", WHOLE_FILE, ids=[c[0] for c in WHOLE_FILE])
def test_unreadable_profile_text(cli, tmp_path, case_id, text, expected):
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    result = cli("validate", "p.yaml", cwd=tmp_path)
    assert (result.code, result.err) == (2, expected)


def test_non_utf8_profile(cli, tmp_path):
    (tmp_path / "p.yaml").write_bytes(b"name: d\xe9mo\n")
    result = cli("validate", "p.yaml", cwd=tmp_path)
    assert (result.code, result.err) == (
        2,
        "error: p.yaml: profile is not UTF-8 text (bad byte at offset 7); save it as UTF-8\n",
    )


def test_directory_instead_of_profile(cli, tmp_path):
    (tmp_path / "profiles").mkdir()
    result = cli("validate", "profiles", cwd=tmp_path)
    assert result.code == 2
    assert result.err == (
        "error: profiles: is a directory; expected a profile YAML file or one of: " + ", ".join(builtin_names()) + "\n"
    )


def test_missing_profile_suggests_a_builtin(cli, tmp_path):
    result = cli("validate", "minicpm-v-2.6", cwd=tmp_path)
    assert result.code == 2
    assert result.err.startswith(
        "error: minicpm-v-2.6: no such profile file or built-in profile (did you mean 'minicpm-v-2_6'?)"
    )


def test_valid_profile_passes(cli, tmp_path):
    (tmp_path / "p.yaml").write_text(VALID, encoding="utf-8")
    assert cli("validate", "p.yaml", cwd=tmp_path).code == 0


def test_defaults_come_from_the_model():
    profile = Profile.model_validate(__import__("yaml").safe_load(VALID))
    assert profile.server.port == 8000
    assert profile.server.bind_address == "127.0.0.1"
    assert profile.api_key.env == "VLLM_API_KEY"
    assert profile.smoke.stop_token_ids == [151645, 151643]


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_profiles_are_valid_and_named_after_their_file(name):
    assert load_profile(name).name == name


def test_profile_is_frozen():
    from pydantic import ValidationError

    profile = load_profile("minicpm-v-2_6")
    with pytest.raises(ValidationError, match="frozen"):
        profile.engine.dtype = "half"  # type: ignore[misc]  # NB: the very assignment pydantic must refuse


def test_the_builtin_minicpm_profile_validates_without_warnings(cli):
    result = cli("validate", "minicpm-v-2_6")
    assert (result.code, result.err) == (0, "")


def test_utilization_1_is_legal_on_cpu_where_the_kv_cache_is_sized_explicitly(cli, tmp_path):
    (tmp_path / "p.yaml").write_text(CPU.replace("gpu-memory-utilization: 0.9", "gpu-memory-utilization: 1"))
    assert cli("validate", "p.yaml", cwd=tmp_path).code == 0


def test_trust_remote_code_on_unpinned_hub_model_warns(cli, tmp_path):
    text = textwrap.dedent(
        edit("source: /models/demo", "source: openbmb/MiniCPM-V-2_6").replace(
            "trust-remote-code: false", "trust-remote-code: true"
        )
    )
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    result = cli("validate", "p.yaml", cwd=tmp_path)
    assert result.code == 0
    assert "warning: engine.trust-remote-code runs Python code from the model repository" in result.err
    pinned = text.replace("source: openbmb/MiniCPM-V-2_6", "source: openbmb/MiniCPM-V-2_6\n  revision: 0123abc")
    (tmp_path / "p.yaml").write_text(pinned, encoding="utf-8")
    assert "trust-remote-code" not in cli("validate", "p.yaml", cwd=tmp_path).err


def test_write_variant_merges_nested_changes(tmp_path):
    from deploy.spec.variant import write_variant

    path = write_variant(
        "tiny-cpu", tmp_path / "v.yaml", {"name": "v", "server": {"port": 9100}, "engine": {"max-model-len": 1024}}
    )
    variant, original = load_profile(str(path)), load_profile("tiny-cpu")
    assert (variant.name, variant.server.port, variant.engine.max_model_len) == ("v", 9100, 1024)
    # Untouched keys of a changed section survive the merge.
    assert variant.server.health_interval_seconds == original.server.health_interval_seconds
    assert variant.engine.kv_cache_space_gib == original.engine.kv_cache_space_gib


def _line_of(path, key: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.lstrip().startswith(key))


@pytest.mark.parametrize(
    "changes, key, said",
    [
        ({"replicas": 2, "image": {"registry": "registry.example.com/ml"}}, "replicas", "2 engine pods"),
        (
            {"monitoring": {"enabled": True, "autoscaler": "keda", "max-replicas": 3}},
            "monitoring.max-replicas",
            "up to 3 engine pods",
        ),
    ],
    ids=["replicas", "autoscaler"],
)
def test_hub_storage_on_a_read_write_once_claim_serves_one_pod_only(cli, tmp_path, changes, key, said):
    """Pods on another node would wait forever on a multi-attach error: refused, with what to write instead."""
    from deploy.spec.variant import write_variant

    path = write_variant("qwen2_5-vl-7b", tmp_path / "v.yaml", {"name": "v", **changes})
    result = cli("validate", "v.yaml", cwd=tmp_path)
    line = _line_of(path, key.split(".")[-1] + ":")
    assert result.code == 2 and result.out == ""
    assert result.err == (
        "error: v.yaml is invalid (1 problem):\n"
        f"  - v.yaml:{line}: {key}: {said} would share the hub cache's ReadWriteOnce claim, which attaches to one "
        "node only: pods on another node wait forever (multi-attach error); set kubernetes.storage-access-mode: "
        "ReadWriteMany with a storage-class that supports it (e.g. NFS, CephFS), or run one pod\n"
    )


def test_hub_storage_on_a_read_write_many_claim_serves_many_pods(cli, tmp_path):
    import yaml

    from deploy.plan import resolve
    from deploy.render import render
    from deploy.spec.variant import write_variant

    def claim(profile: Profile) -> dict:
        return yaml.safe_load(render(resolve(profile))[f"k8s/{profile.name}/pvc.yaml"])["spec"]

    changes = {
        "name": "v",
        "replicas": 2,
        "image": {"registry": "registry.example.com/ml"},  # the router's image is built
        "kubernetes": {"storage-access-mode": "ReadWriteMany"},
    }
    path = write_variant("qwen2_5-vl-7b", tmp_path / "v.yaml", changes)
    assert cli("validate", "v.yaml", cwd=tmp_path).code == 0
    assert claim(load_profile(str(path)))["accessModes"] == ["ReadWriteMany"]
    # One pod: the default, ReadWriteOnce, is fine; an autoscaler only counts where it is rendered (monitoring on).
    assert claim(load_profile("qwen2_5-vl-7b"))["accessModes"] == ["ReadWriteOnce"]
    quiet = {"name": "q", "monitoring": {"enabled": False, "autoscaler": "keda", "max-replicas": 4}}
    write_variant("qwen2_5-vl-7b", tmp_path / "q.yaml", quiet)
    assert cli("validate", "q.yaml", cwd=tmp_path).code == 0


def test_the_readmes_example_profile_validates(tmp_path, cli):
    """The profile users copy from README.md's "Writing a profile" is a valid profile."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Writing a profile", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    profile = tmp_path / "example.yaml"
    profile.write_text(example.replace("$schema=../schema/", f"$schema={REPO}/schema/"), encoding="utf-8")
    result = cli("validate", str(profile))
    assert result.code == 0, result.out + result.err


# Kubernetes pods that run an image vllm-deploy builds: named localhost/vllm-deploy/… without image.registry,
# which no cluster node can pull. (id, profile text, the images the error names)
BUILT_IMAGES = [
    ("cpu-engine", CPU.replace(LOCAL[1], LOCAL[0]), "the CPU engine image"),
    ("extra-pip-engine", VALID + "image:\n  extra-pip: [timm==1.0.15]\n", "the engine image with extra-pip layers"),
    (
        "unofficial-base-engine",
        VALID + "image:\n  base: registry.example.com/vllm-openai:custom\n",
        "the engine image built on a base that is no official vLLM tag",
    ),
    ("router", VALID + "replicas: 2\n", "the router image"),
]


def _pull_policies(profile: Profile) -> dict[str, str]:
    """Each Deployment's container image -> its imagePullPolicy, as rendered."""
    import yaml

    from deploy.plan import resolve
    from deploy.render import render

    found = {}
    for path, text in render(resolve(profile)).items():
        if path.startswith("k8s/") and path.endswith("deployment.yaml"):
            container = yaml.safe_load(text)["spec"]["template"]["spec"]["containers"][0]
            found[container["image"]] = container["imagePullPolicy"]
    return found


@pytest.mark.parametrize("case_id, text, images", BUILT_IMAGES, ids=[c[0] for c in BUILT_IMAGES])
def test_built_images_on_kubernetes_need_a_registry_or_local_images(cli, tmp_path, case_id, text, images):
    """Refused with where, which images, and both fixes."""
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    result = cli("validate", "p.yaml", cwd=tmp_path)
    line = text.splitlines().index("image:") + 1 if "\nimage:\n" in text else 1
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "error: p.yaml is invalid (1 problem):\n"
        f"  - p.yaml:{line}: image.registry: required where Kubernetes pods run images vllm-deploy builds ({images}): "
        "without it they are named localhost/vllm-deploy/<name>:<hash>, which no cluster node can pull; set "
        "image.registry to where `vllm-deploy push` sends them, e.g. registry.example.com/ml, or set "
        "kubernetes.local-images: true if you load them onto the nodes yourself (kind load docker-image, minikube "
        "image load, podman kube play)\n"
    )


@pytest.mark.parametrize("case_id, text, images", BUILT_IMAGES, ids=[c[0] for c in BUILT_IMAGES])
def test_built_images_with_a_registry_are_pulled_from_it(cli, tmp_path, case_id, text, images):
    registry = "registry.example.com/ml"
    if "\nimage:\n" in text:
        text = text.replace("\nimage:\n", f"\nimage:\n  registry: {registry}\n")
    else:
        text += f"image:\n  registry: {registry}\n"
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    assert cli("validate", "p.yaml", cwd=tmp_path).code == 0
    policies = _pull_policies(load_profile(str(tmp_path / "p.yaml")))
    built = [image for image in policies if image.startswith(f"{registry}/")]
    assert built and all(policies[image] == "IfNotPresent" for image in policies)
    assert not [image for image in policies if image.startswith("localhost/")]


@pytest.mark.parametrize("case_id, text, images", BUILT_IMAGES, ids=[c[0] for c in BUILT_IMAGES])
def test_local_images_are_never_pulled(cli, tmp_path, case_id, text, images):
    """kubernetes.local-images: the built images keep their local names and run with imagePullPolicy Never, so a
    node without them fails at once (ErrImageNeverPull); an official image is still pulled as usual."""
    (tmp_path / "p.yaml").write_text(text.replace(*LOCAL), encoding="utf-8")
    assert cli("validate", "p.yaml", cwd=tmp_path).code == 0
    policies = _pull_policies(load_profile(str(tmp_path / "p.yaml")))
    assert policies == {
        image: "Never" if image.startswith("localhost/vllm-deploy/") else "IfNotPresent" for image in policies
    }
    assert list(policies.values()).count("Never") == 1  # the one built image of each case
    if case_id == "router":
        assert policies["vllm/vllm-openai:v0.32.0"] == "IfNotPresent"


def test_the_official_image_needs_neither_a_registry_nor_local_images(cli, tmp_path):
    (tmp_path / "p.yaml").write_text(VALID, encoding="utf-8")
    assert cli("validate", "p.yaml", cwd=tmp_path).code == 0
    assert _pull_policies(load_profile(str(tmp_path / "p.yaml"))) == {"vllm/vllm-openai:v0.32.0": "IfNotPresent"}
    for name in ("minicpm-v-2_6", "qwen2_5-vl-7b"):
        assert _pull_policies(load_profile(name)) == {"vllm/vllm-openai:v0.32.0": "IfNotPresent"}


def test_the_cpu_engine_and_router_images_are_named_together(cli, tmp_path):
    from deploy.spec.variant import write_variant

    write_variant("tiny-cpu-x2", tmp_path / "v.yaml", {"name": "v", "kubernetes": {"local-images": False}})
    result = cli("validate", "v.yaml", cwd=tmp_path)
    assert result.code == 2
    line = (tmp_path / "v.yaml").read_text().splitlines().index("image:") + 1
    said = "images vllm-deploy builds (the CPU engine image and the router image)"
    assert f"v.yaml:{line}: image.registry: required where Kubernetes pods run {said}" in result.err


def test_local_images_and_a_registry_are_one_or_the_other(cli, tmp_path):
    text = CPU.replace("image:\n", "image:\n  registry: registry.example.com/ml\n")
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    result = cli("validate", "p.yaml", cwd=tmp_path)
    assert (result.code, result.err) == (
        2,
        "error: p.yaml is invalid (1 problem):\n"
        "  - p.yaml:12: kubernetes.local-images: cannot be true with image.registry set: local images are never "
        "pulled, and image.registry names where the nodes pull them from; keep one of the two\n",
    )


@pytest.mark.parametrize("name", ["tiny-cpu", "tiny-cpu-x2"])
def test_the_builtin_cpu_profiles_load_their_images_by_hand(name):
    """podman kube play runs them from its local store: Never is honoured for a local image."""
    policies = _pull_policies(load_profile(name))
    assert policies and set(policies.values()) == {"Never"}
    assert all(image.startswith("localhost/vllm-deploy/") for image in policies)


@pytest.mark.parametrize("name", builtin_names())
def test_libyaml_reads_every_builtin_profile_as_the_python_parser_does(name, monkeypatch):
    """The fast parser (libyaml) gives the same values and the same line of every key as PyYAML's own."""
    import yaml

    from deploy.spec import yaml_lines

    assert yaml_lines.FAST_PARSER is yaml.CSafeLoader  # NB: PyYAML's wheels carry libyaml
    text = (REPO / "deploy" / "profiles" / f"{name}.yaml").read_text()
    fast, fast_problems = yaml_lines.parse(text)
    monkeypatch.setattr(yaml_lines, "FAST_PARSER", yaml.SafeLoader)
    assert (fast, fast_problems) == yaml_lines.parse(text)
    assert len(fast.lines) > 10
