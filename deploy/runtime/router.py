"""The running router's own API (vLLM's router): which replicas it sends to, and taking one out and back.

Its admin routes check the key like every other route (our launcher turns the router's client check on).
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from deploy.errors import UserError


@dataclass(frozen=True)
class RouterClient:
    endpoint: str  # the router's published address, e.g. http://127.0.0.1:8010
    key: str

    def _call(self, method: str, path: str, **params: str) -> requests.Response:
        response = requests.request(method, f"{self.endpoint}{path}", params=params, timeout=30,
                                    headers={"Authorization": f"Bearer {self.key}"})
        if not response.ok:
            raise UserError(f"the router answered {method} {path} with {response.status_code}: {response.text[:200]}")
        return response

    def readiness(self) -> dict:
        return requests.get(f"{self.endpoint}/readiness", headers={"Authorization": f"Bearer {self.key}"},
                            timeout=10).json()

    def remove(self, worker_url: str) -> None:
        """The router sends no new request to this replica; the ones in flight finish."""
        self._call("POST", "/remove_worker", url=worker_url)

    def add(self, worker_url: str) -> None:
        """The router takes the replica back (it checks /health before it does)."""
        self._call("POST", "/add_worker", url=worker_url)
