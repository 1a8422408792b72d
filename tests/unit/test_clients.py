"""Every network client against a server that answers badly (tests/tools/junk_server.py): each ends within its
deadline, with its own documented error or result, never a hang and never a traceback; the server's words
reach a message escaped and truncated.

The corpus runs each client against each junk answer with short deadlines passed in; the cases after it pin
what a client does with a particular answer (a Prometheus of odd values, a load run, the smoke runner's key
and deadline)."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from deploy.bench.load import LoadResult, first_model, load
from deploy.bench.replicas import healthy_workers, in_flight
from deploy.errors import UserError, shown
from deploy.plan import resolve
from deploy.runtime.http import Connections, HttpError, ShapeError, fetch, pick
from deploy.runtime.net import http_ok
from deploy.runtime.router import RouterClient
from deploy.runtime.status import Prometheus, screen, snapshot, status
from deploy.spec import load_profile
from smoke_tests.bounded import HttpFailureError
from smoke_tests.bounded import fetch as smoke_fetch
from smoke_tests.conftest import wait_ready
from smoke_tests.support import Raw
from tests.tools.junk_server import MODES, QuietServer, within

DEADLINE = 0.3  # seconds a client gets against junk (injected: every client takes its deadline as a parameter)
HANG = 20.0  # far past any deadline above: a client still running then hangs
CANARY = "sk-canary-0d9f8e7c6b5a4"
DATA_URL = "data:image/jpeg;base64,/9j/4AAQ"


@pytest.fixture(scope="module")
def x2():
    return resolve(load_profile("tiny-cpu-x2"))


def run_status(base: str, plan) -> str:
    return screen(plan.name, base, snapshot(Prometheus(base, timeout=DEADLINE), plan.monitoring.status_queries))


def run_load(base: str, plan) -> LoadResult:
    return load(base, CANARY, "m", 2, 4, [DATA_URL], deadline=DEADLINE)


# Each client: how to call it against a base URL, its documented error, and what it may return instead.
CLIENTS: dict[str, tuple[Callable[[str, Any], Any], type[BaseException], Callable[[Any], bool]]] = {
    # Prometheus: a clear UserError, or a screen whose unusable figures say n/a
    "status": (run_status, UserError, lambda text: "n/a" in text),
    # the router: its admin routes want a 2xx; readiness a JSON object, healthy_workers an integer in it
    "router-readiness": (
        lambda base, _: RouterClient(base, (), "python3", "", readiness_deadline=DEADLINE).readiness(),
        UserError,
        lambda result: isinstance(result, dict),
    ),
    "router-healthy-workers": (
        lambda base, _: healthy_workers(RouterClient(base, (), "python3", "", readiness_deadline=DEADLINE)),
        UserError,
        lambda result: result is None,
    ),
    # the load generator: anything but a chat completion is an error it counts, never an exception
    "load": (run_load, UserError, lambda r: r.requests == r.errors == 4 and sum(r.failures.values()) == 4),
    "load-first-model": (lambda base, _: first_model(base, CANARY, DEADLINE), UserError, lambda result: False),
    # health probes (up, rollout, bench): a 200 within the deadline or not
    "health-probe": (lambda base, _: http_ok(base + "/health", DEADLINE), UserError, lambda r: isinstance(r, bool)),
    "engine-metrics": (lambda base, _: in_flight(base, DEADLINE), UserError, lambda r: isinstance(r, int) and r >= 0),
    # the smoke suite's own client: an AssertionError of its own, so a case fails with the message
    "smoke-raw-json": (
        lambda base, _: Raw(base, CANARY, DEADLINE).get("/v1/models").json(),
        HttpFailureError,
        lambda result: True,
    ),
    "smoke-health-wait": (
        lambda base, _: wait_ready(base, CANARY, DEADLINE, DEADLINE, interval=0.05),
        HttpFailureError,
        lambda seconds: isinstance(seconds, float),
    ),
    "smoke-image-download": (
        lambda base, _: smoke_fetch("GET", base + "/stop_sign.jpg", deadline=DEADLINE, cap=1024 * 1024, follow=True),
        HttpFailureError,
        lambda answer: answer.status_code >= 200,
    ),
}
ANSWERS = MODES + ("nothing-listening",)


def clean(text: str) -> None:
    """Server text reached a message escaped and truncated: no terminal escape, bidi override or bell, not
    all 5000 characters, and never the key."""
    assert not any(char in text for char in "\x1b\u202e\u202c\x07\r"), text
    assert len(text) < 2500, len(text)
    assert CANARY not in text


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_client_ends_cleanly_on_every_junk_answer(client, answer, junk, x2):
    call, documented, acceptable = CLIENTS[client]
    base = junk.closed_url() if answer == "nothing-listening" else junk.url(answer)
    result, error = within(HANG, lambda: call(base, x2))
    if error is not None:
        assert isinstance(error, documented), f"{type(error).__name__}: {error}"  # never a raw exception
        clean(str(error))
        assert "127.0.0.1:" in str(error)  # it names the endpoint
    else:
        assert acceptable(result), result
        if isinstance(result, str):
            clean(result)
        if isinstance(result, LoadResult):
            for failure in result.failures:
                clean(failure)


def test_the_corpus_covers_what_the_issue_lists():
    listed = {
        "trickle-body",
        "trickle-headers",
        "endless",
        "huge",
        "wrong-content-type",
        "html",
        "text-200",
        "invalid-json",
        "wrong-shape",
        "nan",
        "error-500",
        "reset",
        "nothing-listening",
        "empty-choices",
    }
    assert listed <= set(ANSWERS)
    # NB: the router's admin calls run inside its container (docker exec), not over HTTP from here: their odd
    # answers are pinned in test_router_front.py (test_admin_failures_are_one_sentence).
    assert len(CLIENTS) * len(ANSWERS) >= 230


# ---------------------------------------------------------------------------------------------
# The bounded client itself


def test_a_trickle_is_cut_at_the_deadline_not_at_each_read(junk):
    for mode in ("trickle-body", "trickle-headers", "stall"):
        with pytest.raises(HttpError) as caught:
            fetch("GET", junk.url(mode), deadline=DEADLINE)
        assert caught.value.kind == "deadline" and f"within {DEADLINE:g} s" in str(caught.value)


def test_a_tls_handshake_that_never_ends_is_bounded_too(junk):
    with pytest.raises(HttpError) as caught:
        fetch("GET", junk.url("stall").replace("http://", "https://"), deadline=DEADLINE)
    assert caught.value.kind in ("deadline", "unreachable")


def test_bodies_past_the_cap_are_refused_declared_or_not(junk):
    for mode, said in (("huge", "1073741824 bytes"), ("endless", "goes on past"), ("huge-undeclared", "goes on past")):
        with pytest.raises(HttpError, match=said) as caught:
            fetch("GET", junk.url(mode), deadline=5, cap=256 * 1024)
        assert caught.value.kind == "too-large"


def test_messages_name_the_endpoint_and_escape_the_server(junk):
    answer = fetch("GET", junk.url("error-500") + "/v1/models?secret=1", deadline=5)
    with pytest.raises(HttpError) as caught:
        answer.ok()
    message = str(caught.value)
    assert message.startswith(f"GET {junk.url('error-500')}/v1/models: HTTP 500; it said: boom\\x1b[31m red")
    assert "\\u202eevil\\u202c\\x0d\\x0asecond line\\x07" in message and "secret" not in message
    assert message.endswith("more characters)")
    clean(message)


def test_a_key_with_a_line_break_is_refused_without_being_shown(junk):
    with pytest.raises(HttpError, match="could not be sent") as caught:
        fetch("GET", junk.url("text-200"), deadline=1, headers={"Authorization": f"Bearer {CANARY}\r\nX: y"})
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http:///nohost", "http://127.0.0.1:99999/", "127.0.0.1:8000"])
def test_urls_that_are_not_http_are_user_errors(url):
    with pytest.raises(HttpError, match="not an http:// or https:// URL"):
        fetch("GET", url, deadline=1)


def test_shapes_are_checked_with_the_path_named():
    completion = {"choices": [{"message": {"role": "assistant", "content": "ok"}}], "usage": {"n": 1.5}}
    assert pick(completion, "choices[0].message.content", str) == "ok"
    for path, kind, said in (
        ("choices[1]", dict, "choices has no item 1 (it has 1)"),
        ("choices[0].message.role", int, 'choices[0].message.role is the string "assistant"'),
        ("usage.n", int, "usage.n is a number, not an integer"),
        ("usage.missing", object, "usage has no 'missing'"),
        ("choices.x", object, "choices is a list of 1, not an object"),
    ):
        with pytest.raises(ShapeError, match="^" + re.escape(said)):
            pick(completion, path, kind)
    with pytest.raises(ShapeError, match="a boolean, not an integer"):
        pick({"n": True}, "n", int)
    with pytest.raises(ShapeError, match="not a number"):
        pick({"n": float("inf")}, "n", float)
    with pytest.raises(ShapeError, match="choices has no item 0 \\(it is empty\\)"):
        pick({"choices": []}, "choices[0].message", dict)


def test_shown_escapes_controls_bidi_and_truncates():
    # One escaper for every message (deploy.errors.escape): a backslash is harmless on a terminal and stays one.
    assert shown("a\x1b[2Jb\u202ec\u200bd\\e\nf\u00a0g") == "a\\x1b[2Jb\\u202ec\\u200bd\\e\\x0af\\xa0g"
    assert shown("x" * 300, 10) == "xxxxxxxxxx… (290 more characters)"
    assert shown("中文 ok") == "中文 ok"


class Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set = set()
    close_after: bool = False

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        Counting.connections.add(self.client_address[1])
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "a sign"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if Counting.close_after:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("close_after", [False, True], ids=["kept-alive", "closed-by-server"])
def test_the_load_generator_keeps_connections_alive_and_survives_closed_ones(close_after):
    Counting.connections, Counting.close_after = set(), close_after
    server = QuietServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        result = load(f"http://127.0.0.1:{server.server_address[1]}", "k", "m", 2, 20, [DATA_URL], deadline=5)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.requests, result.errors) == (20, 0)
    assert len(Counting.connections) == (20 if close_after else 2)  # one connection per thread when kept


def test_connections_of_a_thread_are_reused_and_closed():
    connections = Connections()
    Counting.connections, Counting.close_after = set(), False
    server = QuietServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        for _ in range(3):
            fetch(
                "POST",
                f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions",
                json_body={},
                deadline=5,
                connections=connections,
            )
        connections.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(Counting.connections) == 1


# ---------------------------------------------------------------------------------------------
# status: every Prometheus answer


def prometheus_answering(data: Any, alerts: Any = None):
    """A Prometheus whose every instant query answers `data` (the `data` of a success) and /alerts `alerts`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            inner = (
                alerts
                if "/alerts" in self.path and alerts is not None
                else {"alerts": []}
                if "/alerts" in self.path
                else data
            )
            body = json.dumps({"status": "success", "data": inner}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return QuietServer(("127.0.0.1", 0), Handler)


def vector(*values: Any) -> dict:
    return {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, v]} for v in values]}


