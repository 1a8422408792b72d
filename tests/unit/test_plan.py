"""The Plan: the vLLM argument list is built once, in Python, with one spelling."""

from __future__ import annotations

import pytest

from deploy.errors import UserError
from deploy.plan import API_KEY_VARIABLE, ENTRYPOINT, engine_flags, host_command, host_environment, resolve, serve_args
from deploy.spec import load_profile
from deploy.targets import kubernetes_plan
from tests.conftest import FIXTURE_PROFILES

SEED_MODEL = "/root/ld/ld_model_pretrained/Minicpmv2_6"
# The seed's `vllm serve` line, with --gpu_memory_utilization in vLLM's canonical spelling, without --api-key,
# and with the highest utilization vLLM starts with on CUDA instead of the guide's 1.
SEED_FLAGS = ["--dtype", "auto", "--max-model-len", "2048", "--gpu-memory-utilization", "0.95", "--trust-remote-code"]


def test_minicpm_argv_is_the_seeds_command_line():
    plan = resolve(load_profile("minicpm-v-2_6"))
    # `vllm serve` the seed's command line, then (appended by the entrypoint) the key check on every route.
    assert plan.entrypoint[-2:] == ["vllm", "serve"]
    assert plan.entrypoint[2].endswith(
        'exec "$@" --middleware vllm_deploy_edge.KeyOnEveryRoute --middleware vllm_deploy_edge.EngineWatch'
    )
    assert plan.argv == [
        "/models/weights",  # the seed's directory, mounted where any uid can read it (not under /root)
        "--served-model-name",
        SEED_MODEL,  # the seed's clients pass the path as `model`
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        # The guide's stop ids, applied by the server to every request (a mounted generation_config.json).
        "--generation-config",
        "/etc/vllm-deploy/generation",
        *SEED_FLAGS,
        "--limit-mm-per-prompt",
        '{"image":2,"video":0}',  # the guide's one image plus headroom; no video
        "--mm-processor-kwargs",
        '{"max_slice_nums":9}',  # bounds one image at 671 tokens
        "--shutdown-timeout",
        "30",  # requests in flight finish on SIGTERM
    ]
    assert plan.generation is not None and plan.generation.config == {"eos_token_id": [151645, 151643]}


