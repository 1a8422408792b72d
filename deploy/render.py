"""Rendering: a pure function from a Plan to file texts, each template fed by its target's projection
(deploy/targets/). deploy/output.py writes them (all or nothing) and checks them for drift; both are
re-exported here.

`render(plan)` reads nothing but its templates and never the environment, so the same plan
always gives the same bytes (golden files depend on it).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from deploy.errors import UserError, is_unsafe
from deploy.output import Drift, drift_lines, stale_files, write_files
from deploy.paths import BUILD_ASSETS, PACKAGE_DIR, TEMPLATE_DIR, TWINS_DIR
from deploy.plan import Plan
from deploy.plan.generation import config_text
from deploy.targets import build_files, compose_plan, kubernetes_plan

__all__ = [
    "Drift",
    "drift_lines",
    "render",
    "render_profiles",
    "stale_files",
    "template_text",
    "write_files",
    "write_generation_config",
]


# NB: json.dumps(value, ensure_ascii=False) builds a new encoder on every call (a scalar each: ~1500 a render --all)
_json_encode = json.JSONEncoder(ensure_ascii=False).encode


def _json(value: Any, separators: tuple[str, str]) -> str:
    """JSON text that YAML 1.1 reads back as the same value. NB: JSON writes 1e-07, which a YAML 1.1 reader
    (PyYAML) takes for a string: its floats need a dot, so it is written 1.0e-07."""
    if isinstance(value, float) and "e" in (text := repr(value)) and "." not in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}.0e{exponent}"
    if isinstance(value, dict):
        items = (
            f"{_json_encode(k if isinstance(k, str) else json.dumps(k))}{separators[1]}{_json(v, separators)}"
            for k, v in value.items()
        )
        return "{" + separators[0].join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + separators[0].join(_json(v, separators) for v in value) + "]"
    text = _json_encode(value)
    if isinstance(value, str) and not value.isprintable():
        # NB: bidi controls, U+2028/9, C1 and DEL as \u escapes, which JSON and YAML both read back as the same
        # character: a rendered file never holds them raw (a YAML 1.1 reader folds a raw U+2028 into a space).
        text = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 and is_unsafe(c) else c for c in text)
    return text


def _yaml_scalar(value: Any) -> str:
    """JSON is YAML: every scalar comes out quoted, so "on", "no", "1" and "0.9" stay strings."""
    return _json(value, (", ", ": "))


def _compose_value(value: Any) -> str:
    """A YAML scalar or flow list for a compose file. NB: compose interpolates $VAR in every string; a literal
    $ must be written $$."""
    if isinstance(value, str):
        return _yaml_scalar(value.replace("$", "$$"))
    if isinstance(value, list):
        return "[" + ", ".join(_compose_value(v) for v in value) + "]"
    return _yaml_scalar(value)


def _yaml_flow(value: Any) -> str:
    """A YAML flow collection with quoted scalars: `{"a": "b"}`, `["x", "y"]`."""
    return _json(value, (", ", ": "))


def _json_text(value: Any) -> str:
    """JSON, for a file that reads JSON: a Dockerfile's exec-form ENTRYPOINT and LABEL values, a quoted
    haproxy string."""
    return _json(value, (", ", ": "))


# Kubernetes expands `$(VAR)` in command, args and env values and reads `$$` as a literal `$`; any
# other `$` passes through. Doubling exactly the `$` before `$` or `(` keeps every string literal,
# and leaves the rest as written (podman kube play, which expands nothing, then reads it the same).
_KUBERNETES_EXPANSION = re.compile(r"\$(?=[$(])")


def kubernetes_literal(value: Any) -> Any:
    if isinstance(value, str):
        return _KUBERNETES_EXPANSION.sub("$$", value)
    if isinstance(value, list):
        return [kubernetes_literal(v) for v in value]
    return value


def _kubernetes_flow(value: Any) -> str:
    return _yaml_flow(kubernetes_literal(value))


# NB: libyaml's emitter where PyYAML has it: the pure-Python one was a tenth of `render --all`. The rules are our own
# text and numbers (deploy/plan/monitoring.py), and tests/unit/test_render.py pins both emitters to the same bytes.
_SAFE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _rule_groups(groups: list, indent: int) -> str:
    """Prometheus rule groups as a YAML block (quoted by PyYAML where needed), indented for the template."""
    plain = [
        {
            "name": g.name,
            "rules": [
                {k: v for k, v in (("record", r.record), ("alert", r.alert), ("expr", r.expr), ("for", r.for_)) if v}
                | ({"labels": {"severity": r.severity}} if r.severity else {})
                | ({"annotations": {"summary": r.summary, "description": r.description}} if r.summary else {})
                for r in g.rules
            ],
        }
        for g in groups
    ]
    text = yaml.dump(plain, Dumper=_SAFE_DUMPER, sort_keys=False, allow_unicode=True, width=10_000, default_style=None)
    pad = " " * indent
    return "".join(f"\n{pad}{line}" for line in text.splitlines())


def _shell_word(value: Any) -> str:
    """One shell word (Dockerfile RUN lines run in a shell)."""
    return shlex.quote(str(value))


def _yaml_block(mapping: dict[str, Any], indent: int) -> str:
    """A block mapping with quoted scalars, its lines indented for the template's nesting."""
    pad = " " * indent
    return "".join(f"\n{pad}{_yaml_scalar(k)}: {_yaml_scalar(v)}" for k, v in mapping.items())


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs in jinja's own per-user directory (created 0700, checked to be the
    user's), each under the checksum of its source and the Python version: compiling every template was a third of
    `render --all`. A cache that cannot be read or written is only a slower run, never an error."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # NB: a truncated or foreign file: compile from the source instead
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    try:
        return _BytecodeCache()
    except (OSError, RuntimeError):  # NB: no safe per-user directory (jinja checks its owner and mode)
        return None


