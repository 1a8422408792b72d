"""Call every route of a running vLLM server, read from the server's own route table, with and without its key.

Standard library only, so the same file also runs inside a container (`docker exec -i C python - URL`,
key on stdin) to reach an engine that only the router publishes:

    python tests/tools/routes.py http://127.0.0.1:8000 < keyfile    # prints a JSON report

The table is the server's `GET /openapi.json` (asked with the key). A route a future vLLM adds is in it
and called with no change here; a few paths outside the table (and odd spellings of public ones) are
called too. Path parameters get a placeholder; request bodies are empty JSON objects, so nothing is run.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request

WRONG_KEY = "sk-wrong-key-0000000000000000000000"
# Not in any route table: the key check must not depend on a route existing.
EXTRA = [
    ("GET", "/no-such-route"),
    ("POST", "/no-such-route"),
    ("GET", "/health/"),
    ("GET", "/metricsx"),
    ("GET", "//v1/models"),
    ("GET", "/v1/../invocations"),
    ("POST", "/%69nvocations"),
]


def call(base: str, method: str, path: str, key: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read(1 << 16)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def route_table(base: str, key: str) -> list[tuple[str, str]]:
    request = urllib.request.Request(base + "/openapi.json", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        spec = json.loads(response.read(1 << 22))
    return sorted(
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, methods in spec["paths"].items()
        for method in methods
    )


def report(base: str, key: str) -> dict:
    table = route_table(base, key)
    rows = []
    for method, path in table + EXTRA:
        rows.append(
            {
                "method": method,
                "path": path,
                "in_table": (method, path) in table,
                "none": call(base, method, path, None),
                "wrong": call(base, method, path, WRONG_KEY),
                "right": call(base, method, path, key),
            }
        )
    return {"routes": len(table), "rows": rows}


if __name__ == "__main__":
    print(json.dumps(report(sys.argv[1], sys.stdin.read().strip())))


def lock_problems(found: dict, public: frozenset[str]) -> list[str]:
    """Every way a report breaks the rule: outside `public` (GET), no key and a wrong key get 401 and the
    right key does not; the public routes answer without a key."""
    problems = []
    for row in found["rows"]:
        where = f"{row['method']} {row['path']}"
        if row["path"] in public and row["method"] == "GET":
            if row["none"] != 200:
                problems.append(f"{where}: public, but {row['none']} without a key")
            continue
        if row["none"] != 401 or row["wrong"] != 401:
            problems.append(f"{where}: {row['none']} without a key, {row['wrong']} with a wrong one (not 401)")
        if row["right"] == 401:
            problems.append(f"{where}: 401 with the right key")
    return problems