@pytest.mark.parametrize(
    "data,shows",
    [
        (vector(), "—"),  # no series yet: a dash, not a zero
        (vector("NaN"), "—"),  # no request in the window
        (vector("not a number"), "n/a"),
        (vector(None), "n/a"),
        (vector(["1"]), "n/a"),
        (vector(True), "n/a"),
        (vector("+Inf"), "inf"),  # a quantile past the largest bucket
        (vector("1e308"), "1e+308"),  # a count as large as a float: shown as one, not as 309 digits
        ({"resultType": "vector", "result": [{"metric": {}}]}, "n/a"),  # a series without a value
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1.0]}]}, "n/a"),
        ({"resultType": "matrix", "result": []}, "n/a"),
        ({"resultType": "vector", "result": "oops"}, "n/a"),
        ({"resultType": "scalar", "result": [1.0, "3"]}, "3"),
        ([], "n/a"),
        ("a string", "n/a"),
    ],
    ids=[
        "missing",
        "nan",
        "string",
        "null",
        "list",
        "bool",
        "inf",
        "huge",
        "no-value",
        "short-pair",
        "matrix",
        "result-not-list",
        "scalar",
        "data-list",
        "data-string",
    ],
)
def test_status_survives_any_prometheus_value(x2, data, shows):
    server = prometheus_answering(data, alerts={"alerts": "not a list"})
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        text = screen(x2.name, endpoint, snapshot(Prometheus(endpoint, timeout=5), x2.monitoring.status_queries))
    finally:
        server.shutdown()
        server.server_close()
    assert f"replicas healthy    {shows}/{shows}" in text
    assert "alerts              n/a" in text and 'n/a: alerts: alerts is the string "not a list", not a list' in text
    clean(text)


