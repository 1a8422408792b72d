"""Every route of vLLM's router's own table (deploy/data/vllm-router-routes.json), called on a published
router front the way a client can: without a key, with a wrong key, with the client key; and a few other
spellings of its admin routes. Used on the compose stack and on the podman pod alike."""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote, urlsplit

import requests

from deploy.facts import route_table
from deploy.plan import Plan

WRONG_KEY = "sk-definitely-not-the-key"
NOT_FOUND = {"error": "Not Found"}
UNAUTHORIZED = {"error": "Unauthorized"}


def concrete(path: str, worker_url: str) -> str:
    """A table path with its placeholders filled in ({url} with a real worker, so a leak would act)."""
    return path.replace("{response_id}", "resp_0").replace("{url}", quote(worker_url, safe=""))


def request_for(plan: Plan, method: str, path: str, worker_url: str) -> tuple[str, dict | None]:
    """The path with a query, and a body: one that succeeds where the route is a client's, one that would act
    where it is an admin route (remove a real worker, add a foreign URL)."""
    model = plan.served_model_name
    if path == "/v1/chat/completions":
        return path, {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    if path == "/v1/completions":
        return path, {"model": model, "max_tokens": 1, "prompt": "hi"}
    if path == "/remove_worker":
        return f"{path}?url={quote(worker_url, safe='')}", None
    if path == "/add_worker":
        return f"{path}?url={quote('http://foreign.invalid:8000', safe='')}", None
    if path == "/workers" and method == "POST":
        return path, {"url": "http://foreign.invalid:8000"}
    return concrete(path, worker_url), ({} if method in ("POST", "PUT", "PATCH") else None)


def call(base_url: str, method: str, path: str, key: str | None, body: dict | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    response = requests.request(method, f"{base_url}{path}", headers=headers, json=body, timeout=120)
    return response.status_code, response.text[:300]


def as_json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def every_route(plan: Plan, base_url: str, key: str, worker_url: str) -> tuple[list[str], int]:
    """Problems found calling every route of the table three ways (empty: as it should be); calls made."""
    assert plan.router is not None
    allowed = {(r.method, r.path): r.public for r in plan.router.front_routes}
    problems, calls = [], 0
    for group, routes in route_table()["groups"].items():
        for route in routes:
            method, path = route["method"], route["path"]
            target, body = request_for(plan, method, path, worker_url)
            for label, sent in (("no key", None), ("a wrong key", WRONG_KEY), ("the client key", key)):
                status, text = call(base_url, method, target, sent, body)
                calls += 1
                where = f"{method} {target} ({group}) with {label}"
                if (method, path) not in allowed:
                    if status != 404 or as_json(text) != NOT_FOUND:
                        problems.append(f"{where}: {status} {text!r}, expected the front's 404")
                elif allowed[(method, path)] or sent == key:
                    if status != 200:
                        problems.append(f"{where}: {status} {text!r}, expected the router's 200")
                elif status != 401 or as_json(text) != UNAUTHORIZED:
                    problems.append(f"{where}: {status} {text!r}, expected the front's 401")
    return problems, calls


def raw_status(base_url: str, method: str, target: str, headers: list[tuple[str, str]]) -> int:
    """One request with the request target exactly as given (no client-side normalisation)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", "0")
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def other_spellings(base_url: str, key: str, worker_url: str) -> list[str]:
    """Admin routes spelled as a lenient server might read them, with the client key: none gets through.
    And two Authorization headers (the right one among them) are one too many."""
    query = f"?url={quote(worker_url, safe='')}"
    refused = [
        ("POST", f"/v1/models/../remove_worker{query}"),
        ("POST", f"/v1/chat/completions/../../remove_worker{query}"),
        ("POST", f"//remove_worker{query}"),
        ("POST", f"/remove_worker/{query}"),
        ("POST", f"/REMOVE_WORKER{query}"),
        ("POST", f"/%72emove_worker{query}"),
        ("POST", f"/remove%5Fworker{query}"),
        ("POST", f"http://router/remove_worker{query}"),
        ("GET", "/list_workers"),
        ("GET", "/v1/models/../list_workers"),
        ("GET", "/v1/models/"),
        ("DELETE", f"/workers/{quote(worker_url, safe='')}"),
    ]
    client = [("Authorization", f"Bearer {key}")]
    problems = [
        f"{method} {target}: {status}, expected 400 or 404"
        for method, target in refused
        if (status := raw_status(base_url, method, target, client)) not in (400, 404)
    ]
    # A query string is the router's business, not a way round the front.
    if (status := raw_status(base_url, "GET", "/v1/models?x=/../list_workers", client)) != 200:
        problems.append(f"GET /v1/models?x=/../list_workers: {status}, expected 200")
    both = [("Authorization", f"Bearer {WRONG_KEY}"), ("Authorization", f"Bearer {key}")]
    for headers in (both, both[::-1]):
        if (status := raw_status(base_url, "GET", "/v1/models", headers)) != 401:
            problems.append(f"GET /v1/models with two Authorization headers: {status}, expected 401")
    return problems
