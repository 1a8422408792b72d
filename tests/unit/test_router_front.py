"""The router's front: its allowlist against vLLM's router's own route table, the haproxy configuration it
renders, the launcher that starts the front and the router and keeps them together, and the admin client
that reaches the router inside its container (the real thing: tests/integration/test_router.py)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from deploy.errors import UserError
from deploy.facts import device_facts, route_table
from deploy.plan import resolve
from deploy.plan.router import CLIENT_GROUPS, KEY_HASH_VARIABLE, KEY_VARIABLE, PUBLIC_ROUTES, front_routes
from deploy.render import render
from deploy.runtime.net import free_port
from deploy.runtime.process import Completed
from deploy.runtime.router import ADMIN_PROGRAM, RouterClient
from deploy.spec import load_profile
from deploy.targets import compose_plan
from tests.conftest import REPO, module_from_file

LAUNCHER = REPO / "deploy" / "assets" / "router_launch.py"


def launcher_module():
    return module_from_file("router_launch", LAUNCHER)


def table_routes(*groups: str) -> set[tuple[str, str]]:
    return {(r["method"], r["path"]) for g in groups for r in route_table()["groups"][g]}


# The allowlist against the router's table


def test_the_table_is_the_pinned_routers():
    assert route_table()["vllm_router_version"] == device_facts()["router"]["version"]
    assert set(route_table()["groups"]) == {"protected", "public", "admin", "worker"}


def test_the_allowlist_is_client_routes_only_and_the_public_ones_are_few():
    allowed = {(r.method, r.path) for r in front_routes()}
    assert allowed <= table_routes(*CLIENT_GROUPS)
    assert not allowed & table_routes("admin", "worker")
    assert ("POST", "/remove_worker") in table_routes("admin") and ("POST", "/add_worker") in table_routes("admin")
    assert (
        {(r.method, r.path) for r in front_routes() if r.public}
        == PUBLIC_ROUTES
        == {("GET", "/readiness"), ("GET", "/liveness")}
    )
    assert ("POST", "/v1/chat/completions") in allowed and ("GET", "/v1/models") in allowed


def test_an_allowlist_entry_the_table_lacks_is_refused(monkeypatch):
    import deploy.plan.router as router

    monkeypatch.setattr(router, "CLIENT_ROUTES", [*router.CLIENT_ROUTES, ("POST", "/remove_worker")])
    with pytest.raises(RuntimeError, match="POST /remove_worker"):
        router.front_routes()
    monkeypatch.setattr(router, "CLIENT_ROUTES", [("GET", "/v1/responses/{response_id}")])
    with pytest.raises(RuntimeError, match="response_id"):
        router.front_routes()


def test_the_table_script_reads_the_route_groups_of_server_rs(tmp_path):
    script = module_from_file("vllm_router_routes", REPO / "scripts" / "vllm_router_routes.py")
    source = """
