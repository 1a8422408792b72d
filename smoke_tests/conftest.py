"""Options, fixtures and failure reporting of the smoke suite (see settings.py for every option)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pluggy import Result

from smoke_tests.bounded import IMAGE_CAP, HttpFailureError, fetch, shown
from smoke_tests.image_server import IMAGE_PATH, ImageServer, generated_jpeg, large_jpeg
from smoke_tests.seed_runs import SeedRuns
from smoke_tests.settings import SmokeConfig, add_options, smoke_config
from smoke_tests.support import Raw, data_url

LOG_TAIL_LINES = 80
AIOHTTP_TRANSPORT = "openai._vendor.httpx_aiohttp"  # openai's optional async transport, never used here
HEALTH_PROBE_SECONDS = 10.0  # one GET /health of the wait (never past the wait's own deadline)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    try:
        smoke_config(config)  # NB: fail at startup, once, with every bad setting listed
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # NB: the interpreter's final garbage collection over what the cases loaded (openai's types above all) took
    # 0.3 s of every run after its report was written; objects are still released as usual.
    gc.freeze()


# NB: cheapest and most basic first; bad media last, so a server it harms fails nothing else
MODULE_ORDER = ["test_health", "test_chat", "test_seed_snippets", "test_auth", "test_large_images", "test_bad_media"]


# Cases that need a server configured for them, and the option that says it is.
NEEDS_OPTION = {
    "test_a_redirect_off_the_media_allowlist_is_not_followed": "redirect_host",
    "test_server_stop_ids_apply_without_extra_body": "server_stop_token_ids",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = smoke_config(config)
    unconfigured = [
        i
        for i in items
        if isinstance(i, pytest.Function) and not getattr(settings, NEEDS_OPTION.get(i.originalname, ""), True)
    ]
    if unconfigured:  # NB: deselected, not skipped: they do not apply to this server (the header says so)
        config.hook.pytest_deselected(items=unconfigured)
        items[:] = [i for i in items if i not in unconfigured]

    def rank(item: pytest.Item) -> int:
        name = item.path.stem
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)

    items.sort(key=rank)  # NB: stable sort keeps the order inside each module


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = smoke_config(config)
    image = f"local server on {s.image_server_host}" if s.local_image_server else s.image_url
    return [
        f"smoke: base_url={s.base_url} model={s.model or '(first of /v1/models)'} "
        f"api_key={'set' if s.api_key else 'none'}",
        f"smoke: image={image} stop_token_ids={list(s.stop_token_ids)} max_images={s.max_images}",
        "smoke: media allowlist case "
        + (f"on (redirect via {s.redirect_host})" if s.redirect_host else "not run (no --redirect-host)"),
        "smoke: server-side stop ids "
        + (f"{list(s.server_stop_token_ids)}" if s.server_stop_token_ids else "not run (no --server-stop-token-ids)")
        + f"; image tokens bound {s.image_tokens if s.image_tokens else 'unknown (no --image-tokens)'}",
    ]


def _server_logs(s: SmokeConfig) -> str | None:
    parts = []
    if s.server_log:
        try:
            lines = Path(s.server_log).read_text(errors="replace").splitlines()
            parts.append(f"--- tail of {s.server_log} ---\n" + "\n".join(lines[-LOG_TAIL_LINES:]))
        except OSError as exc:
            parts.append(f"--- cannot read {s.server_log}: {exc}")
    if s.server_log_command:
        try:
            out = subprocess.run(s.server_log_command, shell=True, capture_output=True, text=True, timeout=30)
            lines = (out.stdout + out.stderr).splitlines()
            parts.append(
                f"--- `{s.server_log_command}` (last {LOG_TAIL_LINES} lines) ---\n" + "\n".join(lines[-LOG_TAIL_LINES:])
            )
        except (OSError, subprocess.SubprocessError) as exc:
            parts.append(f"--- `{s.server_log_command}` failed: {exc}")
    return "\n".join(parts) or None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        logs = _server_logs(smoke_config(item.config))
        if logs:
            report.sections.append(("vLLM server logs", logs))


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def smoke(pytestconfig: pytest.Config) -> SmokeConfig:
    return smoke_config(pytestconfig)


@pytest.fixture(scope="session")
def raw(smoke: SmokeConfig) -> Raw:
    return Raw(smoke.base_url, smoke.api_key, smoke.request_timeout)


def wait_ready(
    base_url: str, api_key: str | None, ready_timeout: float, request_timeout: float, interval: float = 1.0
) -> float:
    """Poll GET /health until 200; the seconds waited. HttpFailureError when `ready_timeout` runs out: every probe
    (at most 10 s, and never past the deadline) and the pauses between them fit in it."""
    start = time.monotonic()
    deadline = start + ready_timeout
    # NB: with the key: an endpoint that checks it on every route (a router) answers /health too.
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    last = "no attempt"
    while True:
        left = deadline - time.monotonic()
        if left > 0:
            try:
                resp = fetch(
                    "GET",
                    base_url + "/health",
                    headers=headers,
                    cap=64 * 1024,
                    deadline=min(HEALTH_PROBE_SECONDS, request_timeout, left),
                )
                if resp.status_code == 200:
                    return time.monotonic() - start
                last = f"HTTP {resp.status_code}: {shown(resp.text, 200)}"
            except HttpFailureError as exc:
                last = str(exc)
        if time.monotonic() + interval >= deadline:
            raise HttpFailureError(
                f"vLLM server at {base_url} not healthy after {ready_timeout:g} s "
                f"(GET /health, last answer: {last}). Is it running? Raise --ready-timeout if it is still loading."
            )
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def server_ready(smoke: SmokeConfig) -> float:
    """Wait for GET /health == 200 within --ready-timeout; returns the seconds waited."""
    try:
        return wait_ready(smoke.base_url, smoke.api_key, smoke.ready_timeout, smoke.request_timeout)
    except HttpFailureError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def server_version(raw: Raw) -> str | None:
    """vLLM's version from GET /version (with the key), or None for servers without it."""
    try:
        resp = raw.get("/version")
        version = resp.json().get("version") if resp.status_code == 200 else None
    except (HttpFailureError, AttributeError):
        return None
    return version if isinstance(version, str) else None


