"""The benchmark's own code without Docker or an engine: the `vllm bench serve` command and its result,
the client's cgroup, the load client as a process, the compose override, the router-overhead rounds."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.runtime.process import Completed

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "vllm-bench-serve-result.json"  # a real result: tiny-cpu-x2's engine, 100 prompts at 4


# ---------------------------------------------------------------------------------------------
# vllm bench serve


def test_the_vllm_bench_command_is_the_fields_chat_benchmark_with_one_image_per_request(tmp_path):
    from deploy.bench.vllm_bench import ServeSettings, command

    argv = command(
        Path("/e/bin/vllm"),
        "http://127.0.0.1:9000",
        "tiny-vlm",
        Path("/t/tiny-vlm"),
        ServeSettings(prompts=50, concurrency=8),
        tmp_path / "out.json",
    )
    assert argv == [
        "/e/bin/vllm",
        "bench",
        "serve",
        "--backend",
        "openai-chat",
        "--endpoint",
        "/v1/chat/completions",
        "--base-url",
        "http://127.0.0.1:9000",
        "--model",
        "tiny-vlm",
        "--tokenizer",
        "/t/tiny-vlm",
        "--dataset-name",
        "random-mm",
        "--num-prompts",
        "50",
        "--max-concurrency",
        "8",
        "--random-input-len",
        "64",
        "--random-output-len",
        "16",
        "--random-mm-base-items-per-request",
        "1",
        "--random-mm-limit-mm-per-prompt",
        '{"image": 1, "video": 0}',
        "--random-mm-bucket-config",
        "{(224, 224, 1): 1.0}",
        "--ignore-eos",
        "--temperature",
        "0",
        "--num-warmups",
        "4",
        "--seed",
        "0",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,90,99",
        "--disable-tqdm",
        "--save-result",
        "--result-dir",
        str(tmp_path),
        "--result-filename",
        "out.json",
    ]


def test_the_key_reaches_vllm_bench_through_its_environment_only(tmp_path):
    from deploy.bench.vllm_bench import ServeSettings, command, environment

    env = environment(Path("/e/bin/vllm"), "sk-secret", tmp_path)
    assert env["OPENAI_API_KEY"] == "sk-secret"
    assert (env["HF_HUB_OFFLINE"], env["TRANSFORMERS_OFFLINE"], env["VLLM_NO_USAGE_STATS"]) == ("1", "1", "1")
    assert env["HOME"] == str(tmp_path) and env["PATH"].startswith("/e/bin:")
    argv = command(Path("/e/bin/vllm"), "http://h", "m", Path("/t"), ServeSettings(), tmp_path / "r.json")
    assert not any("sk-secret" in word for word in argv)


def test_a_vllm_bench_result_is_read_into_figures():
    from deploy.bench.vllm_bench import parse

    result = parse(json.loads(SAMPLE.read_text(encoding="utf-8")))
    assert (result.completed, result.failed, result.duration_s) == (100, 0, 11.02)
    assert (result.requests_per_second, result.output_tokens_per_second) == (9.08, 145.2)
    assert result.ms["ttft"] == {"mean": 111.7, "p50": 98.2, "p90": 169.9, "p99": 264.5}
    assert result.ms["e2el"] == {"mean": 437.9, "p50": 402.8, "p90": 567.7, "p99": 711.6}
    assert set(result.ms) == {"ttft", "tpot", "itl", "e2el"}


def test_failed_requests_are_counted_although_vllm_bench_exits_0():
    from deploy.bench.vllm_bench import parse

    data = json.loads(SAMPLE.read_text(encoding="utf-8")) | {"completed": 98, "failed": 2}
    assert (parse(data).completed, parse(data).failed) == (98, 2)


def test_serve_bench_runs_the_wrapped_command_and_reads_its_result(tmp_path):
    from deploy.bench.vllm_bench import ServeSettings, serve_bench

    calls = []

    def runner(args, *, cwd=None, env=None, timeout=None, echo=False):
        calls.append((list(args), env))
        result = Path(args[args.index("--result-dir") + 1]) / args[args.index("--result-filename") + 1]
        shutil.copy(SAMPLE, result)
        return Completed(list(args), 0, "")

    result = serve_bench(
        Path("/e/bin/vllm"),
        "http://h",
        "m",
        Path("/t"),
        "k",
        tmp_path,
        ServeSettings(),
        "router",
        runner=runner,
        wrap=lambda argv: ["in-cgroup", *argv],
    )
    assert result.requests_per_second == 9.08
    ((argv, env),) = calls
    assert argv[:2] == ["in-cgroup", "/e/bin/vllm"] and env["OPENAI_API_KEY"] == "k"
    assert argv[argv.index("--result-filename") + 1] == "vllm-bench-router.json"


def test_serve_bench_without_a_result_says_why(tmp_path):
    from deploy.bench.vllm_bench import ServeSettings, serve_bench

    def runner(args, **kwargs):
        return Completed(list(args), 1, "", "ValueError: no tokenizer")

    with pytest.raises(RuntimeError, match="wrote no result \\(exit 1\\):\nValueError: no tokenizer"):
        serve_bench(
            Path("/e/bin/vllm"), "http://h", "m", Path("/t"), "k", tmp_path, ServeSettings(), "x", runner=runner
        )


def test_the_median_of_serving_results_is_taken_figure_by_figure():
    from deploy.bench.vllm_bench import median_result, parse

    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    results = [
        parse(data | {"request_throughput": rps, "p50_ttft_ms": ttft, "failed": failed})
        for rps, ttft, failed in ((8.0, 100.0, 0), (10.0, 300.0, 1), (9.0, 120.0, 0))
    ]
    median = median_result(results)
    assert (median.requests_per_second, median.ms["ttft"]["p50"], median.failed, median.completed) == (
        9.0,
        120.0,
        1,
        300,
    )


# ---------------------------------------------------------------------------------------------
# The load client's cgroup


def test_the_cpu_hierarchy_is_found_on_cgroup_v1_and_v2(tmp_path):
    from deploy.bench.cgroup import cpu_hierarchy

    assert cpu_hierarchy(tmp_path) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cgroup.procs").write_text("")
    assert cpu_hierarchy(tmp_path) == (tmp_path / "cpu", 1)
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert cpu_hierarchy(tmp_path) == (tmp_path, 2)


def test_on_cgroup_v2_the_cpu_controller_is_enabled_for_the_clients_cgroup(tmp_path):
    from deploy.bench.cgroup import client_cgroup

    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "cgroup.procs").write_text("")  # the kernel makes it; a plain directory does not
    cgroup = client_cgroup(tmp_path, "client")
    assert (cgroup.path, cgroup.version) == (tmp_path / "client", 2)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu"


def test_without_a_writable_cgroup_the_client_cannot_be_isolated(tmp_path):
    from deploy.bench.cgroup import client_cgroup

    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cgroup.procs").write_text("")
    with pytest.raises(OSError, match="is not writable"):
        client_cgroup(tmp_path, "client")  # a plain directory has no cgroup.procs
    with pytest.raises(OSError, match="no CPU cgroup hierarchy"):
        client_cgroup(tmp_path / "nowhere")


def test_a_wrapped_command_writes_its_own_pid_to_the_cgroup_before_it_runs(tmp_path):
    from deploy.bench.cgroup import Cgroup

    cgroup = Cgroup(tmp_path, 1)
    done = subprocess.run(
        cgroup.wrap(["sh", "-c", "echo $$; echo 'it ran'"]), capture_output=True, text=True, check=True
    )
    pid, said = done.stdout.splitlines()
    assert said == "it ran"
    assert (tmp_path / "cgroup.procs").read_text().strip() == pid  # exec: the same process


# ---------------------------------------------------------------------------------------------
# The load client as a process; the compose override; the router-overhead rounds


def test_the_load_client_runs_as_its_own_process_with_the_key_in_its_environment(tmp_path):
    from deploy.bench.load import LoadResult, load_levels_apart

    calls = []

    def runner(args, *, cwd=None, env=None, timeout=None, echo=False):
        calls.append((list(args), env))
        out = Path(args[args.index("--json") + 1])
        out.write_text(
            json.dumps(
                {
                    "base_url": "x",
                    "results": [
                        {
                            "concurrency": 1,
                            "requests": 10,
                            "errors": 0,
                            "seconds": 1.0,
                            "requests_per_second": 10.0,
                            "p50_ms": 90.0,
                            "p95_ms": 120.0,
                            "failures": {},
                        }
                    ],
                }
            )
        )
        return Completed(list(args), 0, "")

    results = load_levels_apart(
        "http://h:1",
        "sk-key",
        "m",
        [1],
        10,
        "172.17.0.1",
        tmp_path / "load.json",
        runner=runner,
        wrap=lambda argv: ["wrapped", *argv],
    )
    assert results == [LoadResult(1, 10, 0, 1.0, 10.0, 90.0, 120.0, {})]
    ((argv, env),) = calls
    assert argv[0] == "wrapped" and argv[2:5] == ["-m", "deploy", "load"]
    assert argv[argv.index("--image-server-host") + 1] == "172.17.0.1"
    assert env["VLLM_API_KEY"] == "sk-key" and "sk-key" not in argv


def test_the_compose_override_publishes_each_engine_on_loopback(tmp_path):
    from deploy.bench.replicas import X2, publish_replicas, x2_variant

    stack = x2_variant(tmp_path, X2)
    urls = publish_replicas(stack)
    override = yaml.safe_load((stack.directory / "compose.override.yaml").read_text(encoding="utf-8"))
    assert set(override["services"]) == set(urls) == {"vllm-0", "vllm-1"}
    for service, url in urls.items():
        (published,) = override["services"][service]["ports"]
        assert published == f"127.0.0.1:{url.rsplit(':', 1)[1]}:8000" and url.startswith("http://127.0.0.1:")
    assert stack.plan.name == X2 and stack.plan.port != 8010  # never the built-in's own stack


def test_the_one_engine_copy_keeps_the_router(tmp_path):
    from deploy.bench.replicas import X1, x2_variant

    stack = x2_variant(tmp_path, X1, {"replicas": 1, "router": {"enabled": True}})
    assert [r.service for r in stack.plan.instances] == ["vllm-0"] and stack.services == ["vllm-0", "router"]


def test_router_overhead_alternates_the_arms_and_compares_medians(tmp_path):
    from deploy.bench.replicas import router_overhead, x2_variant
    from deploy.bench.vllm_bench import parse

    stack = x2_variant(tmp_path, "x1", {"replicas": 1, "router": {"enabled": True}})
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    order = []

    def serve(url, label):
        order.append(label)
        router = url == stack.endpoint
        return parse(
            data
            | {
                "request_throughput": 9.0 if router else 10.0,
                "p50_e2el_ms": 430.0 if router else 400.0,
                "p50_ttft_ms": 110.0 if router else 100.0,
            }
        )

    figures = router_overhead(stack, "http://127.0.0.1:1", serve, 3)
    assert order == ["router-1", "straight-1", "straight-2", "router-2", "router-3", "straight-3"]
    assert (figures["rps_ratio"], figures["added_p50_e2el_ms"], figures["added_p50_ttft_ms"]) == (0.9, 30.0, 10.0)
    assert figures["rps_by_round"] == {"router": [9.0] * 3, "straight": [10.0] * 3} and figures["failed"] == 0


def test_the_requests_an_engine_holds_are_read_from_its_metrics():
    from deploy.bench.replicas import requests_held

    metrics = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="tiny-vlm"} 3.0\n'
        'vllm:num_requests_waiting{engine="0",model_name="tiny-vlm"} 1.0\n'
        'vllm:num_requests_waiting_by_reason{engine="0",reason="capacity"} 7.0\n'
    )
    assert requests_held(metrics) == 4