pub fn build_app_with_wasm_middleware(app_state: Arc<AppState>) -> Router {
    let mut protected_routes = Router::new()
        .route("/generate", post(generate))
        .route(
            "/v1/chat/completions",
            if app_state.x.is_some() { post(a) } else { post(b) },
        )
        .route("/v1/responses/{id}", get(g).delete(d));
    let admin_routes = Router::new()
        .route("/add_worker", post(add_worker))
        .route("/new_admin_thing", get(thing));
}"""
    assert script.routes(source) == {
        "protected": [
            {"method": "POST", "path": "/generate"},
            {"method": "POST", "path": "/v1/chat/completions"},
            {"method": "DELETE", "path": "/v1/responses/{id}"},
            {"method": "GET", "path": "/v1/responses/{id}"},
        ],
        "admin": [{"method": "POST", "path": "/add_worker"}, {"method": "GET", "path": "/new_admin_thing"}],
    }


# The rendered front


def front_config(ref: str = "tiny-cpu-x2") -> str:
    plan = resolve(load_profile(ref))
    assert plan.router is not None
    return render(plan)[f"compose/{plan.name}/router-haproxy.cfg"]


def test_the_front_config_allows_exactly_the_allowlist_and_holds_no_key():
    text = front_config()
    plan = resolve(load_profile("tiny-cpu-x2"))
    assert plan.router is not None
    for route in plan.router.front_routes:
        assert f'path -m str "{route.path}"' in text
    for _method, path in table_routes("admin", "worker") | (
        table_routes(*CLIENT_GROUPS) - {(r.method, r.path) for r in plan.router.front_routes}
    ):
        assert f'"{path}"' not in text, path
    assert f'"${{{KEY_HASH_VARIABLE}}}"' in text and "Bearer" in text
    assert "bind :8000" in text and "server router 127.0.0.1:8001" in text
    # The router's own request timeout answers before the front gives up on it.
    assert f"timeout server {plan.router.front_timeout_seconds}s" in text
    assert plan.router.front_timeout_seconds > 600
    # Everything else is 404, before any key is looked at.
    lines = [line.strip() for line in text.splitlines()]
    denial = next(i for i, line in enumerate(lines) if line.startswith("http-request return status 404"))
    assert denial < next(i for i, line in enumerate(lines) if line.startswith("http-request return status 401"))


def test_the_image_name_follows_the_front_config():
    profile = load_profile("tiny-cpu-x2")
    plan = resolve(profile)
    assert plan.router is not None
    slower = resolve(
        profile.model_copy(update={"router": profile.router.model_copy(update={"request_timeout_seconds": 900})})
    )
    assert slower.router is not None
    assert slower.router.front_timeout_seconds == 930 and slower.router.image != plan.router.image


# The launcher


def test_the_launcher_and_the_plan_agree():
    launcher = launcher_module()
    plan = resolve(load_profile("tiny-cpu-x2"))
    assert plan.router is not None
    assert (launcher.KEY_VARIABLE, launcher.KEY_HASH_VARIABLE) == (KEY_VARIABLE, KEY_HASH_VARIABLE)
    assert plan.router.api_key_variable == KEY_VARIABLE and plan.router.key_hash_variable == KEY_HASH_VARIABLE
    # What haproxy computes from the header: sha2(256),hex,lower of "Bearer <key>".
    assert launcher.key_digest("sk-1") == hashlib.sha256(b"Bearer sk-1").hexdigest()
    argv = compose_plan(plan).router_argv
    assert argv is not None
    front, router = launcher.split_argv(plan.router.entrypoint[2:] + argv)
    assert front == ["/usr/sbin/haproxy", "-db", "-f", plan.router.front_config]
    assert router == argv


FRONT = """\
import json, os, signal, sys, time
record = sys.argv[1]
def soft(*_):
    open(record + ".stopped", "w").write("SIGUSR1")
    sys.exit(0)
signal.signal(signal.SIGUSR1, soft)
json.dump(dict(os.environ), open(record + ".tmp", "w"))
os.rename(record + ".tmp", record)
exit_code = int(sys.argv[2])
if exit_code >= 0:
    time.sleep(1)
    sys.exit(exit_code)