@pytest.fixture(scope="session")
def model(smoke: SmokeConfig, raw: Raw) -> str:
    if smoke.model:
        return smoke.model
    resp = raw.get("/v1/models")
    assert resp.status_code == 200, (
        f"cannot pick a default model: GET /v1/models -> {resp.status_code} {shown(resp.text, 300)}; pass --model"
    )
    body = resp.json()
    listed = body.get("data") if isinstance(body, dict) else None
    ids = (
        [m["id"] for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if isinstance(listed, list)
        else []
    )
    assert ids, f"GET /v1/models lists no model: {shown(resp.text, 300)}; pass --model"
    return ids[0]


@pytest.fixture(scope="session")
def image_server(smoke: SmokeConfig) -> Iterator[ImageServer | None]:
    if not smoke.local_image_server:
        yield None
        return
    with ImageServer(smoke.image_server_bind, smoke.image_server_host, smoke.image_server_port) as server:
        yield server


@dataclass(frozen=True)
class SmokeImage:
    url: str  # what the server fetches
    payload: bytes  # the exact bytes behind url
    server: ImageServer | None

    @property
    def data_url(self) -> str:
        return data_url(self.payload)


@pytest.fixture(scope="session")
def image(smoke: SmokeConfig, image_server: ImageServer | None) -> SmokeImage:
    if image_server is not None:
        return SmokeImage(image_server.url(IMAGE_PATH), generated_jpeg(), image_server)
    try:
        # NB: the base64 request must carry the same bytes the server fetches by URL, so fetch them here too
        resp = fetch("GET", smoke.image_url, deadline=smoke.request_timeout, cap=IMAGE_CAP, follow=True)
        if resp.status_code != 200 or not resp.content:
            raise HttpFailureError(f"HTTP {resp.status_code}, {len(resp.content)} bytes")
    except HttpFailureError as exc:
        pytest.fail(
            f"cannot download --image-url {smoke.image_url} to build the base64 request ({exc}). "
            "Pass --local-image-server to serve a generated JPEG from this process instead.",
            pytrace=False,
        )
    return SmokeImage(smoke.image_url, resp.content, None)


@pytest.fixture
def client(smoke: SmokeConfig):
    """An official openai client per test (fresh connections); no retries so failures are visible."""
    # NB: openai imports its aiohttp transport (async clients only) whenever aiohttp is installed (it is wherever
    # checkov is: the project's test extra); ~0.15 s of CPU on the first case's path. The suite is synchronous.
    sys.modules.setdefault(AIOHTTP_TRANSPORT, None)  # type: ignore[arg-type]
    from openai import OpenAI

    # NB: the openai client insists on a key; "EMPTY" is vLLM's own convention for open servers
    with OpenAI(
        api_key=smoke.api_key or "EMPTY", base_url=smoke.api_base, timeout=smoke.request_timeout, max_retries=0
    ) as c:
        yield c


@pytest.fixture
def chat_kwargs(smoke: SmokeConfig, model: str) -> dict:
    """Small, deterministic requests: temperature 0, a few tokens, the seed's stop ids."""
    return {
        "model": model,
        "temperature": 0,
        "max_tokens": smoke.max_tokens,
        "extra_body": {"stop_token_ids": list(smoke.stop_token_ids)},
    }


SEED_CASE = "test_seed_snippet_runs"


@pytest.fixture(scope="session")
def seed_runs(
    smoke: SmokeConfig, model: str, image: SmokeImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeedRuns]:
    """The seed snippets' scripts, with the server under test, its key and the suite's image in their environment."""
    directory = tmp_path_factory.mktemp("seed")
    picture = directory / "pic.jpg"
    picture.write_bytes(image.payload)
    env = {
        **os.environ,
        "SMOKE_BASE_URL": smoke.base_url,
        "SMOKE_MODEL": model,
        "SMOKE_IMAGE_URL": image.url,
        "SMOKE_IMAGE_PATH": str(picture),
        "PYTHONIOENCODING": "utf-8",
    }
    env.pop("SMOKE_API_KEY", None)
    env.pop("VLLM_API_KEY", None)
    if smoke.api_key:
        env["SMOKE_API_KEY"] = smoke.api_key
    runs = SeedRuns(env, directory)
    try:
        yield runs
    finally:
        runs.close()


@pytest.fixture(scope="session", autouse=True)
def _started_early(request: pytest.FixtureRequest, server_ready: float) -> None:
    """Work the selected cases will need, begun now so that it overlaps the cases before them: the large JPEG
    (in a thread) and the seed snippets' script (it waits for their cases: seed_runs.py)."""
    items = [item for item in request.session.items if isinstance(item, pytest.Function)]
    if any(item.path.stem == "test_large_images" for item in items):
        threading.Thread(target=large_jpeg, name="smoke-large-jpeg", daemon=True).start()
    if not any(item.originalname == SEED_CASE for item in items):
        return
    try:
        runs = request.getfixturevalue("seed_runs")
    except (Exception, pytest.fail.Exception, pytest.skip.Exception):
        return  # NB: pytest keeps a session fixture's error: the seed cases meet it themselves, nothing else does
    runs.start()
