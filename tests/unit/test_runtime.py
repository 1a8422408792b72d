"""The runtime's helpers without Docker: fake runners and engines stand in for the daemon and the CLI."""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.errors import UserError
from deploy.plan import resolve
from deploy.runtime import envfile, images
from deploy.runtime.docker import Compose, ContainerState, DockerDaemon
from deploy.runtime.process import Completed, run, wait_until
from deploy.runtime.smoke import parse_junit, plan_options
from deploy.runtime.stack import Stack, prepare, push, up
from deploy.spec import load_profile
from tests.conftest import FIXTURE_PROFILES, REPO

# ---------------------------------------------------------------------------------------------
# process


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_until_returns_the_first_answer_and_the_time_it_took():
    clock, answers = FakeClock(), iter([None, None, "ready"])
    ticks: list[float] = []
    value, seconds = wait_until(
        lambda: next(answers), timeout=10, interval=0.5, on_tick=ticks.append, clock=clock, sleep=clock.sleep
    )
    assert (value, seconds, ticks) == ("ready", 1.0, [0.0, 0.5])


def test_wait_until_gives_up_after_its_timeout_and_a_probe_can_stop_it():
    clock = FakeClock()
    with pytest.raises(TimeoutError, match="not ready after 3 s"):
        wait_until(lambda: None, timeout=3, interval=1, clock=clock, sleep=clock.sleep)
    assert clock.now == 3

    def exited():
        raise RuntimeError("the container exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until(exited, timeout=3, clock=clock, sleep=clock.sleep)


def test_run_captures_or_echoes_and_checked_names_the_failure(capsys):
    done = run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr, done.ok) == (3, "out\n", "err\n", False)
    with pytest.raises(UserError, match=r"`sh -c echo out; echo err >&2; exit 3` failed \(exit 3\):\nerr"):
        done.checked()
    echoed = run(["sh", "-c", "echo one; echo two >&2"], echo=True)
    assert echoed.stdout == "one\ntwo\n" and capsys.readouterr().out == "one\ntwo\n"


# ---------------------------------------------------------------------------------------------
# .env handling (python-dotenv): quotes, export and comments as compose reads them