time.sleep(60)
"""


def start_launcher(tmp_path: Path, front_exit: int, router_host: str = "127.0.0.1") -> tuple[subprocess.Popen, Path]:
    (tmp_path / "front.py").write_text(FRONT)
    record = tmp_path / "front.json"
    # NB: a worker no one serves: the router waits for it (as before its engines are up) and does not bind.
    router_args = [
        "--worker-urls",
        "http://127.0.0.1:9",
        "--host",
        router_host,
        "--port",
        str(free_port()),
        "--worker-startup-timeout-secs",
        "60",
    ]
    env = {**os.environ, KEY_VARIABLE: "sk-secret"}
    process = subprocess.Popen(
        [
            sys.executable,
            str(LAUNCHER),
            sys.executable,
            str(tmp_path / "front.py"),
            str(record),
            str(front_exit),
            "--",
            *router_args,
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, record


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_the_front_gets_the_keys_digest_never_the_key(tmp_path):
    process, record = start_launcher(tmp_path, front_exit=-1)
    try:
        wait_for(record)
        env = json.loads(record.read_text())
        assert KEY_VARIABLE not in env and "sk-secret" not in json.dumps(env)
        assert env[KEY_HASH_VARIABLE] == hashlib.sha256(b"Bearer sk-secret").hexdigest()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def test_sigterm_stops_both_gracefully(tmp_path):
    process, record = start_launcher(tmp_path, front_exit=-1)
    wait_for(record)
    time.sleep(1.5)  # the router child is up (it waits for its worker)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert (tmp_path / "front.json.stopped").read_text() == "SIGUSR1"  # haproxy's soft stop
    assert "stopping the front and the router gracefully" in err


def test_a_front_that_exits_ends_the_container_non_zero(tmp_path):
    started = time.monotonic()
    process, _ = start_launcher(tmp_path, front_exit=3)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 3 and "the front exited by itself (exit 3)" in err, err
    assert time.monotonic() - started < 15  # the router was stopped, not waited for


def test_a_router_that_exits_ends_the_container_non_zero_and_it_must_listen_on_loopback(tmp_path):
    process, record = start_launcher(tmp_path, front_exit=-1, router_host="0.0.0.0")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1, err
    assert "must listen on 127.0.0.1" in err and "the router exited by itself (exit 1)" in err
    assert record.exists()


def test_no_key_no_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != KEY_VARIABLE}
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "true", "--", "--host", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and "refusing to start an open router" in done.stderr


# The admin client


def client(answers: list[Completed], calls: list) -> RouterClient:
    def runner(args, **kwargs):
        calls.append(list(args))
        return answers.pop(0)

    return RouterClient(
        "http://127.0.0.1:1", ["docker", "exec", "c0ffee"], "/opt/router/bin/python", "http://127.0.0.1:8001", runner
    )


def test_admin_calls_run_inside_the_container():
    calls: list = []
    ok = Completed([], 0, json.dumps({"status": 200, "body": "ok"}) + "\n")
    router = client(
        [ok, Completed([], 0, json.dumps({"status": 200, "body": '{"urls": ["http://vllm-0:8000"]}'}))], calls
    )
    router.remove("http://vllm-0:8000")
    assert router.workers() == ["http://vllm-0:8000"]
    assert calls[0][:6] == ["docker", "exec", "c0ffee", "/opt/router/bin/python", "-c", ADMIN_PROGRAM]
    assert calls[0][6:] == ["POST", "http://127.0.0.1:8001/remove_worker?url=http%3A%2F%2Fvllm-0%3A8000"]
    assert calls[1][6:] == ["GET", "http://127.0.0.1:8001/list_workers"]


@pytest.mark.parametrize(
    "answer,message",
    [
        (Completed([], 0, json.dumps({"status": 400, "body": "no such worker"})), "answered POST /add_worker with 400"),
        (Completed([], 0, "Traceback …"), "no answer of the expected shape"),
        (Completed([], 1, "", "Error: No such container: c0ffee"), "No such container"),
    ],
)
def test_admin_failures_are_one_sentence(answer, message):
    with pytest.raises(UserError, match=message):
        client([answer], []).add("http://vllm-0:8000")


def test_the_admin_program_speaks_to_a_real_server():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(("POST", self.path, self.headers.get("Content-Length")))
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"x" * 100_000)

        def do_GET(self):
            seen.append(("GET", self.path, None))
            body = b'{"urls": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        router = RouterClient("http://127.0.0.1:1", [], sys.executable, f"http://127.0.0.1:{server.server_port}")
        assert router.workers() == []
        answer = router.admin("POST", "/remove_worker", "url=http%3A%2F%2Fx")
        assert answer.status == 404 and len(answer.body) == 65536  # capped
    finally:
        server.shutdown()
    assert seen == [("GET", "/list_workers", None), ("POST", "/remove_worker?url=http%3A%2F%2Fx", "0")]


def test_compose_and_kubernetes_name_the_same_front():
    plan = resolve(load_profile("tiny-cpu-x2"))
    assert plan.router is not None
    files = render(plan)
    service = yaml.safe_load(files["k8s/tiny-cpu-x2/router-service.yaml"])
    ports = [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]]
    assert ports == [("http", "http"), ("metrics", "metrics")]
    compose = yaml.safe_load(files["compose/tiny-cpu-x2/compose.yaml"])["services"]["router"]
    deployment = yaml.safe_load(files["k8s/tiny-cpu-x2/router-deployment.yaml"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert compose["entrypoint"] == container["command"] == plan.router.entrypoint
    assert compose["ports"] == ["127.0.0.1:8010:8000"]
    # The Dockerfile puts the rendered front configuration where the entrypoint reads it.
    assert f"COPY router-haproxy.cfg {plan.router.front_config}" in files["compose/tiny-cpu-x2/Dockerfile.router"]
