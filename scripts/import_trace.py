"""Which installed distributions does a served vLLM (CPU) use? Trace both of its processes, then table the venv.

    PYTHONPATH=$PWD .venv/bin/python scripts/import_trace.py ENGINE_VENV [--model DIR] [--json OUT]
    PYTHONPATH=$PWD .venv/bin/python scripts/import_trace.py ENGINE_VENV --ready-only --runs 3
    PYTHONPATH=$PWD .venv/bin/python scripts/import_trace.py ENGINE_VENV --bytecode-dirs deploy/assets/engine-bytecode-dirs.txt

Evidence for deploy/assets/engine-venv.sh's diet step (issue #22): a distribution that neither vLLM's API server
nor its engine core (a separate, spawned process) loads while serving can leave the image.

1. A `sitecustomize.py` on PYTHONPATH (in a scratch folder, beside the edge module) is imported by every Python
   process of the server. Every 2 s, at exit and after a fork it writes, per PID, the file of every module in
   `sys.modules` and every file in `/proc/self/maps` (shared libraries loaded by dlopen, e.g. opencv's .libs).
   The periodic write means even a process ended by a signal that skips atexit leaves its trace.
2. The server is the tiny-cpu profile's `vllm serve` exactly as tests/integration/test_engine.py starts it (the
   plan's flags, the edge middleware, the key in VLLM_API_KEY, a media allowlist of 127.0.0.1, loopback port),
   on the tiny model (deploy/assets/tiny_model.py, built into a scratch folder unless --model names one).
   PYTHONDONTWRITEBYTECODE=1, as in the image, whose venv is read-only to its user: no .pyc is written at run time.
3. It is sent: the smoke suite (smoke_tests/, with the seed's two snippets: URL image and base64 image), the seed
   shapes once more with two images (no video), a text-only completion and chat, a streamed chat, /health,
   /metrics, /version, /v1/models, and every route of the server's own table (tests/tools/routes.py: empty bodies).
4. SIGINT to the server (vLLM shuts its engine core down), then a table: each distribution of the venv, its
   size (its RECORD's files), and which process loaded any file of it. Data files opened with open() (not
   modules, not shared libraries) are not seen: check a removal's data use by reading the code.

--bytecode-dirs FILE: the folders (under site-packages) of every module any process loaded, the list the image
build compiles the bytecode of (deploy/assets/engine-venv.sh); regenerate it with each vLLM or torch release.

--ready-only: no tracer and no requests; time from start to /health 200, --runs times (median printed), to compare
venvs (e.g. with and without compiled bytecode).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from deploy.plan import resolve
from deploy.plan.engine import host_command, host_environment
from deploy.render import write_generation_config
from deploy.runtime.net import free_port, wait_for_http
from deploy.runtime.smoke import plan_options, run_suite
from deploy.spec import load_profile
from deploy.spec.variant import write_variant

REPO = Path(__file__).resolve().parent.parent
READY_DEADLINE_SECONDS = 300
STOP_DEADLINE_SECONDS = 60
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

TRACER = '''\
"""Import tracer (scripts/import_trace.py): sys.modules' files and mapped files, per PID, into $IMPORT_TRACE_DIR."""
import atexit
import json
import os
import sys
import threading
import time

_DIR = os.environ.get("IMPORT_TRACE_DIR")


def _dump():
    modules = {}
    for name, module in list(sys.modules.items()):
        modules[name] = getattr(module, "__file__", None)
    mapped = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    mapped.add(parts[5].strip())
    except OSError:
        pass
    try:
        with open("/proc/self/cmdline", "rb") as cmdline:  # NB: vLLM retitles its processes (VLLM::EngineCore)
            title = cmdline.read().replace(b"\\0", b" ").decode(errors="replace").strip()
    except OSError:
        title = ""
    path = os.path.join(_DIR, f"{os.getpid()}.json")
    with open(path + ".tmp", "w") as out:
        json.dump({"pid": os.getpid(), "title": title, "modules": modules, "mapped": sorted(mapped)}, out)
    os.replace(path + ".tmp", path)


def _loop():
    while True:
        time.sleep(2)
        try:
            _dump()
        except Exception:
            pass


def _start():
    threading.Thread(target=_loop, daemon=True, name="import-trace").start()


if _DIR:
    atexit.register(_dump)
    os.register_at_fork(after_in_child=_start)
    _start()
