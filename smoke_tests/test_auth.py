"""Case 6: the API key is enforced on /v1/* and on every other route that runs the model (raw HTTP to see the status)."""

import pytest

from smoke_tests.support import describe, user_message

WRONG_KEY = "definitely-not-the-key"


@pytest.fixture(autouse=True)
def _needs_key(smoke):
    if not smoke.api_key:
        pytest.skip("no --api-key given: the server is assumed to run without one")


@pytest.mark.parametrize("key", [None, WRONG_KEY], ids=["missing-key", "wrong-key"])
@pytest.mark.parametrize(
    "method,path", [("GET", "/v1/models"), ("POST", "/v1/chat/completions")], ids=["models", "chat"]
)
def test_rejected_without_the_right_key(raw, smoke, model, image, method, path, key):
    if method == "GET":
        resp = raw.get(path, api_key=key)
    else:
        resp = raw.post(path, {"model": model, "messages": user_message(image.data_url), "max_tokens": 1}, api_key=key)
    assert resp.status_code == 401, describe(resp)
    if not smoke.key_on_every_route:  # NB: a router answers with its own body
        assert resp.json() == {"error": "Unauthorized"}, describe(resp)  # vLLM's auth middleware body


@pytest.mark.parametrize("key", [None, WRONG_KEY], ids=["missing-key", "wrong-key"])
@pytest.mark.parametrize("path", ["/invocations", "/tokenize"])
def test_inference_outside_v1_needs_the_key_too(raw, smoke, model, image, path, key):
    """vLLM 0.32 checks its key on /v1… only, yet /invocations (SageMaker) runs a chat completion and /tokenize
    fetches the image URLs it is given. A locked deployment refuses both without the key; a router that does
    not serve the route at all may answer 404."""
    body = {"model": model, "messages": user_message(image.url), "max_tokens": 1}
    resp = raw.post(path, body, api_key=key)
    allowed = {401, 404} if smoke.key_on_every_route else {401}
    assert resp.status_code in allowed, describe(resp)


def test_health_is_open_or_checked_as_configured(raw, smoke):
    """vLLM leaves /health open; a router in front (--key-on-every-route) checks the key there too. Its admin
    routes (which would let a caller remove a replica or add any URL) are refused even with the client key:
    vLLM's router has no separate admin credential, so they must not be reachable from clients at all."""
    if smoke.key_on_every_route:
        assert raw.get("/health", api_key=None).status_code == 401
        assert raw.post("/remove_worker?url=http://x:8000", {}, api_key=None).status_code in (401, 404)
        # NB: a read-only admin route, so an endpoint that wrongly answers it is not changed by the check.
        assert raw.get("/list_workers").status_code in (401, 403, 404), "the client key opens the router's admin routes"
        assert raw.get("/health").status_code == 200
    else:
        assert raw.get("/health", api_key=None).status_code == 200
