"""The console at its edges, over real HTTP (uvicorn, real redis-servers, SQLite, a PostgreSQL
address nobody answers on): unknown addresses, readiness, a Redis that went away on the
embedded default, and a bad filter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from celery_app.bootstrap import Container
from celery_app.celery import make_app
from celery_app.infra.embedded import stop_embedded_redis
from runbooks.access import operators
from runbooks.console import app as web
from runbooks.console import wiring
from tests.integration.test_console import Stack, password, serving
from tests.support.console import Browser, Served
from tests.support.redis_app import app_env, build_app, migrated_app
from tests.support.services import free_port, start_redis


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serving(tmp_path_factory.mktemp("console-edges"), "sqlite") as stack:
        yield stack


def test_unknown_addresses_get_the_consoles_own_404_page(stack: Stack) -> None:
    signed_out = stack.browser()
    for method, path in (("GET", "/nosuch"), ("POST", "/nosuch"), ("GET", "/static/no.css")):
        page = signed_out.http.request(method, path)
        assert page.status_code == 404, (method, path)
        assert '<link rel="stylesheet" href="/static/console.css">' in page.text  # its own page
        assert "nothing at this address" in page.text
        assert "<nav>" not in page.text and 'href="/failed"' not in page.text  # no routes shown
    signed_in = stack.signed_in("val").get("/failed/1/nosuch")
    assert signed_in.status_code == 404 and "nothing at this address" in signed_in.text
    assert "<nav>" in signed_in.text and "val (viewer)" in signed_in.text  # the signed-in layout
    stale = stack.browser()
    stale.http.cookies.set("maqsafy_console", "x" * 43)  # a session that is not one: no layout
    assert "<nav>" not in stale.get("/nosuch").text


def test_a_bad_approvals_filter_is_a_400_page_without_the_list(stack: Stack) -> None:
    bad = stack.signed_in("bob").get("/approvals", params={"status": "nope"})
    assert bad.status_code == 400
    assert "status: expected one of pending, approved, denied, used, expired" in bad.text
    assert 'id="approvals"' not in bad.text and 'id="empty"' not in bad.text


@contextmanager
def console_on(app: Container) -> Iterator[Browser]:
    """A console of its own over `app`, served as `invoke console` serves it, and a browser."""
    celery = make_app(app.settings)
    served = Served(web.build(wiring.wire(app, celery, workers_timeout=0.2)))
    browser = Browser(served.url)
    try:
        yield browser
    finally:
        browser.close()
        served.stop()
        celery.close()
        app.engine.dispose()


def test_readiness_names_the_sessions_redis_or_the_database(stack: Stack, tmp_path: Path) -> None:
    b = stack.browser()
    assert (b.get("/healthz?ready=1").status_code, b.get("/healthz?ready=1").text) == (200, "ready")

    redis = start_redis(tmp_path / "redis")  # a console whose Redis goes away
    with console_on(build_app(app_env(tmp_path / "a", redis.url))) as other:
        assert other.get("/healthz?ready=1").status_code == 200
        redis.stop()
        down = other.get("/healthz?ready=1")
        live = other.get("/healthz")
    assert (down.status_code, down.text) == (503, "not ready: the sessions Redis does not answer")
    assert (live.status_code, live.text) == (200, "ok")  # liveness asks nothing

    dead = f"postgresql+psycopg://maqsafy:pw@127.0.0.1:{free_port()}/maqsafy"
    with console_on(build_app(app_env(tmp_path / "b", stack.redis.url, DATABASE_URL=dead))) as b:
        down = b.get("/healthz?ready=1")
    assert (down.status_code, down.text) == (503, "not ready: the database does not answer")
    assert "pw" not in down.text


def test_on_the_embedded_default_a_redis_outage_points_at_the_embedded_redis(
    tmp_path: Path,
) -> None:
    """No REDIS_* is set there, so the page must not say to check it."""
    env = {"MAQSAFY_VAR_DIR": str(tmp_path / "var"), "MAQSAFY_ENV_FILE": str(tmp_path / "no")}
    app = migrated_app(env)
    assert app.settings.embedded_redis
    operators.add(app.sessions, "val", "admin", password("val"), "test")
    try:
        with console_on(app) as b:
            assert b.sign_in("val", password("val")).status_code == 303  # the Redis started
            stop_embedded_redis(app.settings.var_dir)  # as `make stop` does
            page = b.get("/queues")
    finally:
        stop_embedded_redis(app.settings.var_dir)
    assert page.status_code == 503, page.text[:300]
    assert "REDIS_" not in page.text
    assert f"the embedded Redis under {app.settings.var_dir} is not running" in page.text
