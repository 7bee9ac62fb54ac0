"""The ops console over HTTP: a real uvicorn serving the app, real Redis (sessions, login
protection, the broker a retry sends to) and real SQL (SQLite and PostgreSQL).

One console per database for the module (operators are made once: each scrypt hash costs
~0.2 s); tests that only exercise Redis or the HTTP layer run on SQLite alone.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from celery_app.bootstrap import Container
from celery_app.celery import make_app
from celery_app.infra.models import FailedTask
from celery_app.ops.failed_tasks import record_failure
from celery_app.stores.login import LoginPolicy
from runbooks.access import operators
from runbooks.access.context import signed_in_as
from runbooks.console import app as web
from runbooks.console import serve, wiring
from runbooks.console.wiring import Console
from runbooks.engine import history
from runbooks.errors import AccessDenied
from runbooks.service import run_steps
from tests.support.cli import clean_environ, start_invoke
from tests.support.console import Browser, Served, password
from tests.support.redis_app import app_env, migrated_app
from tests.support.services import (
    RedisServer,
    create_pg_database,
    free_port,
    start_redis,
    wait_for,
)

ROLES = {"root": "admin", "bob": "approver", "ana": "operator", "val": "viewer"}
SECRET = "hunter2-not-for-pages"
HEADERS = {
    "content-security-policy": "default-src 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


@dataclass
class Stack:
    app: Container
    console: Console
    served: Served
    redis: RedisServer
    browsers: list[Browser] = field(default_factory=list)
    sessions: dict[str, Browser] = field(default_factory=dict)

    def browser(self) -> Browser:
        b = Browser(self.served.url)
        self.browsers.append(b)
        return b

    def signed_in(self, name: str) -> Browser:
        """`name`'s browser, signed in once for the module (a sign-in costs a scrypt check)."""
        if name not in self.sessions:
            b = self.browser()
            assert b.sign_in(name, password(name)).status_code == 303
            self.sessions[name] = b
        return self.sessions[name]

    def account(self, name: str, role: str) -> None:
        operators.add(self.app.sessions, name, role, password(name), "test")

    def fail(self, task: str = "purchase.post", queue: str = "payments", **kwargs: object) -> int:
        return record_failure(
            self.app,
            task_id=f"t-{task}",
            task_name=task,
            queue=queue,
            args=[7],
            kwargs=dict(kwargs),
            exception=RuntimeError("boom"),
            traceback="Traceback (most recent call last):\nRuntimeError: boom",
        )

    def exists(self, row_id: int) -> bool:
        with self.app.sessions() as s:
            return s.get(FailedTask, row_id) is not None

    def runs(self) -> int:
        with self.app.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(history.OpsRun)) or 0)


@contextmanager
def serving(tmp: Path, database: str, redis_password: str | None = None) -> Iterator[Stack]:
    """A console on `database` (sqlite or postgres) and a new redis-server (with a password in
    every role's URL when `redis_password` is given), its four accounts made."""
    redis = start_redis(tmp / "redis", password=redis_password)
    drop = None
    extra = {}
    if database == "postgres":
        url, drop = create_pg_database()
        extra["DATABASE_URL"] = url
    app = migrated_app(app_env(tmp, redis.url, **extra))
    celery = make_app(app.settings)
    for name, role in ROLES.items():
        operators.add(app.sessions, name, role, password(name), "test")
    # The platform's login protection with a lower threshold, so a lockout takes 3 tries.
    console = wiring.wire(app, celery, account=LoginPolicy(3, 900, 900), workers_timeout=0.2)
    served = Served(web.build(console))
    stack = Stack(app, console, served, redis)
    yield stack
    for b in stack.browsers:
        b.close()
    served.stop()
    celery.close()
    app.engine.dispose()
    redis.stop()
    if drop:
        drop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with serving(tmp_path_factory.mktemp(f"console-{request.param}"), request.param) as stack:
        yield stack


sqlite_only = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


def has_headers(response: httpx.Response) -> None:
    headers = response.headers
    for name, start in HEADERS.items():
        assert headers.get(name, "").startswith(start), (name, dict(headers))
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self';" in headers["content-security-policy"]  # files, never inline
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "server" not in headers


