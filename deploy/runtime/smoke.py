"""Run the smoke suite (smoke_tests/, real pytest) against an endpoint and summarise it as a table.

The suite knows only an endpoint and plain options; everything it needs from a profile is handed over
here, derived from the Plan (the one place smoke defaults come from).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploy.errors import UserError, shown, shown_lines
from deploy.plan import Plan

if TYPE_CHECKING:
    from deploy.runtime.stack import Stack

# NB: `smoke --base-url URL` names a server said to be running: a short wait. `smoke PROFILE` waits as long as
# the profile gives its model to load (plan.health.start_period_seconds, from kubernetes.load-budget-seconds).
BASE_URL_READY_SECONDS = 30.0
# The cases themselves, after the wait for /health: about 25, each request bounded by the suite's
# --request-timeout (60 s); a healthy CPU stack runs them all in a few minutes.
CASES_SECONDS = 1800.0
KEY_VARIABLE = "SMOKE_API_KEY"  # the suite's first key variable (smoke_tests/settings.py)
READY_VARIABLE = "SMOKE_READY_TIMEOUT"


@dataclass(frozen=True)
class CaseResult:
    name: str
    status: str  # passed | failed | error | skipped
    seconds: float
    message: str


def plan_options(plan: Plan, endpoint: str, image_server_host: str | None) -> list[str]:
    """Suite options for a deployment of `plan` at `endpoint`; a local image server on `image_server_host`
    (an address the server can reach) instead of the internet image when given. The key is not an option:
    `run_suite` hands it over in the environment."""
    options = [
        "--base-url",
        endpoint,
        "--model",
        plan.served_model_name,
        "--stop-token-ids",
        ",".join(str(i) for i in plan.smoke.stop_token_ids),
        "--image-url",
        plan.smoke.image_url,
    ]
    if plan.smoke.max_images is not None:
        options += ["--max-images", str(plan.smoke.max_images)]
    if plan.smoke.server_stop_token_ids:
        # The server applies these itself (its generation config): the suite checks requests without them stop.
        options += ["--server-stop-token-ids", ",".join(str(i) for i in plan.smoke.server_stop_token_ids)]
    if plan.smoke.image_tokens is not None:
        options += ["--image-tokens", str(plan.smoke.image_tokens)]
    if image_server_host:
        options += ["--local-image-server", "--image-server-host", image_server_host]
    if plan.router:
        options.append("--key-on-every-route")  # the router's front guards /health too, and no admin route passes
    return options


def suite_dir() -> Path:
    spec = importlib.util.find_spec("smoke_tests")
    if spec is None or spec.origin is None:
        raise UserError("the smoke suite is not installed: pip install 'vllm-deploy[smoke]'")
    return Path(spec.origin).parent


def ready_timeout(pytest_args: list[str], env: Mapping[str, str], default: float) -> tuple[list[str], float]:
    """The suite's wait for /health: the user's own (`-- --ready-timeout N`, or $SMOKE_READY_TIMEOUT) else
    `default`, passed as an option. Returns the options to add and the seconds the wait may take."""
    for index, arg in enumerate(pytest_args):
        value = (
            arg.split("=", 1)[1]
            if arg.startswith("--ready-timeout=")
            else pytest_args[index + 1]
            if arg == "--ready-timeout" and index + 1 < len(pytest_args)
            else None
        )
        if value is not None:
            return [], _seconds(value, default)
    if env.get(READY_VARIABLE):
        return [], _seconds(env[READY_VARIABLE], default)
    return ["--ready-timeout", f"{default:g}"], default


def _seconds(text: str, default: float) -> float:
    try:
        return max(float(text), 0.0)
    except ValueError:
        return default  # NB: the suite itself refuses it, with its own message


def run_suite(
    pytest_args: list[str],
    key: str | None = None,
    ready: float = BASE_URL_READY_SECONDS,
    cases_seconds: float = CASES_SECONDS,
) -> tuple[int, list[CaseResult], str]:
    """Run the suite in a child pytest (its own rootdir and options); return exit code, cases, and its output
    escaped for a terminal.

    The key reaches the child in its environment ($SMOKE_API_KEY), never on its command line, where any
    user of the host can read it. The wait for /health defaults to `ready` seconds; the whole run is stopped
    (a UserError) after that wait plus `cases_seconds`."""
    if importlib.util.find_spec("pytest") is None or importlib.util.find_spec("openai") is None:
        raise UserError("the smoke suite needs pytest and openai: pip install 'vllm-deploy[smoke]'")
    env = dict(os.environ)
    if key:
        env[KEY_VARIABLE] = key
    added, wait = ready_timeout(pytest_args, env, ready)
    deadline = wait + cases_seconds
    with tempfile.TemporaryDirectory(prefix="vllm-deploy-smoke-") as scratch:
        junit = Path(scratch) / "smoke.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(suite_dir()),
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={junit}",
            *added,
            *pytest_args,
        ]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=deadline)
        except subprocess.TimeoutExpired as expired:
            tail = shown_lines(_text(expired.stdout) + _text(expired.stderr))
            raise UserError(
                f"the smoke suite did not finish within {deadline:g} s ({wait:g} s for /health, "
                f"{cases_seconds:g} s for the cases) and was stopped"
                + (f"; its last output:\n{tail[-3000:]}" if tail.strip() else "")
            ) from None
        output = shown_lines(completed.stdout + completed.stderr)
        if not junit.exists():
            raise UserError(f"the smoke suite did not run:\n{output}".rstrip())
        return completed.returncode, parse_junit(junit), output


def _text(output: str | bytes | None) -> str:
    return output.decode("utf-8", "replace") if isinstance(output, bytes) else output or ""


def parse_junit(path: Path) -> list[CaseResult]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                status = {"failure": "failed"}.get(tag, tag)
                message = (found.get("message") or "").splitlines()[0][:120] if found.get("message") else ""
                break
        module = case.get("classname", "").rsplit(".", 1)[-1]
        cases.append(CaseResult(f"{module}::{case.get('name')}", status, float(case.get("time", 0)), message))
    return cases


def print_table(cases: list[CaseResult]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="smoke suite")
    table.add_column("case")
    table.add_column("status")
    table.add_column("latency", justify="right")
    colours = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}
    for case in cases:
        # NB: markup off for the name (a parametrized case's "[image-url]" is its parameter, not a style) and for
        # the message, which may quote a server.
        status = Text(case.status, style=colours[case.status]) + (
            f" {shown(case.message, 120)}" if case.message else ""
        )
        table.add_row(Text(shown(case.name, 200)), status, f"{case.seconds:.2f} s")
    console = Console()
    console.print(table)
    counts = {s: sum(c.status == s for c in cases) for s in ("passed", "failed", "error", "skipped")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" in {sum(c.seconds for c in cases):.1f} s")


def smoke_command(
    stack: Stack | None,
    key: str | None,
    base_url: str | None,
    model: str | None,
    image_url: str | None,
    local_image_server: bool,
    passthrough: list[str],
) -> int:
    """`vllm-deploy smoke`: against a running stack (its endpoint, key, gateway and load budget) or a URL;
    the table, the child's output on failure; 1 when a case failed."""
    options: list[str] = []
    ready = BASE_URL_READY_SECONDS
    if stack is not None:
        options = plan_options(stack.plan, stack.endpoint, stack.gateway())
        key, ready = key or stack.key(), stack.plan.health.start_period_seconds
    for flag, value in (("--base-url", base_url), ("--model", model), ("--image-url", image_url)):
        if value:
            options += [flag, value]
    if local_image_server:
        options.append("--local-image-server")
    code, cases, output = run_suite(options + passthrough, key=key, ready=ready)
    print_table(cases)
    if code != 0:
        print(output, file=sys.stderr)
    return 0 if code == 0 else 1