@cache
def _environment() -> jinja2.Environment:
    return _new_environment(_bytecode_cache())


def _new_environment(bytecode_cache: jinja2.BytecodeCache | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        bytecode_cache=bytecode_cache,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # Each filter is named for what it writes, and where it is safe.
    env.filters["yaml_scalar"] = _yaml_scalar
    env.filters["yaml_flow"] = _yaml_flow
    env.filters["yaml_block"] = _yaml_block
    env.filters["yaml_rule_groups"] = _rule_groups
    env.filters["compose_value"] = _compose_value
    env.filters["kubernetes_flow"] = _kubernetes_flow
    # NB: the image recipes (docker/, router/) keep the short names `json` and `shell`: their template bytes
    # are part of the image names (plan/image.py, plan/router.py), and a rename would rename every image.
    env.filters["json"] = _json_text
    env.filters["shell"] = _shell_word
    return env


def template_text(template: str, **context: Any) -> str:
    """One template rendered with the project's filters (used beyond plans: `init` drafts a profile)."""
    return _environment().get_template(template).render(**context)


def asset_copy(name: str) -> str:
    """A build asset as copied into a build context, marked as a copy (after the shebang, if any)."""
    text = BUILD_ASSETS[name].read_text(encoding="utf-8")
    origin = BUILD_ASSETS[name].relative_to(PACKAGE_DIR.parent).as_posix()
    note = f"# Copied by vllm-deploy from {origin} for the image build. Do not edit: change the original.\n"
    if text.startswith("#!"):
        shebang, rest = text.split("\n", 1)
        return f"{shebang}\n{note}{rest}"
    return note + text


def render(plan: Plan) -> dict[str, str]:
    """Every file of one profile, keyed by its path relative to the output root."""
    env = _environment()
    compose, kube = compose_plan(plan), kubernetes_plan(plan)

    def text(template: str, **projection: Any) -> str:
        return env.get_template(template).render(plan=plan, **projection)

    compose_dir = f"compose/{plan.name}"
    k8s_dir = f"k8s/{plan.name}"
    files = {
        f"{compose_dir}/compose.yaml": text("compose/compose.yaml.j2", compose=compose),
        f"{compose_dir}/.env.example": text("compose/env.example.j2"),
        f"{k8s_dir}/kustomization.yaml": text("k8s/kustomization.yaml.j2", kube=kube),
        f"{k8s_dir}/secrets.env.example": text("k8s/secrets.env.example.j2", kube=kube),
    }
    for manifest in kube.manifests:
        files[f"{k8s_dir}/{manifest.file}"] = text(manifest.template, kube=kube)
    for build in build_files(plan):
        if build.template is not None:
            files[f"{compose_dir}/{build.path}"] = text(build.template)
        else:
            files[f"{compose_dir}/{build.path}"] = asset_copy(build.asset) if build.asset else build.text or ""
    if plan.monitoring:
        dashboard = json.dumps(plan.monitoring.dashboard, indent=2, ensure_ascii=False) + "\n"
        files[f"{compose_dir}/prometheus/prometheus.yml"] = text("monitoring/prometheus.yml.j2", compose=compose)
        files[f"{compose_dir}/prometheus/rules.yml"] = text("monitoring/rules.yml.j2")
        files[f"{compose_dir}/grafana-dashboard.json"] = dashboard
        files[f"{k8s_dir}/grafana-dashboard.json"] = dashboard
    # The key check on every route, mounted from a ConfigMap (the compose copy is in the build context).
    files[f"{k8s_dir}/{plan.edge.file_name}"] = asset_copy(plan.edge.file_name)
    if plan.generation is not None:
        # Mounted into the container (a compose config, a ConfigMap): a change never rebuilds the image.
        files[f"{compose_dir}/{plan.generation.file_name}"] = config_text(plan.generation.config)
        files[f"{k8s_dir}/{plan.generation.file_name}"] = config_text(plan.generation.config)
    return files


def write_generation_config(plan: Plan, directory: Path) -> str:
    """The plan's generation config written for a host process; the directory to pass as --generation-config."""
    assert plan.generation is not None, f"{plan.name} has no generation config"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / plan.generation.file_name).write_text(config_text(plan.generation.config), encoding="utf-8")
    return str(directory)


def output_prefix(plan: Plan) -> str:
    """Where a plan's compose/ and k8s/ go under the output root: a twin's under TWINS_DIR, never over those of the
    GPU profile whose name it shares."""
    return f"{TWINS_DIR}/" if plan.twin_of else ""


def render_profiles(refs: list[str]) -> tuple[dict[str, str], list[str]]:
    """Every file of several profiles and their warnings; one UserError listing every profile's problems
    (and any two profiles sharing a name, whose files would overwrite each other)."""
    from deploy.plan import resolve
    from deploy.spec import load_profile

    files: dict[str, str] = {}
    warnings: list[str] = []
    problems: list[str] = []
    names: dict[str, str] = {}
    for ref in refs:  # every profile is checked before anything is written
        try:
            plan = resolve(load_profile(ref))
        except UserError as exc:
            problems.append(str(exc))
            continue
        prefix = output_prefix(plan)
        place = prefix + plan.name
        if place in names:
            problems.append(
                f"{ref} and {names[place]} are both named {plan.name!r}: their files would overwrite "
                "each other; rename one"
            )
            continue
        names[place] = ref
        warnings += plan.warnings
        files.update({prefix + path: text for path, text in render(plan).items()})
    if problems:
        raise UserError("nothing was written:\n" + "\n".join(problems))
    return files, warnings
