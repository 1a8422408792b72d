"""The user's guide, run as written: both seed snippets as a subprocess against the server under test."""

import pytest

SNIPPETS = ["1", "2"]  # NB: conftest.py starts the selected ones' scripts early (smoke_tests/seed_runs.py)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=["image-url", "local-image"])
def test_seed_snippet_runs(snippet, smoke, seed_runs):
    # NB: the seed sets no max_tokens, so the server generates up to --max-model-len; allow for that
    proc = seed_runs.run(snippet, timeout=max(300.0, smoke.request_timeout * 5))
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
    lines = proc.stdout.splitlines()
    assert any(line.startswith("Chat response: ChatCompletion(") for line in lines), proc.stdout[-2000:]
    assert any(line.startswith("Chat response content:") for line in lines), proc.stdout[-2000:]
