"""The running router's own API (vLLM's router): which replicas it sends to, and taking one out and back.

Its admin routes are not reachable from outside its container: the front (haproxy) on the published port
answers them 404, and the router itself listens on 127.0.0.1 inside the container. So an admin call runs
a small program with the image's own Python inside the container (`docker exec`, `podman exec`; on
Kubernetes `kubectl exec`), given the method and the URL as arguments. Readiness is public at the front.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deploy.errors import UserError
from deploy.runtime.http import KIB, Answer, HttpError, fetch, pick
from deploy.runtime.process import Runner, run

READINESS_DEADLINE_SECONDS = 10.0

BODY_CAP = 65536  # bytes of an admin answer kept
TIMEOUT_SECONDS = 30  # the router's own answer; the exec around it gets a little more
# Run inside the router's container by its Python: METHOD URL -> one JSON line {"status", "body"}.
ADMIN_PROGRAM = f"""\
import json, sys, urllib.error, urllib.request
method, url = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
try:
    with urllib.request.urlopen(request, timeout={TIMEOUT_SECONDS}) as answer:
        status, body = answer.status, answer.read({BODY_CAP})
except urllib.error.HTTPError as error:
    status, body = error.code, error.read({BODY_CAP})
print(json.dumps({{"status": status, "body": body.decode("utf-8", "replace")}}))
"""


@dataclass(frozen=True)
class AdminAnswer:
    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class RouterClient:
    endpoint: str  # the front's published address, e.g. http://127.0.0.1:8010: public /readiness
    exec_prefix: Sequence[str]  # runs a command inside the router's container: [docker, exec, CONTAINER]
    python: str  # the image's Python
    admin_url: str  # the router's own address inside its container, e.g. http://127.0.0.1:8001
    runner: Runner = run
    readiness_deadline: float = READINESS_DEADLINE_SECONDS

    def admin(self, method: str, path: str, query: str = "") -> AdminAnswer:
        """One call to the router's own port, from inside its container; any status is returned."""
        url = f"{self.admin_url}{path}" + (f"?{query}" if query else "")
        done = self.runner(
            [*self.exec_prefix, self.python, "-c", ADMIN_PROGRAM, method, url], timeout=TIMEOUT_SECONDS + 15
        )
        if not done.ok:
            detail = (done.stderr or done.stdout).strip()[-300:]
            raise UserError(
                f"could not reach the router's {method} {path} inside its container (exit "
                f"{done.returncode}): {detail!r}"
            )
        try:
            found = json.loads(done.stdout.strip().splitlines()[-1])
            return AdminAnswer(int(found["status"]), str(found["body"]))
        except (ValueError, IndexError, KeyError, TypeError):
            raise UserError(
                f"the router's {method} {path} gave no answer of the expected shape: {done.stdout.strip()[-300:]!r}"
            ) from None

    def _checked(self, method: str, path: str, **params: str) -> AdminAnswer:
        answer = self.admin(method, path, urllib.parse.urlencode(params))
        if not answer.ok:
            raise UserError(f"the router answered {method} {path} with {answer.status}: {answer.body[:200]!r}")
        return answer

    def readiness(self) -> dict[str, Any]:
        """The router's /readiness through the front (public): {"healthy_workers": …, "total_workers": …};
        503 while no replica is healthy."""

        def check(answer: Answer) -> dict[str, Any]:
            if answer.status != 503:
                answer.ok()
            return answer.read(lambda body: pick(body, "", dict))

        try:
            return check(fetch("GET", f"{self.endpoint}/readiness", deadline=self.readiness_deadline, cap=256 * KIB))
        except HttpError as error:
            raise error.about("the router") from None

    def workers(self) -> list[str]:
        """The worker URLs the router sends to."""
        answer = self._checked("GET", "/list_workers")
        try:
            urls = json.loads(answer.body)["urls"]
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f'the router\'s /list_workers answered {answer.body[:200]!r}, not {{"urls": […]}}'
            ) from None
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise UserError(f"the router's /list_workers answered {answer.body[:200]!r}, not a list of URLs")
        return urls

    def remove(self, worker_url: str) -> None:
        """The router sends no new request to this replica; the ones in flight finish."""
        self._checked("POST", "/remove_worker", url=worker_url)

    def add(self, worker_url: str) -> None:
        """The router takes the replica back (it checks /health before it does)."""
        self._checked("POST", "/add_worker", url=worker_url)
