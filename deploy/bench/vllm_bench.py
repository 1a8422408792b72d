"""`vllm bench serve`, vLLM's own serving benchmark, run from the engine venv: the load figures the field
publishes (request throughput; TTFT, TPOT, ITL and end-to-end latency percentiles), so ours compare.

Its `random-mm` dataset sends one random image per request as a base64 data URL with a random prompt of
a fixed token length, streamed (`openai-chat`), so the first token is timed. URL images and load that
spans a rollout stay with our own generator (deploy/bench/load.py).

NB: it takes the key from OPENAI_API_KEY only, and exits 0 even when every request failed: the verdict
is `failed` in its result JSON, which `parse` reads.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.runtime.process import Runner, run

METRICS = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class ServeSettings:
    """What one run sends. The defaults fit the tiny model on CPU: short prompts, short answers."""

    prompts: int = 100
    concurrency: int = 4
    input_len: int = 64
    output_len: int = 16  # with --ignore-eos every answer has exactly this many tokens
    image_height: int = 224
    image_width: int = 224
    warmups: int = 4
    seed: int = 0


@dataclass(frozen=True)
class ServeResult:
    completed: int
    failed: int
    duration_s: float
    requests_per_second: float
    output_tokens_per_second: float
    # per metric (ttft, tpot, itl, e2el): mean and the percentiles, in ms
    ms: dict[str, dict[str, float]]


def command(vllm: Path, base_url: str, model: str, tokenizer: Path, settings: ServeSettings, result: Path) -> list[str]:
    """The `vllm bench serve` argv: chat endpoint, random-mm with one image of a fixed size per request."""
    s = settings
    return [
        str(vllm),
        "bench",
        "serve",
        "--backend",
        "openai-chat",
        "--endpoint",
        "/v1/chat/completions",
        "--base-url",
        base_url,
        "--model",
        model,
        "--tokenizer",
        str(tokenizer),
        "--dataset-name",
        "random-mm",
        "--num-prompts",
        str(s.prompts),
        "--max-concurrency",
        str(s.concurrency),
        "--random-input-len",
        str(s.input_len),
        "--random-output-len",
        str(s.output_len),
        "--random-mm-base-items-per-request",
        "1",
        "--random-mm-limit-mm-per-prompt",
        json.dumps({"image": 1, "video": 0}),
        # NB: a Python literal (keys are (height, width, frames) tuples), not JSON.
        "--random-mm-bucket-config",
        f"{{({s.image_height}, {s.image_width}, 1): 1.0}}",
        "--ignore-eos",
        "--temperature",
        "0",
        "--num-warmups",
        str(s.warmups),
        "--seed",
        str(s.seed),
        "--percentile-metrics",
        ",".join(METRICS),
        "--metric-percentiles",
        ",".join(map(str, PERCENTILES)),
        "--disable-tqdm",
        "--save-result",
        "--result-dir",
        str(result.parent),
        "--result-filename",
        result.name,
    ]


def environment(vllm: Path, key: str, home: Path) -> dict[str, str]:
    """Offline (the tokenizer is a local directory), no usage stats, a writable HOME of its own."""
    return {
        "PATH": f"{vllm.parent}:/usr/bin:/bin",
        "HOME": str(home),
        "OPENAI_API_KEY": key,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }


def parse(data: dict) -> ServeResult:
    """The figures of a result JSON; `failed` counts requests that got an error (401 included)."""

    def ms(metric: str) -> dict[str, float]:
        found = {"mean": data[f"mean_{metric}_ms"]} | {f"p{p}": data[f"p{p}_{metric}_ms"] for p in PERCENTILES}
        return {name: round(value, 1) for name, value in found.items()}

    return ServeResult(
        int(data["completed"]),
        int(data["failed"]),
        round(data["duration"], 2),
        round(data["request_throughput"], 2),
        round(data["output_throughput"], 1),
        {metric: ms(metric) for metric in METRICS},
    )


def serve_bench(
    vllm: Path,
    base_url: str,
    model: str,
    tokenizer: Path,
    key: str,
    work: Path,
    settings: ServeSettings,
    label: str,
    runner: Runner = run,
    wrap: Callable[[Sequence[str]], list[str]] = list,
) -> ServeResult:
    """Run it once (`wrap` may put it in a cgroup) and read its result; RuntimeError when it wrote none."""
    result = work / f"vllm-bench-{label}.json"
    result.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    done = runner(
        wrap(command(vllm, base_url, model, tokenizer, settings, result)),
        env=environment(vllm, key, work / "vllm-bench-home"),
        timeout=1800,
    )
    if not done.ok or not result.exists():
        output = (done.stderr or done.stdout).strip()[-2000:]
        raise RuntimeError(f"vllm bench serve ({label}) wrote no result (exit {done.returncode}):\n{output}")
    return parse(json.loads(result.read_text(encoding="utf-8")))


def median_result(results: list[ServeResult]) -> ServeResult:
    """Each figure's median over rounds; counts are summed."""

    def median(values) -> float:
        return round(statistics.median(values), 2)

    return ServeResult(
        sum(r.completed for r in results),
        sum(r.failed for r in results),
        median(r.duration_s for r in results),
        median(r.requests_per_second for r in results),
        median(r.output_tokens_per_second for r in results),
        {
            metric: {
                name: round(statistics.median(r.ms[metric][name] for r in results), 1) for name in results[0].ms[metric]
            }
            for metric in METRICS
        },
    )


def result_json(result: ServeResult) -> dict:
    return asdict(result)
