"""The ops console served for real (uvicorn on a loopback port, in a thread) and a browser-like
HTTP client that keeps its cookies, reads the CSRF token from the page, and never follows
redirects by itself (tests look at each one).

The browser tests serve the console with the same `Served` and drive headless Chromium at its
`url` (tests/support/browser.py); the HTTP-level tests stay as they are.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette

from celery_app.bootstrap import Container
from runbooks.access.context import signed_in_as
from runbooks.console import serve
from runbooks.engine import history
from runbooks.engine.results import RunResult
from runbooks.service import run_steps
from tests.support.services import wait_for

if TYPE_CHECKING:
    from celery_app.bootstrap import Container

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
RUN_PAGE = re.compile(r"^/runs/([0-9]+)$")


class Served:
    """`app` on 127.0.0.1, a free port, with the console's own uvicorn settings."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        sock = serve.bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = serve.server(app)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        app.state.console.start()  # as serve.serve does: the queue sampler
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "the console to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.app.state.console.close()  # its background worker ping


def password(name: str) -> str:
    """The test password of operator `name` (long enough for the password rules)."""
    return f"{name}-correct-horse-battery"


class Browser:
    """One person's browser: cookies kept, redirects not followed."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(
        self, path: str, data: dict[str, str] | None = None, csrf: str | None = None
    ) -> httpx.Response:
        """POST `data` with the session's CSRF token (or `csrf` instead; "" sends none)."""
        token = self.csrf if csrf is None else csrf
        form = {**(data or {}), **({"csrf": token} if token else {})}
        return self.http.post(path, data=form)

    def sign_in(self, name: str, password: str, next: str = "/") -> httpx.Response:
        """Open the sign-in form and submit it; on success, keep the session's CSRF token."""
        form = self.get("/signin")
        token = CSRF.search(form.text)
        assert form.status_code == 200 and token, form.text[:300]
        done = self.http.post(
            "/signin",
            data={"csrf": token.group(1), "name": name, "password": password, "next": next},
        )
        if done.status_code == 303:
            page = self.get("/runs")
            found = CSRF.search(page.text)
            assert found, page.text[:300]
            self.csrf = found.group(1)
        return done

    def close(self) -> None:
        self.http.close()


@dataclass
class Held:
    """A run held at its gate: its history id, the gate file, the thread running it."""

    run_id: int
    gate: Path
    thread: threading.Thread
    result: dict[str, RunResult]

    def release(self) -> RunResult:
        """Create the gate; the run ends (its result)."""
        self.gate.touch()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the held run did not end"
        return self.result["run"]


def hold(
    app: Container, name: str, steps: list[dict[str, Any]], home: Path, operator: str = "root"
) -> Held:
    """A local run (`name`, as `operator`) of `steps`, then one that waits for a file: it stays
    `running` until :meth:`Held.release`, so what a page shows of it is shown while it runs."""
    gate = home / f"{name}.gate"
    waiting = {"name": "at the gate", "shell": f"while [ ! -e {gate} ]; do sleep 0.05; done"}
    result: dict[str, RunResult] = {}

    def run() -> None:
        with signed_in_as(operator, "run", {}):
            result["run"], _ = run_steps(
                app, name, [*steps, waiting], environment="local", environ={"HOME": str(home)}
            )

    newest = history.list_runs(app.sessions, 1)
    before = int(newest[0]["id"]) if newest else 0
    thread = threading.Thread(target=run, name=f"held-{name}", daemon=True)
    thread.start()

    def started() -> int | None:
        found = [r for r in history.list_runs(app.sessions, 5) if r["name"] == name]
        return int(found[0]["id"]) if found and found[0]["id"] > before else None

    wait_for(lambda: started() is not None, 30, f"run {name} to be recorded")
    return Held(started() or 0, gate, thread, result)


def run_started(response: httpx.Response) -> int:
    """The run a background action's POST opened: it redirects to the run's page at once."""
    assert response.status_code == 303, response.text[:800]
    found = RUN_PAGE.match(response.headers["location"])
    assert found, response.headers["location"]
    return int(found.group(1))


def run_finished(app: Container, run_id: int, timeout: float = 180) -> dict[str, Any]:
    """The run once its record is closed (a background action ends on its own)."""
    wait_for(
        lambda: history.get_run(app.sessions, run_id)["status"] != "running",
        timeout,
        f"run {run_id} to end",
        every=0.2,
    )
    return history.get_run(app.sessions, run_id)
