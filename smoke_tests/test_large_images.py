"""Case 8: worst-case large images (4000x3000, a phone photo) are served within the deployment's limits or
refused with a clear 4xx, and the server keeps serving. Large images are the most common out-of-memory
report for MiniCPM-V and Qwen-VL: their processor settings (max_slice_nums, max_pixels) bound what one costs."""

from __future__ import annotations

from smoke_tests.image_server import LARGE_SIZE, generated_jpeg, large_jpeg
from smoke_tests.support import data_url, describe, user_message

WIDTH, HEIGHT = LARGE_SIZE


def _chat(model: str, *images: str) -> dict:
    return {"model": model, "messages": user_message(*images), "max_tokens": 1, "temperature": 0}


def _still_serves(raw, model: str) -> None:
    # With the key: vLLM serves /health without one, but the router guards every route.
    assert raw.get("/health").status_code == 200, "server unhealthy after large images"
    small = raw.post("/v1/chat/completions", _chat(model, data_url(generated_jpeg())))
    assert small.status_code == 200, f"a small image after large ones: {describe(small)}"


def _clear_client_error(resp) -> None:
    assert 400 <= resp.status_code < 500, describe(resp)
    error = resp.json().get("error")
    assert isinstance(error, dict) and error.get("message"), f"no OpenAI-style error object: {describe(resp)}"


def test_a_large_image_is_served_within_its_token_bound_or_refused(raw, smoke, model):
    resp = raw.post("/v1/chat/completions", _chat(model, data_url(large_jpeg(WIDTH, HEIGHT))))
    if resp.status_code == 200:
        if smoke.image_tokens:
            text_only = raw.post("/v1/chat/completions", _chat(model))
            assert text_only.status_code == 200, describe(text_only)
            cost = resp.json()["usage"]["prompt_tokens"] - text_only.json()["usage"]["prompt_tokens"]
            assert 0 < cost <= smoke.image_tokens, (
                f"one {WIDTH}x{HEIGHT} image took {cost} prompt tokens, more than the deployment's worst case "
                f"{smoke.image_tokens} (--image-tokens)"
            )
    else:
        _clear_client_error(resp)
    _still_serves(raw, model)


def test_the_image_limit_of_large_images(raw, smoke, model):
    """As many large images as the server accepts (--max-images). A deployment whose estimate says they fit
    (--image-tokens) must serve them; otherwise a clear 4xx is allowed."""
    resp = raw.post("/v1/chat/completions", _chat(model, *[data_url(large_jpeg(WIDTH, HEIGHT))] * smoke.max_images))
    if smoke.image_tokens:
        assert resp.status_code == 200, f"{smoke.max_images} large images are within the limits: {describe(resp)}"
    elif resp.status_code != 200:
        _clear_client_error(resp)
    _still_serves(raw, model)
