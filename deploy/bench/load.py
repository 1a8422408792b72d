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

import requests

from deploy.runtime.process import Runner, run

PROMPT = "请描述这张图片"


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


def load(base_url: str, api_key: str | None, model: str, concurrency: int, count: int, image_urls: list[str],
         advance: Callable[[], None] = lambda: None, until: Callable[[], bool] | None = None) -> LoadResult:
    """`count` chat requests, each with one image, cycling through `image_urls` (URLs and data URLs).

    With `until`, at least `count` requests and then more until `until()` is true (load that spans an
    operation such as a rollout). `requests` in the result is how many were sent.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    local = threading.local()

    def one(index: int) -> tuple[str | None, float]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        body = {"model": model, "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": PROMPT},
                    {"type": "image_url", "image_url": {"url": image_urls[index % len(image_urls)]}}]}]}
        started = time.monotonic()
        try:
            response = session.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=300)
            failure = None if response.ok else f"HTTP {response.status_code}: {response.text[:80]}"
        except requests.RequestException as exc:
            failure, local.session = type(exc).__name__, None
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
    latencies = sorted(t for _, t in results)
    failures = Counter(failure for failure, _ in results if failure)
    return LoadResult(concurrency, count, sum(failures.values()), round(seconds, 2),
                      round(count / seconds, 2), round(_percentile(latencies, 0.5) * 1000, 1),
                      round(_percentile(latencies, 0.95) * 1000, 1), dict(failures))


def load_levels(base_url: str, api_key: str | None, model: str | None, levels: list[int], count: int,
                image_urls: list[str]) -> list[LoadResult]:
    """Load at each concurrency level with a rich progress bar; the model defaults to the first served."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if model is None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        model = requests.get(f"{base_url}/v1/models", headers=headers, timeout=30).json()["data"][0]["id"]
    # NB: a few untimed requests first, so the first level does not pay for warming caches.
    load(base_url, api_key, model, 1, 5, image_urls)
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as progress:
        for level in levels:
            task = progress.add_task(f"concurrency {level}", total=count)
            results.append(load(base_url, api_key, model, level, count, image_urls,
                                functools.partial(progress.advance, task)))
    return results


def load_levels_apart(base_url: str, api_key: str, model: str, levels: list[int], count: int,
                      image_server_host: str | None, out: Path, runner: Runner = run,
                      wrap: Callable[[Sequence[str]], list[str]] = list) -> list[LoadResult]:
    """`load_levels` in a process of its own (`vllm-deploy load`, its image server included), which `wrap`
    may place elsewhere (a cgroup of its own): the client then competes with the server as one process."""
    command = [sys.executable, "-m", "deploy", "load", "--base-url", base_url, "--model", model,
               "--concurrency", ",".join(map(str, levels)), "--requests", str(count), "--json", str(out),
               *(["--image-server-host", image_server_host] if image_server_host else [])]
    out.unlink(missing_ok=True)
    # NB: the key through the environment (the command's default), never argv.
    done = runner(wrap(command), env={**os.environ, "VLLM_API_KEY": api_key}, timeout=1800)
    if not out.exists():
        raise RuntimeError(f"the load client wrote no result (exit {done.returncode}):\n"
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
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
        combined.append(LoadResult(
            level[0].concurrency, sum(r.requests for r in level), sum(r.errors for r in level),
            round(statistics.median(r.seconds for r in level), 2),
            round(statistics.median(r.requests_per_second for r in level), 2),
            round(statistics.median(r.p50_ms for r in level), 1), round(statistics.median(r.p95_ms for r in level), 1)))
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
        table.add_row(str(r.concurrency), str(r.requests), str(r.errors), f"{r.requests_per_second:.1f}",
                      f"{r.p50_ms:.0f}", f"{r.p95_ms:.0f}")
    Console().print(table)


def write_json(path: Path, data: dict) -> None:
    """Results as JSON; LoadResult values become mappings."""
    def plain(value):
        return asdict(value) if isinstance(value, LoadResult) else str(value)

    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=plain) + "\n", encoding="utf-8")