def test_the_entrypoint_refuses_an_empty_key_before_running_vllm(tmp_path):
    """The guard script, run by a real /bin/sh: empty or unset key -> exit 78 and one line; a key -> exec."""
    import subprocess

    shell, dash_c, script, name = ENTRYPOINT[:4]
    for env in ({}, {API_KEY_VARIABLE: ""}):
        done = subprocess.run(
            [shell, dash_c, script, name, "echo", "served"],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
        )
        assert (done.returncode, done.stdout) == (78, "")
        assert done.stderr == (
            "vllm-deploy: VLLM_API_KEY is empty or unset; refusing to start: vLLM would serve "
            "every /v1 route without authentication\n"
        )
    done = subprocess.run(
        [shell, dash_c, script, name, "echo", "served", "$HOME"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", API_KEY_VARIABLE: "sk-1"},
    )
    # Arguments pass through untouched, and the key check on every route comes last.
    assert (done.returncode, done.stdout) == (
        0,
        "served $HOME --middleware vllm_deploy_edge.KeyOnEveryRoute --middleware vllm_deploy_edge.EngineWatch\n",
    )


def test_the_key_never_goes_on_the_command_line():
    for name in ("minicpm-v-2_6", "qwen2_5-vl-7b", "tiny-cpu"):
        plan = resolve(load_profile(name))
        assert "--api-key" not in plan.argv
        assert plan.api_key_variable == "VLLM_API_KEY" and plan.api_key_source == "VLLM_API_KEY"
        assert "VLLM_API_KEY" not in plan.environment


def test_flags_use_one_spelling():
    for name in ("minicpm-v-2_6", "qwen2_5-vl-7b", "tiny-cpu"):
        flags = [a for a in resolve(load_profile(name)).argv if a.startswith("--")]
        assert all("_" not in flag for flag in flags), flags


def test_optional_flags_appear_only_when_set():
    plan = resolve(load_profile("qwen2_5-vl-7b"))
    assert plan.argv[:3] == ["Qwen/Qwen2.5-VL-7B-Instruct", "--served-model-name", "qwen2.5-vl-7b-instruct"]
    assert plan.engine_flags[plan.engine_flags.index("--limit-mm-per-prompt") + 1] == '{"image":4,"video":0}'
    assert plan.engine_flags[plan.engine_flags.index("--max-num-seqs") + 1] == "32"
    assert plan.engine_flags[-1] == "--enable-prefix-caching"
    assert "--trust-remote-code" not in plan.argv
    assert "--tensor-parallel-size" not in plan.argv


def test_cpu_profile_sets_kv_cache_explicitly():
    plan = resolve(load_profile("tiny-cpu"))
    assert plan.device == "cpu" and plan.gpus == 0
    assert plan.engine_flags[plan.engine_flags.index("--kv-cache-memory-bytes") + 1] == str(2**30)
    assert "--enforce-eager" in plan.argv


def test_serve_args_place_model_host_and_port_once():
    profile = load_profile("tiny-cpu")
    argv = serve_args("/tmp/m", "tiny-vlm", "127.0.0.1", 1234, engine_flags(profile))
    assert argv[:7] == ["/tmp/m", "--served-model-name", "tiny-vlm", "--host", "127.0.0.1", "--port", "1234"]
    assert argv.count("--port") == 1
    plan = resolve(profile)
    with pytest.raises(ValueError, match="tiny-cpu has a generation config: write it"):
        host_command(plan, "/v/bin/vllm", "/tmp/m", "127.0.0.1", 1234)
    placed = ["--generation-config", "/tmp/g"]
    assert host_command(plan, "/v/bin/vllm", "/tmp/m", "127.0.0.1", 1234, "/tmp/g") == [
        "/v/bin/vllm",
        "serve",
        *argv[:7],
        *placed,
        *argv[7:],
        "--middleware",
        "vllm_deploy_edge.KeyOnEveryRoute",
        "--middleware",
        "vllm_deploy_edge.EngineWatch",
    ]
    assert plan.generation is not None and plan.argv[7:9] == ["--generation-config", plan.generation.directory]
    plain = resolve(load_profile(str(FIXTURE_PROFILES / "minimal-cpu.yaml")))  # no generation section
    assert plain.generation is None and "--generation-config" not in plain.argv
    assert host_command(plain, "/v/bin/vllm", "/tmp/m", "127.0.0.1", 1234, "/tmp/g")[2:-4] == serve_args(
        "/tmp/m", plain.served_model_name, "127.0.0.1", 1234, plain.engine_flags
    )


def test_host_runs_move_the_container_caches_into_scratch():
    plan = resolve(load_profile("tiny-cpu"))
    env = host_environment(plan, "/tmp/scratch")
    assert env["HOME"] == "/tmp/scratch" and env["TRITON_CACHE_DIR"] == "/tmp/scratch/triton"
    assert env["VLLM_IMAGE_FETCH_TIMEOUT"] == plan.environment["VLLM_IMAGE_FETCH_TIMEOUT"]


def test_home_and_every_cache_point_into_the_writable_cache():
    """FlashInfer ignores XDG_CACHE_HOME and writes under ~; triton, CUDA and vLLM use ~ too (read-only root)."""
    for name in ("minicpm-v-2_6", "tiny-cpu"):
        plan = resolve(load_profile(name))
        cache = plan.writable_dirs["cache"]
        for variable in (
            "HOME",
            "XDG_CACHE_HOME",
            "FLASHINFER_WORKSPACE_BASE",
            "TRITON_CACHE_DIR",
            "CUDA_CACHE_PATH",
            "TORCHINDUCTOR_CACHE_DIR",
        ):
            assert plan.environment[variable].startswith(cache), variable
        assert plan.writable_dirs["tmp"] == "/tmp"


def test_hub_storage_gets_a_cache_volume_a_fetch_step_and_an_offline_engine():
    plan = resolve(load_profile("qwen2_5-vl-7b"))
    assert plan.storage.kind == "hub"
    assert plan.environment["HF_HOME"] == plan.storage.container_path
    assert plan.environment["HF_HUB_OFFLINE"] == "1"  # the engine never downloads by surprise
    # The optional hub token is the fetch step's alone.
    assert {s.name: s.required for s in plan.secrets} == {"VLLM_API_KEY": True}
    assert plan.fetch and {s.name: s.required for s in plan.fetch.secrets} == {"HF_TOKEN": False}
    assert [s.name for s in plan.all_secrets] == ["VLLM_API_KEY", "HF_TOKEN"]
    # Hugging Face's own client, into the same cache the engine reads, at the revision it loads.
    assert plan.fetch.environment["HF_HOME"] == plan.storage.container_path
    assert "HF_HUB_OFFLINE" not in plan.fetch.environment and "HF_ENDPOINT" not in plan.fetch.environment
    assert plan.fetch.command[-3:] == ["fetch-model", "Qwen/Qwen2.5-VL-7B-Instruct", "main"]
    assert 'hf download "$1" --revision "$2"' in plan.fetch.command[2]
    assert kubernetes_plan(plan).pvc_name == "qwen2-5-vl-7b-models"


def test_a_pinned_revision_and_a_mirror_reach_the_fetch_step(tmp_path):
    from deploy.spec.variant import write_variant

    commit = "a" * 40
    path = write_variant(
        "qwen2_5-vl-7b",
        tmp_path / "p.yaml",
        {"model": {"revision": commit, "hub-endpoint": "https://hf-mirror.example"}},
    )
    plan = resolve(load_profile(str(path)))
    assert plan.fetch and plan.fetch.command[-1] == commit and plan.fetch.what.endswith(f"@{commit}")
    assert plan.fetch.environment["HF_ENDPOINT"] == "https://hf-mirror.example"


def test_only_hub_storage_has_a_fetch_step():
    for name in ("minicpm-v-2_6", "tiny-cpu", "tiny-cpu-x2"):
        assert resolve(load_profile(name)).fetch is None, name


def test_local_storage_is_offline_and_read_only():
    plan = resolve(load_profile("minicpm-v-2_6"))
    assert plan.storage.kind == "host"
    # NB: mounted at a neutral path: the GPU Deployment's uid cannot traverse /root (0700) in the official image.
    assert plan.storage.host_path == SEED_MODEL and plan.storage.container_path == plan.model == "/models/weights"
    assert plan.environment["HF_HUB_OFFLINE"] == "1"
    assert kubernetes_plan(plan).pvc_name is None


def test_startup_probe_is_sized_from_the_load_budget():
    plan = resolve(load_profile("qwen2_5-vl-7b"))
    assert plan.health.startup_period_seconds * plan.health.startup_failure_threshold >= 1200
    assert plan.health.start_period_seconds == 1200


def test_image_tag_ignores_runtime_settings():
    base = load_profile("tiny-cpu")
    changed = base.model_copy(
        update={
            "engine": base.engine.model_copy(update={"max_model_len": 1024, "dtype": "float32"}),
            "api_key": base.api_key.model_copy(update={"env": "OTHER_KEY"}),
        }
    )
    assert resolve(changed).image.reference == resolve(base).image.reference
    rebuilt = base.model_copy(update={"image": base.image.model_copy(update={"extra_pip": ["timm==1.0.15"]})})
    assert resolve(rebuilt).image.reference != resolve(base).image.reference


def test_image_tag_follows_the_build_recipe(monkeypatch):
    import deploy.plan.image

    before = resolve(load_profile("tiny-cpu")).image.reference
    monkeypatch.setattr(deploy.plan.image, "build_recipe_digest", lambda: "a-changed-dockerfile-template")
    assert resolve(load_profile("tiny-cpu")).image.reference != before


def test_the_official_image_is_used_as_it_is_when_the_profile_adds_nothing():
    for name in ("minicpm-v-2_6", "qwen2_5-vl-7b"):
        image = resolve(load_profile(name)).image
        assert (image.build, image.reference) == (False, "vllm/vllm-openai:v0.32.0")
        assert image.cuda is not None and image.cuda.cuda == "13.0"


def test_built_images_never_resolve_to_docker_hub():
    """A name without a registry host means docker.io: built images are localhost/… or the profile's registry."""
    tiny = resolve(load_profile("tiny-cpu")).image
    assert tiny.build and tiny.reference.startswith("localhost/vllm-deploy/tiny-cpu:")
    assert tiny.base.startswith("localhost/")
    sink = resolve(load_profile(str(FIXTURE_PROFILES / "kitchen-sink.yaml"))).image
    assert sink.build and sink.reference.startswith("registry.example.com/ml-team/kitchen-sink:")
    assert sink.cuda is not None  # its base is the official tag: the driver table still applies


def test_media_fetches_are_bounded_and_restrictable():
    plan = resolve(load_profile("minicpm-v-2_6"))
    assert plan.environment["VLLM_IMAGE_FETCH_TIMEOUT"] == "5"
    assert plan.environment["VLLM_MEDIA_FETCH_MAX_RETRIES"] == "1"
    assert "--allowed-media-domains" not in plan.argv
    sink = resolve(load_profile(str(FIXTURE_PROFILES / "kitchen-sink.yaml")))
    at = sink.argv.index("--allowed-media-domains")
    assert sink.argv[at + 1 : at + 3] == ["images.internal.example", "upload.example.org"]
    assert sink.environment["VLLM_MEDIA_FETCH_MAX_RETRIES"] == "0"


def test_memory_estimate_from_a_config():
    from deploy.plan.memory import estimate_gib

    # Qwen2-7B-like text model: 28 layers, hidden 3584, 28 heads, 4 KV heads, vocab 152064.
    config = {
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "vocab_size": 152064,
    }
    weights, kv = estimate_gib(config, "bfloat16", 2048, 1)
    assert 13.5 < weights < 15.5  # ~7.6 B parameters at 2 bytes
    assert kv == 2 * 28 * 4 * 128 * 2 * 2048 / 2**30  # K and V, per layer, per KV head, per token


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"model": {"hub-endpoint": "https://user:hunter2@mirror.example"}}, "model.hub-endpoint"),
        ({"model": {"hub-endpoint": "ftp://mirror.example"}}, "model.hub-endpoint"),
        ({"model": {"hub-endpoint": "https://mirror.example/a b"}}, "model.hub-endpoint"),
    ],
)
def test_a_hub_endpoint_with_credentials_or_not_http_is_refused_unshown(tmp_path, changes, expected):
    from deploy.spec.variant import write_variant

    path = write_variant("qwen2_5-vl-7b", tmp_path / "p.yaml", changes)
    with pytest.raises(UserError) as caught:
        load_profile(str(path))
    assert expected in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_hub_endpoint_needs_hub_storage(tmp_path):
    from deploy.spec.variant import write_variant

    path = write_variant("tiny-cpu", tmp_path / "p.yaml", {"model": {"hub-endpoint": "https://mirror.example"}})
    with pytest.raises(UserError, match="needs storage 'hub'"):
        load_profile(str(path))
