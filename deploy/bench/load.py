"""Multimodal load against any OpenAI-compatible endpoint: one image per request, URL and base64 mixed.

The one load generator of the project (`vllm-deploy load`, `make bench`, the stack test's load case).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy.errors import UserError, shown
from deploy.runtime.http import MIB, Answer, Connections, HttpError, fetch, pick
from deploy.runtime.process import Runner, run

PROMPT = "请描述这张图片"
REQUEST_DEADLINE_SECONDS = 300.0  # one chat request, all told (8 tokens; an image server it fetches from included)
MODELS_DEADLINE_SECONDS = 30.0
ANSWER_CAP = 1 * MIB  # a chat completion of 8 tokens is well under 2 KiB


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    failures: dict[str, int] = field(default_factory=dict)  # what the failed requests got: a status or an error


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def completion(answer: Answer) -> None:
    """A chat completion, or an HttpError saying what came instead: a 2xx JSON object whose first choice
    has a message."""
    answer.ok().read(lambda body: pick(body, "choices[0].message", dict))


def load(
    base_url: str,
    api_key: str | None,
    model: str,
    concurrency: int,
    count: int,
    image_urls: list[str],
    advance: Callable[[], None] = lambda: None,
    until: Callable[[], bool] | None = None,
    deadline: float = REQUEST_DEADLINE_SECONDS,
) -> LoadResult:
    """`count` chat requests, each with one image, cycling through `image_urls` (URLs and data URLs).

    With `until`, at least `count` requests and then more until `until()` is true (load that spans an
    operation such as a rollout). `requests` in the result is how many were sent. A request that gets
    anything but a chat completion within `deadline` seconds is an error; `failures` counts what came.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    local, kept, kept_lock = threading.local(), [], threading.Lock()

    def one(index: int) -> tuple[str | None, float]:
        connections = getattr(local, "connections", None)
        if connections is None:
            local.connections = connections = Connections()
            with kept_lock:
                kept.append(connections)
        body = {
            "model": model,
            "max_tokens": 8,
            "temperature": 0,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": PROMPT},
                        {"type": "image_url", "image_url": {"url": image_urls[index % len(image_urls)]}},
                    ],
                }
            ],
        }
        started = time.monotonic()
        try:
            completion(
                fetch(
                    "POST",
                    f"{base_url}/v1/chat/completions",
                    json_body=body,
                    headers=headers,
                    deadline=deadline,
                    cap=ANSWER_CAP,
                    connections=connections,
                )
            )
            failure = None
        except HttpError as error:
            failure = error.brief
        advance()
        return failure, time.monotonic() - started

    started = time.monotonic()
    if until is None:
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(count)))
    else:
        results, issued, lock = [], iter(range(10**9)), threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    index = next(issued)
                    if index >= count and until():
                        return
                results.append(one(index))

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        count = len(results)
    seconds = time.monotonic() - started
    for connections in kept:
        connections.close()
    latencies = sorted(t for _, t in results)
    failures = Counter(failure for failure, _ in results if failure)
    return LoadResult(
        concurrency,
        count,
        sum(failures.values()),
        round(seconds, 2),
        round(count / seconds, 2),
        round(_percentile(latencies, 0.5) * 1000, 1),
        round(_percentile(latencies, 0.95) * 1000, 1),
        dict(failures),
    )


@contextmanager
def load_in_background(
    base_url: str, api_key: str | None, model: str, concurrency: int, count: int, image_urls: list[str]
) -> Iterator[dict[str, LoadResult]]:
    """`load` in a thread while the block runs (at least `count` requests, more until the block ends); its result
    under "load" once the block has ended (an operation under load: a rollout, a kill, a hang)."""
    stop, results = threading.Event(), {}

    def traffic() -> None:
        results["load"] = load(base_url, api_key, model, concurrency, count, image_urls, until=stop.is_set)

    loader = threading.Thread(target=traffic)
    loader.start()
    try:
        yield results
    finally:
        stop.set()
        loader.join()


def first_model(base_url: str, api_key: str | None, deadline: float = MODELS_DEADLINE_SECONDS) -> str:
    """The first model GET /v1/models lists; an HttpError (a UserError) naming what came instead."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        answer = fetch("GET", f"{base_url}/v1/models", headers=headers, deadline=deadline, cap=ANSWER_CAP)
        return answer.ok().read(lambda body: pick(body, "data[0].id", str))
    except HttpError as error:
        raise error.about("cannot pick a model (pass --model)") from None


def levels_of(concurrency: str) -> list[int]:
    """`--concurrency 1,4,8` as levels; a UserError for anything but positive whole numbers."""
    parts = [part.strip() for part in concurrency.split(",")]
    if not all(part.isascii() and part.isdigit() and int(part) > 0 for part in parts):
        raise UserError(
            f"load: --concurrency takes positive whole numbers separated by commas (e.g. 1,4,8), "
            f"not '{shown(concurrency, 60)}'"
        )
    return [int(part) for part in parts]


def load_levels(
    base_url: str,
    api_key: str | None,
    model: str | None,
    levels: list[int],
    count: int,
    image_urls: list[str],
    deadline: float = REQUEST_DEADLINE_SECONDS,
) -> list[LoadResult]:
    """Load at each concurrency level with a rich progress bar; the model defaults to the first served."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if count < 1 or not deadline > 0:
        raise UserError(f"load: --requests and --timeout must be positive (got {count} and {deadline:g})")
    if model is None:
        model = first_model(base_url, api_key, min(deadline, MODELS_DEADLINE_SECONDS))
    # NB: a few untimed requests first, so the first level does not pay for warming caches.
    load(base_url, api_key, model, 1, 5, image_urls, deadline=deadline)
    results = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as progress:
        for level in levels:
            task = progress.add_task(f"concurrency {level}", total=count)
            results.append(
                load(
                    base_url,
                    api_key,
                    model,
                    level,
                    count,
                    image_urls,
                    functools.partial(progress.advance, task),
                    deadline=deadline,
                )
            )
    return results


