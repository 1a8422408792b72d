"""`vllm-deploy`: a thin command line over the library. `main()` is the one error boundary.

NB: heavy modules (pydantic models, jinja2, docker, torch) are imported inside the commands,
so `vllm-deploy --help` starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deploy.errors import UserError

EXIT_USER_ERROR = 2


def _source_root() -> Path:
    """The checkout this package runs from, else the current directory (an installed package)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "templates").is_dir() else Path.cwd()


def _warn(messages: list[str]) -> None:
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from deploy.plan import resolve
    from deploy.profile import load_profile

    plan = resolve(load_profile(args.profile))
    _warn(plan.warnings)
    print(f"{args.profile}: valid")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import yaml

    from deploy.plan import resolve
    from deploy.profile import load_profile

    plan = resolve(load_profile(args.profile))
    _warn(plan.warnings)
    # NB: the plan holds no secret values at all, only the names of the variables that carry them.
    print(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False, allow_unicode=True), end="")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from deploy.plan import resolve
    from deploy.profile import builtin_names, load_profile
    from deploy.render import render, write_files

    refs = builtin_names() if args.all else args.profiles
    if not refs:
        raise UserError("render: name at least one profile, or pass --all")
    files: dict[str, str] = {}
    problems: list[str] = []
    for ref in refs:  # every profile is checked before anything is written
        try:
            plan = resolve(load_profile(ref))
        except UserError as exc:
            problems.append(str(exc))
            continue
        _warn(plan.warnings)
        files.update(render(plan))
    if problems:
        raise UserError("nothing was written:\n" + "\n".join(problems))
    out = Path(args.out) if args.out else _source_root()
    if args.check:
        stale = [p for p, text in sorted(files.items()) if not (out / p).is_file() or (out / p).read_text("utf-8") != text]
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        if stale:
            print("run `make render` (or `vllm-deploy render --all`) and commit the result", file=sys.stderr)
            return 1
        print(f"{len(files)} files up to date")
        return 0
    written = write_files(files, out)
    print(f"wrote {len(written)} files under {out}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from deploy.profile import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from deploy.tiny_model import build_tiny_model

    path = build_tiny_model(Path(args.out_dir), seed=args.seed)
    print(f"tiny VLM written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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

    p = sub.add_parser("tiny-model", help="fabricate the tiny random-weight test VLM (needs torch)")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_tiny_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