def test_env_file_values_as_compose_reads_them(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# a comment\nexport VLLM_API_KEY=\"sk-quoted value\"\nHF_TOKEN=\nOTHER='single'\n")
    assert envfile.read(env) == {"VLLM_API_KEY": "sk-quoted value", "OTHER": "single"}
    assert envfile.key("VLLM_API_KEY", env, environ={}) == "sk-quoted value"
    assert envfile.key("VLLM_API_KEY", env, environ={"VLLM_API_KEY": "from-env"}) == "from-env"
    assert envfile.key("HF_TOKEN", env, environ={}) is None  # an empty value is no key
    assert envfile.read(tmp_path / "missing") == {}


def test_ensure_key_generates_once_keeps_other_lines_and_is_private(tmp_path):
    env = tmp_path / "compose" / ".env"
    assert envfile.ensure_key("VLLM_API_KEY", env, environ={}) is True
    first = envfile.key("VLLM_API_KEY", env, environ={})
    assert first is not None and first.startswith("sk-") and len(first) > 40 and env.stat().st_mode & 0o777 == 0o600
    assert envfile.ensure_key("VLLM_API_KEY", env, environ={}) is False  # kept
    env.write_text("HF_TOKEN=hf_x\nVLLM_API_KEY=\n")
    assert envfile.ensure_key("VLLM_API_KEY", env, environ={}) is True  # empty means missing
    assert envfile.read(env)["HF_TOKEN"] == "hf_x" and envfile.key("VLLM_API_KEY", env, environ={}) != first
    assert envfile.ensure_key("VLLM_API_KEY", tmp_path / "unused", environ={"VLLM_API_KEY": "k"}) is False
    assert not (tmp_path / "unused").exists()


def test_the_env_files_are_git_ignored():
    paths = ["compose/tiny-cpu/.env", "k8s/tiny-cpu/secrets.env"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == paths


# ---------------------------------------------------------------------------------------------
# A fake Docker: a runner that answers compose and docker commands, and a daemon with set answers

BUILD_LOG = """\
#5 [vllm 1/5] FROM localhost/vllm-deploy/debian-python:bookworm
#6 [vllm 2/5] COPY engine-venv.sh /opt/vllm-deploy/engine-venv.sh
#6 CACHED
#7 [vllm 3/5] RUN --mount=type=secret,id=cabundle if [ -f /run/secrets/cabundle ]
#7 CACHED
#8 [vllm 4/5] RUN useradd --uid 10001 --user-group --create-home vllm
#8 0.412 done
#9 [vllm 5/5] COPY tiny_model.py /opt/vllm-deploy/tiny_model.py
#9 DONE 0.1s
"""


@dataclass
class FakeRunner:
    answers: dict[str, Completed] = field(default_factory=dict)  # first matching word -> answer
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, args, *, cwd=None, env=None, timeout=None, echo=False) -> Completed:
        self.calls.append(list(args))
        for word, answer in self.answers.items():
            if word in args:
                return answer
        return Completed(list(args), 0, "")


@dataclass
class FakeDocker(DockerDaemon):  # NB: __init__ never runs: a query not faked here fails, it never reaches Docker
    info_answer: dict | None = None
    images: set[str] = field(default_factory=set)

    def info(self):
        return self.info_answer

    def image_id(self, reference):
        return "sha256:abc" if reference in self.images else None

    def state(self, container):
        return ContainerState("running", "healthy")

    def logs(self, container, lines=40):
        return "INFO: Application startup complete."

    def inspect(self, container):
        return {"Image": "sha256:abc"}


def test_compose_commands_name_the_project_directory(tmp_path):
    runner = FakeRunner({"ps": Completed([], 0, "c0ffee\n")})
    compose = Compose(tmp_path, runner)
    assert compose.container("vllm") == "c0ffee"
    assert runner.calls[0][1:] == ["compose", "--project-directory", str(tmp_path), "ps", "-q", "vllm"]
    assert Compose(tmp_path, FakeRunner()).container("vllm") is None


def test_build_steps_come_from_buildkits_log():
    assert images.executed_steps(BUILD_LOG) == (2, 4)


def test_a_failed_build_is_a_user_error_with_the_end_of_the_log(tmp_path):
    plan = resolve(load_profile("tiny-cpu"))
    runner = FakeRunner({"build": Completed([], 1, "step one\nERROR: no space left on device\n")})
    with pytest.raises(
        UserError, match=r"building localhost/vllm-deploy/tiny-cpu:\w+ failed \(exit 1\):\nstep one\nERROR: no space"
    ):
        images.build(plan, Compose(tmp_path, runner), echo=False)


def test_prepare_renders_makes_a_key_and_builds_a_cpu_image(tmp_path):
    plan = resolve(load_profile("tiny-cpu"))
    runner = FakeRunner({"build": Completed([], 0, BUILD_LOG), "download": Completed([], 1, "", "no index")})
    stack = Stack(plan, tmp_path, runner, FakeDocker(images={plan.image.base}))
    assert prepare(stack, echo=False) == 2
    assert (tmp_path / "compose" / "tiny-cpu" / "compose.yaml").is_file()
    assert (stack.key() or "").startswith("sk-")
    commands = [" ".join(c) for c in runner.calls]
    assert any("pip download" in c and "torch==2.13.0+cpu" in c for c in commands)  # the wheel, before the build
    assert commands[-1].endswith("--progress plain build")


def test_prepare_builds_nothing_for_the_official_image(tmp_path):
    runner = FakeRunner()
    stack = Stack(resolve(load_profile("qwen2_5-vl-7b")), tmp_path, runner, FakeDocker())
    assert prepare(stack, echo=False) == 0
    assert runner.calls == [] and (tmp_path / "compose" / "qwen2_5-vl-7b" / "compose.yaml").is_file()


def test_up_stops_before_rendering_when_preflight_fails(tmp_path):
    stack = Stack(resolve(load_profile("tiny-cpu")), tmp_path, FakeRunner(), FakeDocker(info_answer=None))
    with pytest.raises(
        UserError, match="cannot come up on this host:\n  - docker daemon: the Docker daemon does not answer"
    ):
        up(stack)
    assert not (tmp_path / "compose").exists()


def test_push_needs_something_built_and_a_registry(tmp_path):
    with pytest.raises(UserError, match="runs the official image vllm/vllm-openai:v0.32.0 unchanged: nothing to push"):
        push(Stack(resolve(load_profile("minicpm-v-2_6")), tmp_path, FakeRunner(), FakeDocker()))
    with pytest.raises(UserError, match="tiny-cpu has no image.registry"):
        push(Stack(resolve(load_profile("tiny-cpu")), tmp_path, FakeRunner(), FakeDocker()))


# ---------------------------------------------------------------------------------------------
# The smoke suite's options and results


def test_smoke_options_come_from_the_plan():
    plan = resolve(load_profile("tiny-cpu"))
    options = plan_options(plan, "http://127.0.0.1:8000", "172.17.0.1")
    assert options == [
        "--base-url",
        "http://127.0.0.1:8000",
        "--model",
        "tiny-vlm",
        "--stop-token-ids",
        "151645,151643",
        "--image-url",
        plan.smoke.image_url,
        "--max-images",
        "2",
        "--server-stop-token-ids",
        "151645,151643,151648",
        "--image-tokens",
        "94",
        "--local-image-server",
        "--image-server-host",
        "172.17.0.1",
    ]  # the key: environment only
    plain = resolve(load_profile(str(FIXTURE_PROFILES / "minimal-cpu.yaml")))  # no generation, no architecture
    assert not {"--server-stop-token-ids", "--image-tokens"} & set(plan_options(plain, "http://x", None))


def test_the_suite_reads_the_new_options_and_deselects_without_them():
    from smoke_tests.settings import build_config

    config = build_config({"server_stop_token_ids": "151645, 151648", "image_tokens": "94"}, {})
    assert (config.server_stop_token_ids, config.image_tokens) == ((151645, 151648), 94)
    config = build_config({}, {"SMOKE_SERVER_STOP_TOKEN_IDS": "7"})
    assert (config.server_stop_token_ids, config.image_tokens) == ((7,), None)
    assert build_config({}, {}).server_stop_token_ids is None


def test_junit_results_keep_parametrized_names(tmp_path, capsys, monkeypatch):
    from deploy.runtime.smoke import print_table

    monkeypatch.setenv("COLUMNS", "200")
    xml = tmp_path / "r.xml"
    xml.write_text(
        "<testsuites><testsuite>"
        '<testcase classname="smoke_tests.test_seed_snippets" name="test_seed_snippet_runs[image-url]" time="1.5"/>'
        '<testcase classname="smoke_tests.test_seed_snippets" name="test_seed_snippet_runs[local-image]" time="1.0">'
        '<failure message="boom&#10;second line"/></testcase>'
        "</testsuite></testsuites>"
    )
    cases = parse_junit(xml)
    assert [(c.name, c.status, c.message) for c in cases] == [
        ("test_seed_snippets::test_seed_snippet_runs[image-url]", "passed", ""),
        ("test_seed_snippets::test_seed_snippet_runs[local-image]", "failed", "boom"),
    ]
    print_table(cases)
    out = capsys.readouterr().out
    assert "[image-url]" in out and "[local-image]" in out  # rich would read them as styles


def test_smoke_without_its_extra_says_what_to_install(cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytest" else real(name, *a))
    result = cli("smoke", "--base-url", "http://127.0.0.1:9")
    assert (result.code, result.err) == (
        2,
        "error: the smoke suite needs pytest and openai: pip install 'vllm-deploy[smoke]'\n",
    )


# ---------------------------------------------------------------------------------------------
# The load generator against a stand-in endpoint, and the benchmark report


def test_load_counts_requests_errors_and_percentiles():
    from deploy.bench.load import image_urls_for, load

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body["messages"][0]["content"][1]["image_url"]["url"][:10])
            status = 500 if len(seen) % 10 == 0 else 200
            answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": "a sign"}}]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = load(
            f"http://127.0.0.1:{server.server_address[1]}", "k", "m", 4, 40, image_urls_for("http://127.0.0.1:1/x.jpg")
        )
    finally:
        server.shutdown()
    assert (result.requests, result.errors, result.concurrency) == (40, 4, 4)
    assert list(result.failures) == ['HTTP 500: {"choices": [{"message": {"role": "assistant", "content": "a sign"}}]}']
    assert 0 < result.p50_ms <= result.p95_ms and result.requests_per_second > 0
    assert {u[:5] for u in seen} == {"http:", "data:"}  # URL and base64 images alternate


def test_the_benchmark_report_renders_the_committed_figures_exactly():
    from deploy.bench.report import report

    figures = json.loads((REPO / "BENCHMARKS.json").read_text(encoding="utf-8"))
    assert report(figures) == (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")


def test_a_missed_target_says_no():
    from deploy.bench.report import targets

    figures = json.loads((REPO / "BENCHMARKS.json").read_text(encoding="utf-8"))
    figures["image"]["image_gb"] = 3.5
    rows = {row["label"]: row for row in targets(figures)}
    assert rows["CPU image size"]["met"] is False and rows["CLI start-up"]["met"] is True


def test_the_fetch_figure_is_reported_when_measured():
    from deploy.bench.report import report

    figures = json.loads((REPO / "BENCHMARKS.json").read_text(encoding="utf-8"))
    figures["fetch"] = {"model_mb": 256.0, "runs_s": [5.2, 6.3], "mb_per_s": [49.4, 40.6], "median_mb_per_s": 45.0}
    assert "against the loopback hub" in report(figures) and "**45.0 MB/s** median" in report(figures)
