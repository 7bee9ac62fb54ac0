"""The ops console in a real browser: headless Chromium (Debian's chromium and chromium-driver,
through Selenium) against a real uvicorn console, real Redis and real SQL (SQLite here: the
HTTP tests in test_console.py run every page on PostgreSQL too).

What only a browser proves: the forms as rendered post what the server expects (the sign-in's
double-submit cookie, each action's CSRF token), SameSite=Strict cookies come back on the
redirects, and a click lands on the page it should. One browser and one console for the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from celery_app.bootstrap import Container
from celery_app.celery import make_app
from celery_app.infra.models import FailedTask
from celery_app.ops.failed_tasks import record_failure
from runbooks.access import operators
from runbooks.access.context import signed_in_as
from runbooks.console import app as web
from runbooks.console import wiring
from runbooks.engine import history
from runbooks.service import run_steps
from tests.support.browser import Page, chromium
from tests.support.console import Served
from tests.support.redis_app import app_env, migrated_app
from tests.support.services import RedisServer, start_redis

NAME, PASSWORD = "ana", "ana-correct-horse-battery"


@dataclass
class Stack:
    app: Container
    redis: RedisServer
    page: Page


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("console-browser")
    with chromium() as driver:  # first: a missing browser skips before anything starts
        redis = start_redis(tmp / "redis")
        app = migrated_app(app_env(tmp, redis.url))
        celery = make_app(app.settings)
        operators.add(app.sessions, "root", "admin", "root-correct-horse-battery", "test")
        operators.add(app.sessions, NAME, "operator", PASSWORD, "test")
        served = Served(web.build(wiring.wire(app, celery, workers_timeout=0.2)))
        try:
            yield Stack(app, redis, Page(driver, served.url))
        finally:
            served.stop()
            celery.close()
            app.engine.dispose()
            redis.stop()


@pytest.fixture
def page(stack: Stack) -> Page:
    """The module's browser, signed in as the operator (through the form, once)."""
    page = stack.page
    page.open("/runs")
    if page.path().startswith("/signin"):
        page.sign_in(NAME, PASSWORD)
        page.wait("form.signout", "the signed-in header")
    return page


def test_sign_in_through_the_form_lands_on_the_overview(stack: Stack) -> None:
    page = stack.page
    page.driver.delete_all_cookies()
    page.open("/")
    page.at("/signin?next=")  # signed out, every page sends you to the form
    page.sign_in(NAME, "not-her-password")
    # refused: the form again, saying so
    assert "sign-in refused" in page.text("#message")
    page.sign_in(NAME, PASSWORD)
    page.wait("form.signout", "the signed-in header")
    assert page.path() == "/"
    assert page.text("#level") in ("OK", "WARN", "CRITICAL")
    assert f"{NAME} (operator)" in page.text("header .who")
    tables = page.text("main")
    assert "payments" in tables and "no worker answered" in tables
    nav = [a.text for a in page.driver.find_elements(By.CSS_SELECTOR, "header nav a")]
    assert {"Overview", "Failed tasks", "Runs"} <= set(nav)
    # Live: the overview reads the status again by itself, without a click (a new document).
    shown = page.driver.find_element(By.TAG_NAME, "html")
    WebDriverWait(page.driver, 30).until(ec.staleness_of(shown), "the overview never reloaded")
    page.wait("#read-at", "the reloaded overview")
    assert page.path() == "/"


def test_a_failed_task_is_retried_by_its_button_and_leaves_the_list(
    stack: Stack, page: Page
) -> None:
    row = record_failure(
        stack.app,
        task_id="t-browser",
        task_name="browser.retry",
        queue="payments",
        args=[7],
        kwargs={},
        exception=RuntimeError("boom"),
        traceback="Traceback (most recent call last):\nRuntimeError: boom",
    )
    waiting = stack.redis.client().llen("payments")
    page.click("header nav a[href='/failed']")
    assert "browser.retry" in page.text(f"#failed-{row}")

    page.click(f"#failed-{row} form[action='/failed/{row}/retry'] button")
    done = page.text("#done")
    assert "retried 1 failed tasks" in done and f"by {NAME}" in done, done
    assert page.path().startswith("/failed?run=")
    assert not page.driver.find_elements(By.ID, f"failed-{row}")
    with stack.app.sessions() as s:
        assert s.get(FailedTask, row) is None
    assert stack.redis.client().llen("payments") == waiting + 1  # sent back to its queue
    run_id = int(page.path().rsplit("=", 1)[1])
    run = history.get_run(stack.app.sessions, run_id)
    assert (run["name"], run["operator"], run["arguments"]["via"]) == (
        "failed.retry",
        NAME,
        "console",
    )


def test_the_runs_page_shows_a_recorded_run_with_its_hosts(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    with signed_in_as("root", "run", {}):
        result, _ = run_steps(
            stack.app,
            "browser-check",
            [{"name": "say", "shell": "echo hello from the book"}],
            environment="local",
            environ={"HOME": str(tmp_path)},
        )
    page.click("header nav a[href='/runs']")
    assert "browser-check" in page.text(f"#run-{result.run_id}")
    page.click(f"#run-{result.run_id} a[href='/runs/{result.run_id}']")
    assert page.path() == f"/runs/{result.run_id}"
    assert page.text("#status") == "ok"
    hosts = page.text("#hosts")
    assert "localhost" in hosts and "ok" in hosts, hosts
    steps = page.text("#steps")
    assert "say" in steps and "hello from the book" in page.text("main")


def test_signing_out_returns_to_sign_in(stack: Stack, page: Page) -> None:
    page.sign_out()
    assert page.path().startswith("/signin")
    page.open("/failed")
    page.at("/signin?next=")
    assert not page.driver.find_elements(By.CSS_SELECTOR, "form.signout")
