"""The running router's own API (vLLM's router): which replicas it sends to, and taking one out and back.

Its admin routes check the key like every other route (our launcher turns the router's client check on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from deploy.runtime.http import KIB, Answer, HttpError, fetch, pick

T = TypeVar("T")
ADMIN_DEADLINE_SECONDS = 30.0  # the router checks the worker's /health before it adds it back
READINESS_DEADLINE_SECONDS = 10.0
ANSWER_CAP = 256 * KIB


@dataclass(frozen=True)
class RouterClient:
    endpoint: str  # the router's published address, e.g. http://127.0.0.1:8010
    key: str
    admin_deadline: float = ADMIN_DEADLINE_SECONDS
    readiness_deadline: float = READINESS_DEADLINE_SECONDS

    def _call(self, method: str, path: str, deadline: float, check: Callable[[Answer], T], **params: str) -> T:
        try:
            answer = fetch(method, f"{self.endpoint}{path}", params=params, deadline=deadline, cap=ANSWER_CAP,
                           headers={"Authorization": f"Bearer {self.key}"})
            return check(answer)
        except HttpError as error:
            raise error.about("the router") from None

    def readiness(self) -> dict[str, Any]:
        """The router's /readiness answer, a JSON object (e.g. its `healthy_workers`); 503 while none is healthy."""
        def check(answer: Answer) -> dict[str, Any]:
            if answer.status != 503:
                answer.ok()
            return answer.read(lambda body: pick(body, "", dict))

        return self._call("GET", "/readiness", self.readiness_deadline, check)

    def remove(self, worker_url: str) -> None:
        """The router sends no new request to this replica; the ones in flight finish."""
        self._call("POST", "/remove_worker", self.admin_deadline, Answer.ok, url=worker_url)

    def add(self, worker_url: str) -> None:
        """The router takes the replica back (it checks /health before it does)."""
        self._call("POST", "/add_worker", self.admin_deadline, Answer.ok, url=worker_url)
