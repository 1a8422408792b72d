"""`vllm-deploy`: a thin command line over the library. `main()` is the one error boundary.

NB: heavy modules (pydantic models, jinja2, docker, torch) are imported inside the commands,
so `vllm-deploy --help` starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys

from deploy.commands import (
    cmd_bench,
    cmd_doctor,
    cmd_down,
    cmd_fetch,
    cmd_init,
    cmd_load,
    cmd_logs,
    cmd_push,
    cmd_render,
    cmd_rollout,
    cmd_schema,
    cmd_show,
    cmd_smoke,
    cmd_status,
    cmd_tiny_model,
    cmd_twin,
    cmd_up,
    cmd_validate,
)
from deploy.errors import MAX_LINE, UserError, escape

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug, not the user's input
INTERNAL_MESSAGE = 300  # characters of an unexpected exception's message shown
GC_ALLOCATIONS = 100_000  # between two collections of the youngest objects (Python's default: 700)


class _Parser(argparse.ArgumentParser):
    """argparse, with the command line's own words escaped in its error messages (they repeat them)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {escape(message, limit=MAX_LINE)}\n")


def _internal_error(exc: BaseException) -> str:
    """One line for a bug: the exception's type and its message, escaped, cut short, without secrets."""
    try:
        text = str(exc)
    except Exception:  # NB: a broken __str__ must not hide the first error behind a second one
        text = ""
    try:
        from deploy.spec.redact import hide_secrets

        text = hide_secrets(text)
    except Exception:
        text = "(message not shown)"
    detail = f": {escape(text, limit=INTERNAL_MESSAGE)}" if text else ""
    return f"vllm-deploy: internal error: {escape(type(exc).__name__)}{detail} (run with --debug for the traceback)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vllm-deploy",
        description="One YAML profile -> Dockerfile, compose file and Kubernetes manifests for vLLM.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    profile_help = "a built-in profile name or a path to a profile YAML file"

    p = sub.add_parser("validate", help="check a profile; exit 2 listing every problem")
    p.add_argument("profile", help=profile_help)
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser("show", help="print the resolved plan as YAML (no secret values)")
    p.add_argument("profile", help=profile_help)
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("render", help="write compose/<name>/ and k8s/<name>/ for profiles")
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=profile_help)
    p.add_argument("--all", action="store_true", help="every built-in profile")
    p.add_argument("--out", metavar="DIR", help="output root (default: the repository root)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if files on disk differ")
    p.set_defaults(run=cmd_render)

    p = sub.add_parser("schema", help="print the profile JSON Schema")
    p.set_defaults(run=cmd_schema)

    p = sub.add_parser("init", help="draft a commented profile from a model's config files")
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="a model directory, or a hub id whose config files are in the local Hugging Face cache",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write the profile here (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument("--name", help="profile name (default: from the model's name)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="default: cuda")
    p.add_argument(
        "--gpu-memory-gib",
        type=float,
        metavar="GIB",
        help="memory of one GPU: max-model-len and gpu-memory-utilization are sized to fit it",
    )
    p.add_argument("--images", type=int, metavar="N", help="images a request may carry (default: 2)")
    p.set_defaults(run=cmd_init)

    p = sub.add_parser("twin", help="write the CPU twin of a GPU profile: its deployment's shape, run without a GPU")
    p.add_argument("profile", help=profile_help)
    p.add_argument("-o", "--output", help="write the twin here (default: print it)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument(
        "--model-dir",
        help="absolute host directory for the tiny test model (default: .work/twins/NAME/model); `up` fills it",
    )
    p.set_defaults(run=cmd_twin)

    for name, run, text in (
        ("up", cmd_up, "render, build and start a profile with Docker Compose; wait until healthy"),
        ("down", cmd_down, "stop a profile's containers (volumes are kept)"),
        ("push", cmd_push, "build a profile's images and push them to its image.registry"),
        ("rollout", cmd_rollout, "replace a running stack's replicas one at a time, each healthy before the next"),
        ("doctor", cmd_doctor, "preflight: Docker, Compose v2, NVIDIA runtime, port, model, memory"),
        ("logs", cmd_logs, "show the vLLM container's logs"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("profile", help=profile_help)
        p.set_defaults(run=run)
        if name == "logs":
            p.add_argument("-f", "--follow", action="store_true")

    p = sub.add_parser(
        "fetch", help="download a hub profile's model with Hugging Face's client: resumable, verified, no Docker"
    )
    p.add_argument("profile", help=profile_help)
    p.add_argument(
        "--to",
        metavar="DIR",
        help="a plain model directory (for a host-storage profile to mount; air-gapped hosts); made whole or not at "
        "all (default: the Hugging Face cache)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the hub cache to fill (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the hub token from FILE (default: $HF_TOKEN); never pass a token on the command line",
    )
    p.set_defaults(run=cmd_fetch)

    p = sub.add_parser("status", help="one screen from the live metrics: replicas, queue, KV cache, tokens/s, p95")
    p.add_argument("profile", help=profile_help)
    p.add_argument("-w", "--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between refreshes with --watch (5)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for all of one screen's queries (10)")
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("smoke", help="run the smoke suite against a running server and print a table")
    p.add_argument("profile", nargs="?", help=profile_help + " (its port, model and smoke settings)")
    p.add_argument("--base-url", help="server root, e.g. http://127.0.0.1:8000 (env SMOKE_BASE_URL)")
    p.add_argument(
        "--api-key",
        help="the server's key (better: env SMOKE_API_KEY, then VLLM_API_KEY; the suite gets it in its environment)",
    )
    p.add_argument("--model", help="model name (default: the first of /v1/models)")
    p.add_argument("--image-url", help="image to request by URL (default: the guide's stop sign)")
    p.add_argument("--local-image-server", action="store_true", help="serve a generated JPEG from this machine")
    p.epilog = "Arguments after -- go to pytest and the suite, e.g. -- -k chat --max-images 2"
    p.set_defaults(run=cmd_smoke)

    p = sub.add_parser("bench", help="every figure of BENCHMARKS.md on tiny-cpu (what `make bench` runs)")
    p.add_argument(
        "--engine-python",
        default=".venv-engine/bin/python",
        help="the engine venv's python, for the bare-process baseline",
    )
    p.set_defaults(run=cmd_bench)

    p = sub.add_parser("load", help="multimodal load against any endpoint: req/s and latency per concurrency")
    p.add_argument("--base-url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"), help="default: $VLLM_API_KEY")
    p.add_argument("--model", help="default: the first of /v1/models")
    p.add_argument("--concurrency", default="1,4,8", help="levels, comma-separated (default 1,4,8)")
    p.add_argument("--requests", type=int, default=100, help="requests per level (default 100)")
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds one request may take, all told; past it the request counts as an error (300)",
    )
    p.add_argument(
        "--image-server-host",
        help="serve the URL images from this address of this machine "
        "(one the server can reach); default: base64 images only",
    )
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.set_defaults(run=cmd_load)

    p = sub.add_parser("tiny-model", help="fabricate the tiny random-weight test VLM (needs torch)")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_tiny_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The program: `vllm-deploy ARGS` and `python -m deploy ARGS` (tests call it with their own argv)."""
    if argv is not None:
        return run_command(argv)
    # NB: a command imports ~150k objects that live as long as the process (pydantic, jinja2, PyYAML, the
    # profile's models): at the collector's default pace (every 700 allocations) it scans them again and again,
    # and the interpreter's exit scans them once more. The process collects less often and freezes them before it
    # exits (its cycles are freed by the exit anyway): ~7% of the instructions of `render --all`.
    gc.set_threshold(GC_ALLOCATIONS)
    try:
        return run_command(sys.argv[1:])
    finally:
        gc.freeze()


def run_command(argv: list[str]) -> int:
    """The one error boundary: a UserError is exit 2, Ctrl-C 130, anything else one line and exit 70."""
    argv = list(argv)
    # Everything after a bare -- is passed through untouched (to pytest, for `smoke`).
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: len(argv) - len(passthrough) - (1 if "--" in argv else 0)]
    debug = "--debug" in own
    try:
        args = build_parser().parse_args(own)
        args.passthrough = passthrough
        if "--" in argv and args.command != "smoke":
            print(
                f"error: arguments after -- go to the smoke suite's pytest; `{args.command}` takes none",
                file=sys.stderr,
            )
            return EXIT_USER_ERROR
        return args.run(args)
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # NB: `vllm-deploy show x | head`: the reader left; say nothing more (Python's own advice: point
        # stdout at /dev/null, so the interpreter's final flush does not fail again).
        if debug:
            raise
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if debug:
            raise
        print(_internal_error(exc), file=sys.stderr)
        return EXIT_INTERNAL_ERROR
