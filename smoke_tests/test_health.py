"""Case 1: the server is up and serves the model."""

from smoke_tests.support import describe


def test_health_is_200(raw):
    resp = raw.get("/health")
    assert resp.status_code == 200, describe(resp)


def test_models_lists_served_model(raw, model):
    resp = raw.get("/v1/models")
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert model in ids, f"model {model!r} not served; /v1/models lists {ids}"