def test_alert_labels_from_prometheus_are_escaped(x2):
    alerts = {"alerts": [{"labels": {"alertname": "Evil\x1b[2J\u202e", "instance": 7}, "state": "firing"}, "junk"]}
    server = prometheus_answering(vector("1"), alerts=alerts)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        text = screen(x2.name, endpoint, snapshot(Prometheus(endpoint, timeout=5), x2.monitoring.status_queries))
    finally:
        server.shutdown()
        server.server_close()
    assert "    firing   Evil\\x1b[2J\\u202e" in text and "    ?        ?" in text
    clean(text)


def test_status_has_one_deadline_for_the_whole_screen(x2):
    """Each query answers in 0.1 s, well within a per-request timeout; eleven of them do not fit one 0.35 s screen."""

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(0.1)
            body = json.dumps({"status": "success", "data": vector("1")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = QuietServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert len(x2.monitoring.status_queries) > 4
        _, error = within(HANG, lambda: snapshot(Prometheus(endpoint, timeout=0.35), x2.monitoring.status_queries))
    finally:
        server.shutdown()
        server.server_close()
    assert str(error) == f"Prometheus: GET {endpoint}/api/v1/query: no complete answer within 0.35 s"


def at(plan, endpoint: str):
    return plan.model_copy(update={"monitoring": plan.monitoring.model_copy(update={"local_endpoint": endpoint})})


def test_status_watch_shows_a_failing_prometheus_and_tries_again(junk, x2, monkeypatch):
    monkeypatch.setattr("deploy.runtime.status.time.sleep", lambda seconds: None)
    screens: list[str] = []
    status(at(x2, junk.url("html")), watch=True, out=screens.append, rounds=2, timeout=DEADLINE)
    assert len(screens) == 2
    assert all("answered HTML, not JSON (HTTP 200)" in s and "trying again in 5 s" in s for s in screens)


def test_the_status_command_exits_2_on_junk_without_a_traceback(cli, junk, x2, monkeypatch):
    monkeypatch.setattr("deploy.commands._plan", lambda ref, warn=True: at(x2, junk.url("error-500")))
    result = cli("status", "tiny-cpu-x2", "--timeout", "2")
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.startswith(f"error: Prometheus at {junk.url('error-500')} refused /api/v1/query: HTTP 500: boom")
    clean(result.err)


# ---------------------------------------------------------------------------------------------
# load: a non-completion is an error, and the command says so


@pytest.mark.parametrize("mode", ["text-200", "html", "empty-choices", "no-content-type", "error-500"])
def test_load_counts_non_completions_and_exits_1(cli, junk, mode):
    result = cli(
        "load", "--base-url", junk.url(mode), "--model", "m", "--concurrency", "1", "--requests", "2", "--timeout", "2"
    )
    assert result.code == 1 and "Traceback" not in result.err
    assert "× " in result.out  # what the failed requests got
    clean(result.out)


def test_load_without_a_model_to_pick_exits_2(cli, junk):
    result = cli("load", "--base-url", junk.url("text-200"), "--requests", "1", "--timeout", "2")
    assert (result.code, result.err) == (
        2,
        f"error: cannot pick a model (pass --model): GET {junk.url('text-200')}"
        f"/v1/models: answered 'text/plain', not JSON (HTTP 200); it said: OK\n",
    )


@pytest.mark.parametrize(
    "args,said",
    [
        (["--concurrency", "1,x"], "--concurrency takes positive whole numbers"),
        (["--concurrency", "0"], "--concurrency takes positive whole numbers"),
        (["--requests", "0"], "--requests and --timeout must be positive"),
        (["--timeout", "0"], "--requests and --timeout must be positive"),
    ],
)
def test_load_options_out_of_range_are_user_errors(cli, args, said):
    result = cli("load", "--base-url", "http://127.0.0.1:9", "--model", "m", *args)
    assert result.code == 2 and said in result.err and "Traceback" not in result.err


# ---------------------------------------------------------------------------------------------
# smoke: the key in the environment, a deadline on the wait and on the whole run


@pytest.fixture
def with_openai(monkeypatch):
    """`run_suite` checks the smoke extra is installed; this venv may lack openai, which the cases here never reach."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: real("json") if name == "openai" else real(name, *a)
    )


def fake_pytest(monkeypatch, seen: dict, returncode: int = 0, raises: BaseException | None = None) -> None:
    def run(command, **kwargs):
        seen["command"], seen["env"], seen["timeout"] = command, kwargs["env"], kwargs["timeout"]
        if raises is not None:
            raise raises
        junit = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--junitxml="))
        Path(junit).write_text(
            '<testsuites><testsuite><testcase classname="smoke_tests.test_health" '
            'name="test_health_is_200" time="0.1"/></testsuite></testsuites>'
        )
        return subprocess.CompletedProcess(command, returncode, "1 passed\x1b[2J", "")

    monkeypatch.setattr("deploy.runtime.smoke.subprocess.run", run)


def test_smoke_hands_the_key_over_in_the_environment_only(cli, monkeypatch, with_openai):
    seen: dict = {}
    fake_pytest(monkeypatch, seen)
    result = cli("smoke", "--base-url", "http://127.0.0.1:9", "--api-key", CANARY)
    assert result.code == 0
    assert not any(CANARY in arg for arg in seen["command"]) and "--api-key" not in seen["command"]
    assert seen["env"]["SMOKE_API_KEY"] == CANARY
    assert seen["command"][-4:] == ["--ready-timeout", "30", "--base-url", "http://127.0.0.1:9"]
    assert seen["timeout"] == 30 + 1800


def test_smoke_of_a_profile_waits_its_load_budget_and_passes_its_key_by_environment(
    cli, monkeypatch, with_openai, tmp_path
):
    from deploy.runtime.stack import Stack

    seen: dict = {}
    fake_pytest(monkeypatch, seen)
    plan = resolve(load_profile("tiny-cpu"))
    monkeypatch.setenv(plan.api_key_source, CANARY)
    monkeypatch.setattr("deploy.commands._stack", lambda ref, warn=True: Stack(plan, tmp_path))
    monkeypatch.setattr(Stack, "gateway", lambda self: "172.17.0.1")
    assert cli("smoke", "tiny-cpu").code == 0
    assert not any(CANARY in arg for arg in seen["command"]) and seen["env"]["SMOKE_API_KEY"] == CANARY
    budget = plan.health.start_period_seconds
    assert seen["command"][seen["command"].index("--ready-timeout") + 1] == f"{budget:g}"
    assert seen["timeout"] == budget + 1800


@pytest.mark.parametrize(
    "passthrough,env,expected",
    [
        ([], {}, (["--ready-timeout", "30"], 30.0)),
        (["--ready-timeout", "5"], {}, ([], 5.0)),
        (["-k", "chat", "--ready-timeout=7"], {}, ([], 7.0)),
        ([], {"SMOKE_READY_TIMEOUT": "9"}, ([], 9.0)),
        (["--ready-timeout", "soon"], {}, ([], 30.0)),  # the suite itself refuses it, with its own message
    ],
)
def test_the_users_own_ready_timeout_wins(passthrough, env, expected):
    from deploy.runtime.smoke import ready_timeout

    assert ready_timeout(passthrough, env, 30.0) == expected


def test_a_smoke_run_past_its_deadline_is_stopped_with_a_user_error(cli, monkeypatch, with_openai):
    seen: dict = {}
    fake_pytest(monkeypatch, seen, raises=subprocess.TimeoutExpired(["pytest"], 1830, output=b"case 1\x1b[2J\n"))
    result = cli("smoke", "--base-url", "http://127.0.0.1:9")
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.startswith(
        "error: the smoke suite did not finish within 1830 s (30 s for /health, 1800 s for "
        "the cases) and was stopped; its last output:\ncase 1\\x1b[2J"
    )


def test_the_smoke_output_shown_on_failure_is_escaped(cli, monkeypatch, with_openai):
    seen: dict = {}
    fake_pytest(monkeypatch, seen, returncode=1)
    result = cli("smoke", "--base-url", "http://127.0.0.1:9")
    assert result.code == 1 and "1 passed\\x1b[2J" in result.err and "\x1b" not in result.err


@pytest.mark.slow
def test_smoke_with_nothing_listening_fails_within_its_wait(cli, junk, with_openai):
    """The real suite in its child pytest: every case errors on the /health wait, which ends at --ready-timeout."""
    (result, error) = within(
        120, lambda: cli("smoke", "--base-url", junk.closed_url(), "--api-key", CANARY, "--", "--ready-timeout", "1")
    )
    assert error is None and result.code == 1
    assert "not healthy after 1 s" in result.err and "connection refused" in result.err.lower()
    assert CANARY not in result.out + result.err


def test_the_health_wait_stops_at_its_deadline_whatever_the_server_does(junk):
    for base in (junk.closed_url(), junk.url("stall"), junk.url("error-500")):
        _, error = within(HANG, functools.partial(wait_ready, base, None, 0.5, 5.0, interval=0.1))
        assert isinstance(error, HttpFailureError) and "not healthy after 0.5 s" in str(error)
        clean(str(error))


# ---------------------------------------------------------------------------------------------
# doctor: odd answers from the Docker daemon and odd model files are verdicts, not tracebacks


@pytest.mark.parametrize(
    "content,said",
    [
        (b"{not json", "is not readable JSON (JSONDecodeError)"),
        (b"\xff\xfe\x00binary", "is not readable JSON (UnicodeDecodeError)"),
        (b"[1, 2]", "is not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "is not readable JSON (RecursionError)"),
        (b" " * (5 * 1024 * 1024), "is over 4 MiB"),
    ],
    ids=["invalid", "binary", "list", "deep", "huge"],
)
def test_an_odd_model_config_is_a_warning(tmp_path, content, said):
    from deploy.runtime.preflight import memory_check, read_model_config

    path = tmp_path / "config.json"
    path.write_bytes(content)
    config, problem = read_model_config(path)
    assert (config, problem) == (None, said)
    check = memory_check(resolve(load_profile("minicpm-v-2_6")), [], config, problem)
    assert (check.verdict, check.detail) == ("warn", f"model config.json {said}: no estimate")


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"hidden_size": "wide", "num_hidden_layers": 2, "num_attention_heads": 2},
        {"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 0},
        {"text_config": [1], "hidden_size": 8},
    ],
    ids=["empty", "string-size", "zero-heads", "text-config-list"],
)
def test_a_model_config_of_the_wrong_shape_is_a_warning(config):
    from deploy.runtime.preflight import memory_check

    check = memory_check(resolve(load_profile("minicpm-v-2_6")), [], config)
    assert check.verdict == "warn" and check.detail.startswith("model config.json lacks what the estimate needs (")


def test_odd_daemon_facts_are_judged_and_escaped():
    from deploy.runtime.preflight import HostFacts, judge

    plan = resolve(load_profile("minicpm-v-2_6"))
    found = judge(
        plan,
        HostFacts(docker_info={"ServerVersion": "29\x1b[2J\u202e", "Runtimes": "nvidia"}, compose_version="2.40.3\x07"),
    )
    text = "\n".join(f"{c.name}: {c.detail}" for c in found)
    assert "version 29\\x1b[2J\\u202e" in text and "compose v2: 2.40.3\\x07" in text
    clean(text)


@pytest.mark.parametrize(
    "info,daemon",
    [
        (lambda: time.sleep(5), "fail"),
        (lambda: ["not", "a", "dict"], "fail"),
        (lambda: 1 / 0, "fail"),
        (lambda: {"ServerVersion": "29.0"}, "ok"),
    ],
    ids=["hangs", "not-an-object", "raises", "answers"],
)
def test_doctor_reads_the_daemon_within_its_deadline(tmp_path, monkeypatch, info, daemon):
    from deploy.runtime.docker import Compose, DockerDaemon
    from deploy.runtime.preflight import gather, judge
    from deploy.runtime.process import Completed

    class Daemon(DockerDaemon):
        def __init__(self) -> None:
            pass

        def info(self):
            return info()

    monkeypatch.setattr("deploy.runtime.preflight.docker_cli", lambda: "/usr/bin/docker")
    monkeypatch.setattr("deploy.runtime.docker.docker_cli", lambda: "/usr/bin/docker")
    plan = resolve(load_profile("tiny-cpu"))
    compose = Compose(tmp_path, lambda args, **kwargs: Completed(list(args), 0, "2.40.3\n"))
    facts, error = within(HANG, lambda: gather(plan, compose, Daemon(), info_deadline=DEADLINE))
    assert error is None
    assert next(c for c in judge(plan, facts) if c.name == "docker daemon").verdict == daemon
