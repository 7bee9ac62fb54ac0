"""Start a book from the console in a real browser and watch its output arrive, then run it for
real: headless Chromium (tests/support/browser.py), a real uvicorn console, a real Celery worker
process consuming `ops` with the runbook runner, real Redis and SQLite.

The book waits at two gates (files the test creates), so the page is looked at while the run is
still running: a line that arrives after the first gate opens can only have come through the
page's event stream (the page is the same document: it was not reloaded).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from celery_app.bootstrap import Container
from celery_app.celery import make_app
from celery_app.dev.worker_process import WorkerProcess, start_worker
from runbooks.access import operators
from runbooks.console import app as web
from runbooks.console import wiring
from runbooks.engine import history
from tests.support.browser import WAIT, Page, chromium
from tests.support.console import Served
from tests.support.redis_app import app_env, migrated_app
from tests.support.services import start_redis

NAME, PASSWORD = "ana", "ana-correct-horse-battery"
KEY = "k" * 16 + "ops-signing-key-for-tests-0000000"
BOOK = "gated"


@dataclass
class Stack:
    app: Container
    page: Page
    worker: WorkerProcess
    gates: tuple[Path, Path]


def gated_book(books: Path, first: Path, second: Path) -> None:
    """A book that reports one step, waits for `first`, reports another, waits for `second`;
    every step a read, so check mode runs them too."""
    wait = "while [ ! -e {0} ]; do sleep 0.05; done"
    steps = [
        ("before the gates", "echo first output"),
        ("at the first gate", wait.format(first)),
        ("between the gates", "echo second output"),
        ("at the second gate", wait.format(second)),
    ]
    lines = [f"name: {BOOK}", "description: waits at two gates", "hosts: all", "steps:"]
    for name, script in steps:
        lines += [
            f"  - name: {name}",
            "    shell:",
            f"      cmd: '{script}'",
            "      read_only: true",
        ]
    (books / f"{BOOK}.yml").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("console-live-browser")
    with chromium() as driver:  # first: a missing browser skips before anything starts
        redis = start_redis(tmp / "redis")
        books = tmp / "books"
        books.mkdir()
        gates = (tmp / "first.gate", tmp / "second.gate")
        gated_book(books, *gates)
        env = app_env(tmp, redis.url, MAQSAFY_OPS_SIGNING_KEY=KEY, MAQSAFY_OPS_BOOKS_DIR=str(books))
        app = migrated_app(env)
        celery = make_app(app.settings)
        operators.add(app.sessions, "root", "admin", "root-correct-horse-battery", "test")
        operators.add(app.sessions, NAME, "operator", PASSWORD, "test")
        worker = start_worker(
            "ops@live",
            tmp / "ops.log",
            queues="ops",
            concurrency=1,
            env=env,
            extra=("-I", "runbooks.ops_queue.runner"),
        )
        served = Served(web.build(wiring.wire(app, celery, workers_timeout=0.2, environ=env)))
        try:
            worker.wait_ready()
            yield Stack(app, Page(driver, served.url), worker, gates)
        finally:
            for gate in gates:  # a run held at a gate would hold the worker's stop
                gate.touch()
            served.stop()
            worker.kill()
            celery.close()
            app.engine.dispose()
            redis.stop()


def run_page(page: Page) -> int:
    """The run the page reached (after the request's waiting page), by its id."""
    WebDriverWait(page.driver, WAIT).until(
        lambda d: (
            page.path().split("/")[2].isdigit() if page.path().startswith("/runs/") else False
        ),
        f"never reached a run page from {page.driver.current_url}",
    )
    return int(page.path().split("/")[2])


def live_lines(page: Page) -> str:
    return "\n".join(e.text for e in page.driver.find_elements(By.CSS_SELECTOR, "#live li"))


def test_start_a_book_in_check_mode_watch_its_output_arrive_then_run_it_for_real(
    stack: Stack,
) -> None:
    page, (first, second) = stack.page, stack.gates
    page.open("/runs")
    if page.path().startswith("/signin"):
        page.sign_in(NAME, PASSWORD)
        page.wait("form.signout", "the signed-in header")
        page.open("/runs")
    page.click("#start")
    assert page.path() == "/runs/new"
    page.driver.find_element(By.CSS_SELECTOR, "select#book").send_keys(BOOK)
    page.click("form.start button[type=submit]")
    check = run_page(page)
    assert history.run_status(stack.app.sessions, check) == "running"

    page.wait("#live li.step", "the first step's line")
    assert "before the gates" in live_lines(page) and "first output" in live_lines(page)
    document = page.driver.find_element(By.TAG_NAME, "html")
    first.touch()
    WebDriverWait(page.driver, WAIT).until(
        lambda d: "between the gates" in live_lines(page), "the third step's line never came"
    )
    # still running (held at the second gate), and the same document: streamed, not reloaded
    assert history.run_status(stack.app.sessions, check) == "running"
    assert document.tag_name == "html"  # raises StaleElementReferenceException after a reload
    assert "second output" in live_lines(page)

    second.touch()  # the run ends; the page reloads itself and shows SQL's history
    WebDriverWait(page.driver, WAIT).until(
        lambda d: page.text("#status") == "ok", "the run page never showed the run ended ok"
    )
    page.wait("#steps", "the recorded steps")
    run = history.get_run(stack.app.sessions, check)
    assert (run["check"], run["operator"], run["arguments"]["book"]) == (True, NAME, BOOK)

    page.click("#real button[type=submit]")
    real = run_page(page)
    assert real != check
    WebDriverWait(page.driver, WAIT).until(
        lambda d: page.text("#status") == "ok", "the real run's page never showed it ended ok"
    )
    page.wait("#steps", "the real run's recorded steps")
    run = history.get_run(stack.app.sessions, real)
    assert (run["check"], run["operator"], run["arguments"]["book"]) == (False, NAME, BOOK)
    assert len(run["steps"]) == 4 and "runbook.run" in stack.worker.log_text()