'''

# Run by the engine venv's python: every distribution, its files (absolute), their size.
DISTRIBUTIONS = """
import importlib.metadata as md, json, os
out = []
for dist in md.distributions():
    files = []
    for f in dist.files or []:
        path = os.path.realpath(dist.locate_file(f))
        if os.path.isfile(path):
            files.append((path, os.path.getsize(path)))
    out.append({"name": dist.metadata["Name"], "files": files})
print(json.dumps(out))
"""


def build_model(python: Path, scratch: Path) -> Path:
    out = scratch / "tiny-vlm"
    subprocess.run(
        [str(python), str(REPO / "deploy" / "assets" / "tiny_model.py"), str(out)],
        check=True,
        env={**os.environ, **OFFLINE},
        cwd=scratch,
        stdout=subprocess.DEVNULL,
    )
    return out


class Server:
    """The tiny-cpu plan's `vllm serve` as a host process, as tests/integration/test_engine.py starts it."""

    def __init__(self, venv: Path, model: Path, scratch: Path, trace_dir: Path | None, bytecode: bool = True) -> None:
        variant = write_variant("tiny-cpu", scratch / "profile.yaml", {"media": {"allowed-domains": ["127.0.0.1"]}})
        self.plan = resolve(load_profile(str(variant)))
        self.key = "sk-" + secrets.token_hex(16)
        self.log = scratch / "vllm.log"
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        generation = write_generation_config(self.plan, scratch / "generation")
        command = host_command(self.plan, str(venv / "bin" / "vllm"), str(model), "127.0.0.1", port, generation)
        env = {
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            **host_environment(self.plan, str(scratch)),
            "VLLM_API_KEY": self.key,
            "PYTHONDONTWRITEBYTECODE": "1",  # NB: as in the image, whose venv its user cannot write
        }
        if not bytecode:
            # NB: Python then reads .pyc files only under this (empty) folder: the venv as if it had none.
            (scratch / "no-pyc").mkdir()
            env["PYTHONPYCACHEPREFIX"] = str(scratch / "no-pyc")
        if trace_dir is not None:
            tracer = scratch / "tracer"
            tracer.mkdir()
            (tracer / "sitecustomize.py").write_text(TRACER)
            env["PYTHONPATH"] = f"{tracer}:{env['PYTHONPATH']}"
            env["IMPORT_TRACE_DIR"] = str(trace_dir)
        started = time.monotonic()
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            wait_for_http(f"{self.base_url}/health", READY_DEADLINE_SECONDS, alive=lambda: self.process.poll() is None)
        except (RuntimeError, TimeoutError):
            self.stop()
            sys.exit(f"vLLM not ready:\n{self.log.read_text(errors='replace')[-6000:]}")
        self.ready_seconds = time.monotonic() - started

    def stop(self) -> float:
        """SIGINT (vLLM stops its engine core and exits); the session we started is killed after a deadline."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the process group this script started
            self.process.wait()
        return time.monotonic() - started


def exercise(server: Server) -> dict[str, int]:
    """Requests beyond the smoke suite; each must answer 200."""
    from smoke_tests.image_server import generated_jpeg
    from smoke_tests.support import data_url, user_message
    from tests.tools import routes

    auth = {"Authorization": f"Bearer {server.key}"}
    model = server.plan.served_model_name
    image = data_url(generated_jpeg())
    stops = {"stop_token_ids": [151645, 151643]}
    calls: list[tuple[str, str, dict | None]] = [
        ("GET", "/health", None),
        ("GET", "/metrics", None),
        ("GET", "/version", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/completions", {"model": model, "prompt": "Hello, my name is", "max_tokens": 8}),
        (
            "POST",
            "/v1/chat/completions",
            {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]},
        ),
        ("POST", "/v1/chat/completions", {"model": model, "max_tokens": 8, "messages": user_message(image), **stops}),
        ("POST", "/v1/chat/completions", {"model": model, "max_tokens": 8, "messages": user_message(image, image)}),
        (
            "POST",
            "/v1/chat/completions",
            {"model": model, "max_tokens": 8, "stream": True, "messages": user_message(image)},
        ),
    ]
    answers = {}
    for method, path, body in calls:
        resp = requests.request(method, server.base_url + path, json=body, headers=auth, timeout=120)
        resp.raise_for_status()
        answers[f"{method} {path}" + (" (stream)" if body and body.get("stream") else "")] = resp.status_code
    found = routes.report(server.base_url, server.key)
    answers["routes of the server's own table (called with the key)"] = found["routes"]
    return answers


def read_traces(trace_dir: Path) -> dict[int, dict]:
    traces = {}
    for path in trace_dir.glob("*.json"):
        data = json.loads(path.read_text())
        traces[data["pid"]] = data
    return traces


def role(trace: dict) -> str:
    """api: the API server; engine: the engine core (vLLM titles it VLLM::EngineCore); other: helpers (vLLM's model
    inspection subprocess, multiprocessing's resource tracker)."""
    title = trace["title"]
    if "EngineCore" in title or "VLLM::Worker" in title:
        return "engine"
    if " serve " in f" {title} ":
        return "api"
    return "other"


def table(python: Path, traces: dict[int, dict]) -> list[dict]:
    dists = json.loads(
        subprocess.run([str(python), "-c", DISTRIBUTIONS], capture_output=True, text=True, check=True).stdout
    )
    owner = {}
    for dist in dists:
        for path, _ in dist["files"]:
            owner[path] = dist["name"]
    used: dict[str, set[str]] = {}
    for trace in traces.values():
        files = [f for f in trace["modules"].values() if f] + trace["mapped"]
        for f in files:
            name = owner.get(os.path.realpath(f))
            if name:
                used.setdefault(name, set()).add(role(trace))
    rows = [
        {
            "name": d["name"],
            "mb": round(sum(size for _, size in d["files"]) / 2**20, 1),
            "loaded_by": sorted(used.get(d["name"], ())),
        }
        for d in dists
    ]
    return sorted(rows, key=lambda r: -float(r["mb"]))


BYTECODE_DIRS_HEADER = """\
# The folders under site-packages that a served vLLM (CPU) loads modules from: the image build compiles the
# bytecode of these only (deploy/assets/engine-venv.sh). Written by scripts/import_trace.py --bytecode-dirs from a
# traced smoke run (the smoke suite, the seed's snippets, text, streaming, every route); regenerate it with each
# vLLM or torch release. "." is site-packages itself.
"""


def bytecode_dirs(modules: list[str]) -> str:
    """The list's text: the folder of every loaded Python module (not extension modules: nothing to compile) under a
    site-packages, relative to it, sorted."""
    loaded = [m.split("/site-packages/", 1)[1] for m in modules if "/site-packages/" in m and m.endswith(".py")]
    folders = {os.path.dirname(m) or "." for m in loaded}
    return BYTECODE_DIRS_HEADER + "".join(f"{folder}\n" for folder in sorted(folders))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv", type=Path, help="the engine venv (deploy/assets/engine-venv.sh VENV)")
    parser.add_argument("--model", type=Path, help="the tiny model's folder (built into a scratch folder if absent)")
    parser.add_argument("--json", type=Path, help="write the table, traces' summary and figures here")
    parser.add_argument("--bytecode-dirs", type=Path, help="write the folders of the loaded modules here")
    parser.add_argument("--ready-only", action="store_true", help="only time start to /health 200, no tracer")
    parser.add_argument("--runs", type=int, default=1, help="with --ready-only: how many starts")
    parser.add_argument(
        "--alternate-bytecode",
        action="store_true",
        help="with --ready-only: alternate starts with the venv's .pyc files and without them (PYTHONPYCACHEPREFIX)",
    )
    args = parser.parse_args()
    venv = args.venv.resolve()
    python = venv / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="import-trace-") as tmp:
        scratch = Path(tmp)
        model = args.model.resolve() if args.model else build_model(python, scratch)
        if args.ready_only:
            times: dict[str, list[float]] = {}
            arms = ["with .pyc", "without .pyc"] if args.alternate_bytecode else ["as is"]
            for run in range(args.runs):
                for arm in arms:
                    run_dir = scratch / f"run{run}-{arm.replace(' ', '').replace('.', '')}"
                    run_dir.mkdir()
                    server = Server(venv, model, run_dir, None, bytecode=arm != "without .pyc")
                    times.setdefault(arm, []).append(round(server.ready_seconds, 2))
                    server.stop()
                    print(f"run {run + 1} ({arm}): ready in {times[arm][-1]} s", flush=True)
            print(json.dumps({arm: {"ready_seconds": t, "median": statistics.median(t)} for arm, t in times.items()}))
            return 0
        trace_dir = scratch / "trace"
        trace_dir.mkdir()
        (scratch / "serve").mkdir()
        server = Server(venv, model, scratch / "serve", trace_dir)
        print(f"ready in {server.ready_seconds:.1f} s", flush=True)
        try:
            options = plan_options(server.plan, server.base_url, "127.0.0.1")
            code, cases, output = run_suite(
                [*options, "--redirect-host", "localhost", "--server-log", str(server.log)],
                key=server.key,
                ready=60,
            )
            passed = sum(c.status == "passed" for c in cases)
            print(f"smoke suite: exit {code}, {passed}/{len(cases)} passed", flush=True)
            if code != 0:
                print(output[-6000:], file=sys.stderr)
            answers = exercise(server)
            print(f"extra requests: {answers}", flush=True)
        finally:
            stopped = server.stop()
            time.sleep(3)  # NB: the engine core may outlive its parent by a moment; its atexit writes then
        traces = read_traces(trace_dir)
        roles = {pid: role(t) for pid, t in traces.items()}
        print(f"stopped in {stopped:.1f} s; traces: {roles}")
        rows = table(python, traces)
        print(f"{'distribution':32} {'MB':>7}  loaded by")
        for row in rows:
            print(f"{row['name']:32} {row['mb']:7.1f}  {','.join(row['loaded_by']) or '-'}")
        modules = sorted({f for t in traces.values() for f in t["modules"].values() if f})
        if args.bytecode_dirs:
            args.bytecode_dirs.write_text(bytecode_dirs(modules))
        if args.json:
            summary = {
                "ready_seconds": round(server.ready_seconds, 2),
                "smoke": {"exit": code, "cases": {c.name: c.status for c in cases}},
                "extra": answers,
                "processes": {
                    str(pid): {"role": roles[pid], "title": t["title"], "modules": len(t["modules"])}
                    for pid, t in traces.items()
                },
                "modules": modules,
                "mapped": sorted({f for t in traces.values() for f in t["mapped"]}),
                "distributions": rows,
            }
            args.json.write_text(json.dumps(summary, indent=1))
        return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