@sqlite_only
def test_health_static_and_headers_on_every_response(stack: Stack) -> None:
    b = stack.browser()
    health = b.get("/healthz")
    assert (health.status_code, health.text) == (200, "ok")
    css = b.get("/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for response in (health, css, b.get("/signin"), b.get("/nosuch"), b.get("/failed")):
        has_headers(response)
    assert b.get("/nosuch").status_code == 404
    assert health.headers["cache-control"] == "no-store"


@sqlite_only
def test_signed_out_every_page_redirects_and_every_post_is_401(stack: Stack) -> None:
    """Every route that is not public, found from the app's own table."""
    b = stack.browser()
    checked = 0
    for route in web.routes():
        path = getattr(route, "path", "")
        if path.startswith(web.PUBLIC):
            continue
        url = path.replace("{id}", "1")
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD":
                continue
            checked += 1
            if method == "GET":
                done = b.get(url + "?queue=payments")
                assert done.status_code == 303, (url, done.status_code)
                assert done.headers["location"].startswith("/signin?next=")
                assert "queue%3Dpayments" in done.headers["location"]
            else:
                done = b.post(url, csrf="anything")
                assert done.status_code == 401, (url, done.status_code)
            has_headers(done)
    assert checked == 24
    # a forged or stale session cookie is the same as none
    b.http.cookies.set("maqsafy_console", "x" * 43)
    assert b.get("/").status_code == 303


@sqlite_only
def test_sign_in_session_cookie_and_sign_out(stack: Stack) -> None:
    b = stack.browser()
    form = b.get("/signin")
    assert "httponly" in form.headers["set-cookie"].lower()
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token
    wrong = {"name": "ana", "password": password("ana"), "next": "/"}
    assert b.http.post("/signin", data={**wrong, "csrf": "forged"}).status_code == 403
    assert b.http.post("/signin", data=wrong).status_code == 403  # no token at all
    huge = b.http.post("/signin", data={**wrong, "csrf": token.group(1), "name": "a" * 20_000})
    assert huge.status_code == 400  # a form is a few short fields
    refused = b.sign_in("ana", "not-her-password")
    assert refused.status_code == 401 and "sign-in refused" in refused.text

    done = b.sign_in("ana", password("ana"), next="/failed?queue=payments")
    assert done.status_code == 303 and done.headers["location"] == "/failed?queue=payments"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("maqsafy_console=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    sid = b.http.cookies["maqsafy_console"]
    key = stack.app.keyspace.session(sid)
    assert stack.redis.client().hget(key, "user") == b"ana"  # the platform's session store

    page = b.get("/failed")
    assert page.status_code == 200 and "ana (operator)" in page.text
    # an outside address is never where sign-in sends you
    evil = stack.browser()
    assert evil.sign_in("ana", password("ana"), next="//evil.example/x").headers["location"] == "/"

    assert b.post("/signout", csrf="").status_code == 403
    assert b.post("/signout", csrf="wrong").status_code == 403
    assert b.post("/signout").status_code == 303
    assert not stack.redis.client().exists(key)
    assert b.get("/failed").status_code == 303


@sqlite_only
def test_sign_in_is_throttled_by_the_login_protection(stack: Stack) -> None:
    stack.account("eve", "operator")
    b = stack.browser()
    for _ in range(3):
        assert b.sign_in("eve", "wrong-password-here").status_code == 401
    locked = b.sign_in("eve", password("eve"))  # the right password, not even checked
    assert locked.status_code == 429 and "too many sign-in attempts" in locked.text
    assert int(locked.headers["retry-after"]) >= 1
    assert stack.console.guard.status("account", "eve")["locked"]
    assert "maqsafy_console" not in b.http.cookies


@sqlite_only  # the status service's SQL is tested on both (test_status.py)
def test_overview_is_the_status_screen(stack: Stack) -> None:
    row = stack.fail(task="overview.task")
    page = stack.signed_in("val").get("/")
    assert page.status_code == 200
    assert re.search(r'id="level">(OK|WARN|CRITICAL)<', page.text)
    for queue in ("payments", "maintenance", "ops"):
        assert f"<td>{queue}</td>" in page.text
    assert "no worker answered" in page.text
    status = stack.console.status()
    assert f'<a href="/failed">{status.failed_24h}</a>' in page.text
    assert stack.exists(row)


def test_failed_list_filters_pages_and_masks(stack: Stack) -> None:
    marked = stack.fail(task="masked.task", queue="ops", password=SECRET)
    for _ in range(51):
        stack.fail(task="paging.task", queue="maintenance")
    b = stack.signed_in("val")

    first = b.get("/failed", params={"task": "paging.task"})
    assert first.status_code == 200
    assert first.text.count("<td>paging.task</td>") == 50
    older = re.search(r'href="([^"]+)" id="older"', first.text)
    assert older
    second = b.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count("<td>paging.task</td>") == 1 and 'id="older"' not in second.text
    assert 'id="newest"' in second.text

    by_queue = b.get("/failed", params={"queue": "ops"})
    assert f'id="failed-{marked}"' in by_queue.text and "paging.task" not in by_queue.text
    bad = b.get("/failed", params={"queue": "nosuch"})
    assert bad.status_code == 400 and "unknown queue" in bad.text
    assert b.get("/failed", params={"since": "yesterday"}).status_code == 400
    assert b.get("/failed", params={"before": "x"}).status_code == 400

    shown = b.get(f"/failed/{marked}")
    assert shown.status_code == 200 and "masked.task" in shown.text
    assert SECRET not in shown.text and "RuntimeError: boom" in shown.text
    assert "Retry" not in shown.text  # a viewer gets no buttons (the server refuses anyway)


@sqlite_only
def test_bad_ids_are_404_and_change_nothing(stack: Stack) -> None:
    b = stack.signed_in("ana")
    for path in (
        "/failed/abc",
        "/failed/0",
        "/failed/99999999",
        "/failed/1e3",
        "/runs/x",
        "/runs/99999999",
    ):
        assert b.get(path).status_code == 404, path
    before = stack.runs()
    for path in ("/failed/abc/retry", "/failed/99999999/retry", "/failed/-1/forget"):
        assert b.post(path).status_code == 404, path
    assert stack.runs() == before


@sqlite_only
def test_csrf_missing_or_wrong_is_403_and_nothing_happens(stack: Stack) -> None:
    row = stack.fail(task="csrf.task")
    b = stack.signed_in("ana")
    before = stack.runs()
    assert b.post(f"/failed/{row}/retry", csrf="").status_code == 403
    assert b.post(f"/failed/{row}/forget", csrf="not-the-token").status_code == 403
    other = stack.signed_in("bob")  # another session's token is wrong here too
    assert b.post(f"/failed/{row}/retry", csrf=other.csrf).status_code == 403
    assert stack.exists(row) and stack.runs() == before


def test_roles_are_judged_by_the_gate_and_recorded(stack: Stack) -> None:
    viewer = stack.signed_in("val")
    row = stack.fail(task="role.task")
    before = stack.runs()
    for action in ("retry", "forget"):
        refused = viewer.post(f"/failed/{row}/{action}")
        assert refused.status_code == 403 and "val is a viewer" in refused.text
    assert stack.exists(row) and stack.runs() == before

    client = stack.redis.client()
    for who in ("ana", "bob", "root"):  # operator, approver, admin
        row = stack.fail(task=f"retry.{who}")
        b = stack.signed_in(who)
        assert f'action="/failed/{row}/retry"' in b.get("/failed").text
        waiting = client.llen("payments")
        done = b.post(f"/failed/{row}/retry")
        assert done.status_code == 303 and done.headers["location"].startswith("/failed?run=")
        after = b.get(done.headers["location"])
        assert f'id="failed-{row}"' not in after.text  # it left the list
        assert "retried 1 failed tasks" in after.text and f"by {who}" in after.text
        assert not stack.exists(row) and client.llen("payments") == waiting + 1
        run_id = int(done.headers["location"].rsplit("=", 1)[1])
        run = history.get_run(stack.app.sessions, run_id)
        assert (run["name"], run["operator"], run["status"]) == ("failed.retry", who, "ok")
        assert run["arguments"]["via"] == "console" and run["arguments"]["ids"] == [row]

    row = stack.fail(task="forget.task")
    b = stack.signed_in("ana")
    done = b.post(f"/failed/{row}/forget")
    assert done.status_code == 303 and not stack.exists(row)
    assert "forgot 1 failed tasks" in b.get(done.headers["location"]).text


@sqlite_only
def test_a_disabled_operator_is_signed_out(stack: Stack) -> None:
    stack.account("dan", "operator")
    b = stack.signed_in("dan")
    assert b.get("/runs").status_code == 200
    operators.disable(stack.app.sessions, "dan")
    assert b.get("/runs").status_code == 303
    assert b.post("/signout").status_code == 401


def test_runs_list_and_one_run_with_hosts_and_steps(stack: Stack, tmp_path: Path) -> None:
    with signed_in_as("root", "run", {}):
        result, _ = run_steps(
            stack.app,
            "console-check",
            [{"name": "say", "shell": f"echo hello; echo password={SECRET} >&2"}],
            environment="local",
            environ={"HOME": str(tmp_path)},
        )
    run_id = result.run_id
    b = stack.signed_in("val")
    listing = b.get("/runs")
    assert listing.status_code == 200 and f'id="run-{run_id}"' in listing.text
    page = b.get(f"/runs/{run_id}")
    assert page.status_code == 200 and "console-check" in page.text
    assert '<td id="operator">root</td>' in page.text.replace("\n", "")
    assert "localhost" in page.text and "<td>say</td>" in page.text and "hello" in page.text
    assert SECRET not in page.text
    assert b.get("/runs", params={"before": str(run_id)}).status_code == 200
    assert f'id="run-{run_id}"' not in b.get("/runs", params={"before": str(run_id)}).text
    assert b.get("/runs", params={"before": "nope"}).status_code == 400
    # the failed-task page's banner names only its own actions' records
    assert 'id="done"' not in b.get("/failed", params={"run": str(run_id)}).text


def test_invoke_console_refuses_without_accounts_and_serves_with_them(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The command itself: no operator account, one line; with one, it serves on 127.0.0.1."""
    bare = app_env(tmp_path / "bare", redis_server.url)
    empty = migrated_app(bare)
    # a console session never falls back to the local operator, even with no account left
    with (
        signed_in_as("ghost", "failed.forget", {"ids": "1"}),
        pytest.raises(AccessDenied, match="ghost"),
        history.recording(empty.sessions, "failed.forget", environment="local"),
    ):
        pass
    assert history.list_runs(empty.sessions) == []
    empty.engine.dispose()
    ready = app_env(tmp_path / "ready", redis_server.url)
    app = migrated_app(ready)
    operators.add(app.sessions, "root", "admin", password("root"), "test")
    app.engine.dispose()
    port = free_port()
    refused = start_invoke(["console", "--port", str(port)], clean_environ(**bare))
    served = start_invoke(["console", "--port", str(port)], clean_environ(**ready))
    try:
        out, err = refused.communicate(timeout=60)
        assert refused.returncode == 2 and out == "", (out, err)
        assert err.startswith("error: the console signs in with operator accounts and this")
        assert "invoke operators.add NAME --role admin" in err and len(err.splitlines()) == 1

        def answers() -> bool:
            assert served.poll() is None, served.communicate()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok"
            except httpx.TransportError:
                return False

        wait_for(answers, 30, "invoke console to answer")
        redirect = httpx.get(f"http://127.0.0.1:{port}/")
        assert redirect.status_code == 303
    finally:
        served.send_signal(signal.SIGINT)
        out, err = served.communicate(timeout=30)
    assert out.startswith(f"serving the console on http://127.0.0.1:{port}/"), out
    assert "warning" not in err and "Traceback" not in err, err


def test_any_address_but_loopback_is_warned_about() -> None:
    assert serve.listen_address("127.0.0.1") == ("127.0.0.1", True)
    assert serve.listen_address("0.0.0.0") == ("0.0.0.0", False)
    assert serve.listen_address("::1") == ("::1", True)
