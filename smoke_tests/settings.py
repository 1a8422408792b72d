"""The smoke suite's settings: one frozen ``SmokeConfig`` resolved from CLI > env > built-in default.

The suite stands alone: it knows an endpoint and these options, nothing of how the server was deployed
(``vllm-deploy smoke PROFILE`` derives the options from its plan and passes them). Kept free of pytest
hooks so the precedence rules can be unit-tested without a server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SEED_IMAGE_URL = "https://air-example-data-2.s3.us-west-2.amazonaws.com/vllm_opensource_llava/stop_sign.jpg"


@dataclass(frozen=True)
class SmokeConfig:
    base_url: str  # server root, without /v1
    api_key: str | None  # None: the server is assumed to run without a key
    model: str | None  # None: use the first id of GET /v1/models
    image_url: str  # ignored when local_image_server is set
    local_image_server: bool
    image_server_host: str  # the address the vLLM server uses to reach the local image server
    image_server_bind: str  # the address the local image server binds to
    image_server_port: int  # 0: any free port
    missing_image_url: str | None  # a URL that answers 404, for the bad-media case
    redirect_host: str | None  # another name of the image server's host, outside the server's media allowlist
    key_on_every_route: bool  # the endpoint (a router) checks the key on /health and its admin routes too
    stop_token_ids: tuple[int, ...]
    max_images: int  # the server's --limit-mm-per-prompt image count
    ready_timeout: float  # seconds to wait for GET /health == 200
    request_timeout: float  # seconds per HTTP request
    max_tokens: int  # per chat request (the seed snippets use the server default)
    server_log: str | None  # a file whose tail is attached to failed tests
    server_log_command: str | None  # a shell command whose output is attached to failed tests
    server_stop_token_ids: tuple[int, ...] | None  # stop ids the server applies to every request
    image_tokens: int | None  # the deployment's worst-case prompt tokens of one image

    @property
    def api_base(self) -> str:
        return self.base_url.rstrip("/") + "/v1"


def _bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (1/0, true/false), got {text!r}")


def _ids(text: Any) -> tuple[int, ...]:
    if isinstance(text, (list, tuple)):
        return tuple(int(x) for x in text)
    return tuple(int(part) for part in str(text).replace(" ", "").split(",") if part)


@dataclass(frozen=True)
class Option:
    dest: str
    flag: str
    envs: tuple[str, ...]
    default: Any
    parse: Callable[[Any], Any]
    help: str
    is_switch: bool = False


def _str(value: Any) -> str:
    return str(value)


OPTIONS: tuple[Option, ...] = (
    Option(
        "base_url", "--base-url", ("SMOKE_BASE_URL",), "http://127.0.0.1:8000", _str, "server root URL, without /v1"
    ),
    Option(
        "api_key",
        "--api-key",
        ("SMOKE_API_KEY", "VLLM_API_KEY"),
        None,
        _str,
        "API key the server was started with (omit for an open server)",
    ),
    Option(
        "model", "--model", ("SMOKE_MODEL",), None, _str, "model name to request (default: first id from /v1/models)"
    ),
    Option(
        "image_url",
        "--image-url",
        ("SMOKE_IMAGE_URL",),
        SEED_IMAGE_URL,
        _str,
        "image URL the server fetches (ignored with --local-image-server)",
    ),
    Option(
        "local_image_server",
        "--local-image-server",
        ("SMOKE_LOCAL_IMAGE_SERVER",),
        False,
        _bool,
        "serve a generated JPEG from this process and use its URL",
        is_switch=True,
    ),
    Option(
        "image_server_host",
        "--image-server-host",
        ("SMOKE_IMAGE_SERVER_HOST",),
        "127.0.0.1",
        _str,
        "host/IP the vLLM server uses to reach the local image server (a container: the bridge gateway)",
    ),
    Option(
        "image_server_bind",
        "--image-server-bind",
        ("SMOKE_IMAGE_SERVER_BIND",),
        None,
        _str,
        "address the local image server binds to (default: --image-server-host)",
    ),
    Option(
        "image_server_port",
        "--image-server-port",
        ("SMOKE_IMAGE_SERVER_PORT",),
        0,
        int,
        "port of the local image server (default: any free port)",
    ),
    Option(
        "missing_image_url",
        "--missing-image-url",
        ("SMOKE_MISSING_IMAGE_URL",),
        None,
        _str,
        "an image URL that answers 404 (default: one on the local image server)",
    ),
    Option(
        "redirect_host",
        "--redirect-host",
        ("SMOKE_REDIRECT_HOST",),
        None,
        _str,
        "another name for the local image server's host that the server's --allowed-media-domains leaves out "
        "(e.g. localhost): adds the case that a redirect off the allowlist is not followed",
    ),
    Option(
        "key_on_every_route",
        "--key-on-every-route",
        ("SMOKE_KEY_ON_EVERY_ROUTE",),
        False,
        _bool,
        "the endpoint checks the key on every route, /health included (vLLM's router): expect that, "
        "instead of vLLM's open /health",
        is_switch=True,
    ),
    Option(
        "stop_token_ids",
        "--stop-token-ids",
        ("SMOKE_STOP_TOKEN_IDS",),
        "151645,151643",
        _ids,
        "comma-separated stop token ids sent as extra_body (the seed's Qwen2 ids)",
    ),
    Option(
        "max_images",
        "--max-images",
        ("SMOKE_MAX_IMAGES",),
        2,
        int,
        "the server's per-prompt image limit (--limit-mm-per-prompt)",
    ),
    Option(
        "ready_timeout",
        "--ready-timeout",
        ("SMOKE_READY_TIMEOUT",),
        300.0,
        float,
        "seconds to wait for GET /health == 200",
    ),
    Option("request_timeout", "--request-timeout", ("SMOKE_REQUEST_TIMEOUT",), 60.0, float, "seconds per HTTP request"),
    Option("max_tokens", "--max-tokens", ("SMOKE_MAX_TOKENS",), 8, int, "max_tokens of the suite's own chat requests"),
    Option(
        "server_log",
        "--server-log",
        ("SMOKE_SERVER_LOG",),
        None,
        _str,
        "server log file: its tail is attached to each failed test",
    ),
    Option(
        "server_log_command",
        "--server-log-command",
        ("SMOKE_SERVER_LOG_COMMAND",),
        None,
        _str,
        "shell command printing the server's logs (e.g. `docker logs NAME`), attached to failed tests",
    ),
    Option(
        "server_stop_token_ids",
        "--server-stop-token-ids",
        ("SMOKE_SERVER_STOP_TOKEN_IDS",),
        None,
        _ids,
        "comma-separated stop ids the server applies to every request (its generation config): adds the case "
        "that a request sending no stop_token_ids stops at each of them",
    ),
    Option(
        "image_tokens",
        "--image-tokens",
        ("SMOKE_IMAGE_TOKENS",),
        None,
        int,
        "the deployment's worst-case prompt tokens of one image (vllm-deploy's estimate): the large-image cases "
        "then hold the server to it, and expect --max-images large images to be served",
    ),
)


def build_config(
    cli: Mapping[str, Any], env: Mapping[str, str], defaults: Mapping[str, Any] | None = None
) -> SmokeConfig:
    """Resolve every setting: CLI value (not None) > first set env var > ``defaults`` > built-in default."""
    defaults = defaults or {}
    values: dict[str, Any] = {}
    errors: list[str] = []
    for opt in OPTIONS:
        source, raw = "default", opt.default
        if cli.get(opt.dest) is not None:
            source, raw = opt.flag, cli[opt.dest]
        elif any(env.get(name) not in (None, "") for name in opt.envs):
            name = next(n for n in opt.envs if env.get(n) not in (None, ""))
            source, raw = f"${name}", env[name]
        elif defaults.get(opt.dest) is not None:
            source, raw = "defaults", defaults[opt.dest]
        try:
            values[opt.dest] = None if raw is None else opt.parse(raw)
        except ValueError as exc:
            errors.append(f"{opt.flag} (from {source}): {exc}")
    if errors:
        raise ValueError("invalid smoke-test settings:\n  " + "\n  ".join(errors))
    if values["image_server_bind"] is None:
        values["image_server_bind"] = values["image_server_host"]
    values["base_url"] = values["base_url"].rstrip("/")
    if values["base_url"].endswith("/v1"):  # NB: accept the seed's openai_api_base spelling too
        values["base_url"] = values["base_url"][: -len("/v1")]
    return SmokeConfig(**values)


def smoke_config(pytest_config: Any, env: Mapping[str, str] | None = None) -> SmokeConfig:
    """The one place a ``SmokeConfig`` is built from pytest's options (cached on the pytest config)."""
    cached = getattr(pytest_config, "_smoke_config", None)
    if cached is not None:
        return cached
    env = os.environ if env is None else env
    cli = {opt.dest: pytest_config.getoption(opt.dest) for opt in OPTIONS}
    config = build_config(cli, env)
    pytest_config._smoke_config = config
    return config


def add_options(parser: Any) -> None:
    """Register every option on a pytest parser (``pytest_addoption``)."""
    group = parser.getgroup("smoke", "vLLM smoke suite (each option also reads the env var shown)")
    for opt in OPTIONS:
        envs = " or ".join("$" + e for e in opt.envs)
        default = f"; default {opt.default}" if opt.default not in (None, False) else ""
        help_text = f"{opt.help} [{envs}{default}]"
        if opt.is_switch:
            group.addoption(opt.flag, dest=opt.dest, action="store_true", default=None, help=help_text)
        else:
            group.addoption(opt.flag, dest=opt.dest, default=None, help=help_text)
