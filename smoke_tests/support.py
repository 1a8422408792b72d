"""Request builders and a raw HTTP helper shared by the smoke tests."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from smoke_tests.bounded import DEFAULT_CAP, Answer, fetch, shown

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
    """Raw HTTP against the server, one new connection per call, each within `timeout` seconds all told and
    at most `cap` bytes of answer (smoke_tests/bounded.py).

    NB: no shared session: after a 500 vLLM closes the keep-alive connection, which would turn the next
    call on a reused connection into a connection error instead of the status we want to see.
    """

    base_url: str
    api_key: str | None
    timeout: float
    cap: int = DEFAULT_CAP

    def headers(self, api_key: str | None = "default") -> dict[str, str]:
        key = self.api_key if api_key == "default" else api_key
        return {"Authorization": f"Bearer {key}"} if key is not None else {}

    def get(self, path: str, api_key: str | None = "default") -> Answer:
        return fetch("GET", self.base_url + path, headers=self.headers(api_key), deadline=self.timeout, cap=self.cap)

    def post(self, path: str, body: dict[str, Any], api_key: str | None = "default") -> Answer:
        return fetch(
            "POST",
            self.base_url + path,
            json_body=body,
            headers=self.headers(api_key),
            deadline=self.timeout,
            cap=self.cap,
        )


def describe(resp: Answer) -> str:
    """Status and (escaped, truncated) body, for assertion messages."""
    return f"{resp.method} {resp.url} -> {resp.status_code}: {shown(resp.text, 500)}"
