"""The commands of `vllm-deploy`, one function each: thin calls into the library, their output printed.
deploy/cli.py builds the parser over them and is the one error boundary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deploy.errors import MAX_LINE, UserError, escape


def _source_root() -> Path:
    """The checkout this package runs from, else the current directory (an installed package)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "templates").is_dir() else Path.cwd()


def _warn(messages: list[str]) -> None:
    for message in messages:
        print(f"warning: {escape(message, limit=MAX_LINE)}", file=sys.stderr)


def _plan(ref: str, warn: bool = True):
    """The resolved plan of a profile reference; its warnings go to stderr."""
    from deploy.plan import resolve
    from deploy.spec import load_profile

    plan = resolve(load_profile(ref))
    if warn:
        _warn(plan.warnings)
    return plan


def cmd_validate(args: argparse.Namespace) -> int:
    _plan(args.profile)
    print(f"{escape(args.profile)}: valid")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import yaml

    plan = _plan(args.profile)
    # NB: the plan holds no secret values at all, only the names of the variables that carry them.
    # NB: escaped for the terminal: PyYAML writes a profile's bidi controls and U+2028 as they are.
    print(
        escape(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False, allow_unicode=True), keep_newlines=True),
        end="",
    )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from deploy.render import drift_lines, render_profiles, stale_files, write_files
    from deploy.spec import builtin_names

    if args.all and args.profiles:
        raise UserError("render: name profiles or pass --all, not both")
    if args.out is not None and not args.out.strip():
        raise UserError("render: --out needs a directory (it was empty)")
    refs = builtin_names() if args.all else args.profiles
    if not refs:
        raise UserError("render: name at least one profile, or pass --all")
    files, warnings = render_profiles(refs)
    _warn(warnings)
    out = Path(args.out) if args.out else _source_root()
    if args.check:
        drift = stale_files(files, out)
        for line in drift_lines(drift):
            print(line, file=sys.stderr)
        if drift:
            return 1
        print(f"{len(files)} files up to date")
        return 0
    written = write_files(files, out)
    print(f"wrote {len(written)} files under {escape(out)}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from deploy.spec import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def _write_profile(output: str | None, text: str, force: bool, next_step: str) -> int:
    """A drafted profile to stdout, or whole into a new file (never over one unless `force`)."""
    from deploy.init import write_new

    if output is None:
        print(text, end="")
        return 0
    write_new(Path(output), text, force)
    shown = escape(output)
    print(f"wrote {shown}: {next_step.format(shown)}", file=sys.stderr)
    return 0


def _output(command: str, output: str | None) -> str | None:
    if output is not None and not output.strip():
        raise UserError(f"{command}: -o needs a file name (it was empty)")
    return output


def cmd_init(args: argparse.Namespace) -> int:
    from deploy.init import init_profile

    output = _output("init", args.output)
    text = init_profile(
        args.source, name=args.name, device=args.device, gpu_memory_gib=args.gpu_memory_gib, images=args.images
    )
    return _write_profile(output, text, args.force, "review it, then `vllm-deploy validate {}`")


def cmd_twin(args: argparse.Namespace) -> int:
    from deploy.init.twin import twin_profile

    output = _output("twin", args.output)
    text = twin_profile(args.profile, Path(args.model_dir) if args.model_dir else None, _source_root())
    return _write_profile(output, text, args.force, "bring it up with `make up PROFILE={}`")


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from deploy.assets.tiny_model import build_tiny_model

    path = build_tiny_model(Path(args.out_dir), seed=args.seed)
    print(f"tiny VLM written to {path}")
    return 0


def _stack(ref: str, warn: bool = True):
    from deploy.runtime.stack import stack_for

    return stack_for(_plan(ref, warn), _source_root())


def cmd_up(args: argparse.Namespace) -> int:
    from deploy.runtime.stack import how_to_call, up

    stack = _stack(args.profile)
    result = up(stack)
    fetched = f"model in its volume after {result.fetch_seconds} s, " if result.fetch_seconds is not None else ""
    print(
        f"image ready in {result.build_seconds} s ({result.build_steps_run} build steps run), {fetched}"
        f"healthy {result.healthy_seconds} s after start"
    )
    print(how_to_call(stack, args.profile))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from deploy.runtime.stack import push

    for reference in push(_stack(args.profile)):
        print(f"pushed {reference}; the Kubernetes manifests under k8s/ already name it")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from deploy.runtime.preflight import failures, gather, judge, print_checks

    stack = _stack(args.profile)
    found = judge(stack.plan, gather(stack.plan, stack.compose, stack.docker))
    print_checks(found)
    return 1 if failures(found) else 0


def cmd_fetch(args: argparse.Namespace) -> int:
    import os

    from deploy.runtime.fetch import fetch, read_token

    for option, value in (("--to", args.to), ("--cache-dir", args.cache_dir), ("--token-file", args.token_file)):
        if value is not None and not value.strip():
            raise UserError(f"fetch: {option} needs a path (it was empty)")
    if args.to is not None and args.cache_dir is not None:
        raise UserError("fetch: --to writes a plain directory, --cache-dir the hub cache: pass one of them")
    plan = _plan(args.profile, warn=False)
    token = read_token(Path(args.token_file) if args.token_file else None, os.environ)
    # NB: tqdm draws its bars on stderr: bars when a person watches it, else one line per finished file.
    result = fetch(
        plan,
        to=Path(args.to) if args.to else None,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        token=token,
        progress="bars" if sys.stderr.isatty() else "lines",
        say=lambda line: print(line, flush=True),
    )
    what = f"{plan.model} at {result.commit}"
    if result.up_to_date:
        print(f"{escape(what)}: up to date in {escape(result.path)} ({result.files} files)")
    else:
        print(
            f"{escape(what)}: {result.downloaded_files} of {result.files} files "
            f"({result.downloaded_bytes / 1e6:.1f} MB) in {result.seconds} s into {escape(result.path)}"
        )
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from deploy.runtime.stack import rollout

    replaced = rollout(_stack(args.profile))
    print("rolled out: " + ", ".join(f"{service} ({seconds} s)" for service, seconds in replaced))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from deploy.runtime.status import status

    plan = _plan(args.profile, warn=False)
    try:
        status(plan, watch=args.watch, interval=args.interval, timeout=args.timeout)
    except KeyboardInterrupt:  # --watch ends with Ctrl-C
        print()
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from deploy.runtime.stack import down

    down(_stack(args.profile, warn=False))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from deploy.runtime.stack import logs

    logs(_stack(args.profile, warn=False), follow=args.follow)
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    from deploy.runtime.smoke import smoke_command

    # A profile brought up by `up` (no --base-url): its published port, its key, an image server on its
    # network's gateway, and its load budget to become healthy.
    stack = _stack(args.profile, warn=False) if args.profile and not args.base_url else None
    return smoke_command(
        stack, args.api_key, args.base_url, args.model, args.image_url, args.local_image_server, args.passthrough
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from deploy.bench.suite import main

    return main(Path(args.engine_python).absolute(), _source_root())


def cmd_load(args: argparse.Namespace) -> int:
    from deploy.bench.load import load_command

    return load_command(
        args.base_url,
        args.api_key,
        args.model,
        args.concurrency,
        args.requests,
        args.image_server_host,
        args.timeout,
        Path(args.json) if args.json else None,
    )
