"""Run the smoke suite (smoke_tests/, real pytest) against an endpoint and summarise it as a table."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import UserError


@dataclass(frozen=True)
class CaseResult:
    name: str
    status: str  # passed | failed | error | skipped
    seconds: float
    message: str


def suite_dir() -> Path:
    import smoke_tests

    return Path(smoke_tests.__file__).parent


def run_suite(pytest_args: list[str]) -> tuple[int, list[CaseResult], str]:
    """Run the suite in a child pytest (its own rootdir and options); return exit code, cases, output."""
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

    table = Table(title="smoke suite")
    table.add_column("case")
    table.add_column("status")
    table.add_column("latency", justify="right")
    colours = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}
    for case in cases:
        status = f"[{colours[case.status]}]{case.status}[/]"
        table.add_row(case.name, status + (f" {case.message}" if case.message else ""), f"{case.seconds:.2f} s")
    console = Console()
    console.print(table)
    counts = {s: sum(c.status == s for c in cases) for s in ("passed", "failed", "error", "skipped")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" in {sum(c.seconds for c in cases):.1f} s")


def stack_defaults(ref: str, root: Path, with_key: bool) -> list[str]:
    """Suite options for a profile started by `vllm-deploy up`: endpoint, key, and an image server
    on the compose network's gateway, so the container can fetch the image without the internet."""
    from deploy.plan import resolve
    from deploy.spec import load_profile
    from deploy.stack import compose_gateway, read_key, stack_for

    stack = stack_for(resolve(load_profile(ref)), root)
    options = ["--base-url", stack.endpoint, "--model", stack.plan.served_model_name]
    key = read_key(stack) if with_key else None
    if key:
        options += ["--api-key", key]
    gateway = compose_gateway(stack)
    if gateway:
        options += ["--local-image-server", "--image-server-host", gateway]
    return options