def load_levels_apart(
    base_url: str,
    api_key: str,
    model: str,
    levels: list[int],
    count: int,
    image_server_host: str | None,
    out: Path,
    runner: Runner = run,
    wrap: Callable[[Sequence[str]], list[str]] = list,
) -> list[LoadResult]:
    """`load_levels` in a process of its own (`vllm-deploy load`, its image server included), which `wrap`
    may place elsewhere (a cgroup of its own): the client then competes with the server as one process."""
    command = [
        sys.executable,
        "-m",
        "deploy",
        "load",
        "--base-url",
        base_url,
        "--model",
        model,
        "--concurrency",
        ",".join(map(str, levels)),
        "--requests",
        str(count),
        "--json",
        str(out),
        *(["--image-server-host", image_server_host] if image_server_host else []),
    ]
    out.unlink(missing_ok=True)
    # NB: the key through the environment (the command's default), never argv.
    done = runner(wrap(command), env={**os.environ, "VLLM_API_KEY": api_key}, timeout=1800)
    if not out.exists():
        raise RuntimeError(
            f"the load client wrote no result (exit {done.returncode}):\n{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return [LoadResult(**r) for r in json.loads(out.read_text(encoding="utf-8"))["results"]]


def image_urls_for(server_url: str | None) -> list[str]:
    """Half by URL (a server the vLLM server can reach), half as a base64 data URL."""
    from smoke_tests.image_server import generated_jpeg

    data_url = "data:image/jpeg;base64," + base64.b64encode(generated_jpeg()).decode()
    return [server_url, data_url] if server_url else [data_url]


@contextmanager
def image_server(host: str | None) -> Iterator[str | None]:
    if host is None:
        yield None
        return
    from smoke_tests.image_server import IMAGE_PATH, ImageServer

    with ImageServer(host, host, 0) as server:
        yield server.url(IMAGE_PATH)


def median_results(rounds: list[list[LoadResult]]) -> list[LoadResult]:
    """Per concurrency level, the median of each figure over rounds."""
    combined = []
    for level in zip(*rounds, strict=True):  # NB: every round ran the same levels
        combined.append(
            LoadResult(
                level[0].concurrency,
                sum(r.requests for r in level),
                sum(r.errors for r in level),
                round(statistics.median(r.seconds for r in level), 2),
                round(statistics.median(r.requests_per_second for r in level), 2),
                round(statistics.median(r.p50_ms for r in level), 1),
                round(statistics.median(r.p95_ms for r in level), 1),
            )
        )
    return combined


def results_json(results: list[LoadResult]) -> list[dict]:
    return [asdict(r) for r in results]


def print_results(results: list[LoadResult], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("concurrency", "requests", "errors", "req/s", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r.concurrency),
            str(r.requests),
            str(r.errors),
            f"{r.requests_per_second:.1f}",
            f"{r.p50_ms:.0f}",
            f"{r.p95_ms:.0f}",
        )
    console = Console()
    console.print(table)
    for r in results:
        for failure, count in sorted(r.failures.items(), key=lambda item: -item[1]):
            # NB: no markup: a failure quotes the server (escaped, but "[red]" is plain text there).
            console.print(f"concurrency {r.concurrency}: {count} × {failure}", markup=False, highlight=False)


def write_json(path: Path, data: dict) -> None:
    """Results as JSON; LoadResult values become mappings."""

    def plain(value):
        return asdict(value) if isinstance(value, LoadResult) else str(value)

    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=plain) + "\n", encoding="utf-8")


def load_command(
    base_url: str,
    api_key: str | None,
    model: str | None,
    concurrency: str,
    count: int,
    image_server_host: str | None,
    deadline: float,
    json_path: Path | None,
) -> int:
    """`vllm-deploy load`: each concurrency level in turn, the table, the JSON; 1 when a request failed."""
    levels = levels_of(concurrency)
    with image_server(image_server_host) as url:
        results = load_levels(
            base_url.rstrip("/"), api_key, model, levels, count, image_urls_for(url), deadline=deadline
        )
    print_results(results, f"{base_url}: {count} image requests per level")
    if json_path is not None:
        write_json(json_path, {"base_url": base_url, "results": results})
    return 1 if any(r.errors for r in results) else 0
