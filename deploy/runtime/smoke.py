"""Run the smoke suite (smoke_tests/, real pytest) against an endpoint and summarise it as a table.

The suite knows only an endpoint and plain options; everything it needs from a profile is handed over
here, derived from the Plan (the one place smoke defaults come from).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import UserError
from deploy.plan import Plan


@dataclass(frozen=True)
class CaseResult:
    name: str
    status: str  # passed | failed | error | skipped
    seconds: float
    message: str


def plan_options(plan: Plan, endpoint: str, key: str | None, image_server_host: str | None) -> list[str]:
    """Suite options for a deployment of `plan` at `endpoint`; a local image server on `image_server_host`
    (an address the server can reach) instead of the internet image when given."""
    options = ["--base-url", endpoint, "--model", plan.served_model_name,
               "--stop-token-ids", ",".join(str(i) for i in plan.smoke.stop_token_ids),
               "--image-url", plan.smoke.image_url]
    if plan.smoke.max_images is not None:
        options += ["--max-images", str(plan.smoke.max_images)]
    if plan.smoke.server_stop_token_ids:
        # The server applies these itself (its generation config): the suite checks requests without them stop.
        options += ["--server-stop-token-ids", ",".join(str(i) for i in plan.smoke.server_stop_token_ids)]
    if plan.smoke.image_tokens is not None:
        options += ["--image-tokens", str(plan.smoke.image_tokens)]
    if key:
        options += ["--api-key", key]
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


def run_suite(pytest_args: list[str]) -> tuple[int, list[CaseResult], str]:
    """Run the suite in a child pytest (its own rootdir and options); return exit code, cases, output."""
    if importlib.util.find_spec("pytest") is None or importlib.util.find_spec("openai") is None:
        raise UserError("the smoke suite needs pytest and openai: pip install 'vllm-deploy[smoke]'")
    with tempfile.TemporaryDirectory(prefix="vllm-deploy-smoke-") as scratch:
        junit = Path(scratch) / "smoke.xml"
        command = [sys.executable, "-m", "pytest", str(suite_dir()), "-p", "no:cacheprovider", "-q",
                   f"--junitxml={junit}", *pytest_args]
        completed = subprocess.run(command, capture_output=True, text=True)
        if not junit.exists():
            raise UserError(f"the smoke suite did not run:\n{completed.stdout}{completed.stderr}".rstrip())
        return completed.returncode, parse_junit(junit), completed.stdout + completed.stderr


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
        status = f"[{colours[case.status]}]{case.status}[/]"
        # NB: markup off for the name: a parametrized case's "[image-url]" is its parameter, not a style.
        table.add_row(Text(case.name), status + (f" {case.message}" if case.message else ""), f"{case.seconds:.2f} s")
    console = Console()
    console.print(table)
    counts = {s: sum(c.status == s for c in cases) for s in ("passed", "failed", "error", "skipped")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" in {sum(c.seconds for c in cases):.1f} s")
