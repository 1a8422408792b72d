"""Request builders and a raw HTTP helper shared by the smoke tests."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import requests

SEED_PROMPT = "请描述这张图片"


def data_url(payload: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def user_message(*image_urls: str, text: str = SEED_PROMPT) -> list[dict[str, Any]]:
    """The seed's message shape: one user turn, text first, then one image_url part per image."""
    return [{"role": "user", "content": [{"type": "text", "text": text}, *(image_part(u) for u in image_urls)]}]


@dataclass(frozen=True)
class Raw:
    """Raw HTTP against the server, one new connection per call.

    NB: no shared session: after a 500 vLLM closes the keep-alive connection, which would turn the next
    call on a reused connection into a connection error instead of the status we want to see.
    """

    base_url: str
    api_key: str | None
    timeout: float

    def headers(self, api_key: str | None = "default") -> dict[str, str]:
        key = self.api_key if api_key == "default" else api_key
        return {"Authorization": f"Bearer {key}"} if key is not None else {}

    def get(self, path: str, api_key: str | None = "default") -> requests.Response:
        return requests.get(self.base_url + path, headers=self.headers(api_key), timeout=self.timeout)

    def post(self, path: str, body: dict[str, Any], api_key: str | None = "default") -> requests.Response:
        return requests.post(self.base_url + path, json=body, headers=self.headers(api_key), timeout=self.timeout)


def describe(resp: requests.Response) -> str:
    """Status and (truncated) body, for assertion messages."""
    return f"{resp.request.method} {resp.url} -> {resp.status_code}: {resp.text[:500]}"
