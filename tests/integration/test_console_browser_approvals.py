"""Approving a request in a real browser: headless Chromium (tests/support/browser.py) against
a real uvicorn console, real Redis and SQLite, as in test_console_browser.py (its `stack`).

One operator asks (as `invoke failed.flush --reason` does: the gate turns it into an approval
request), a second signs in through the form, opens Approvals, clicks Approve and sees it
approved; the requester's page offers no button on their own request (the server's refusal of
a forged one is tested over HTTP in test_console_pages.py).
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from celery_app.ops import failed_tasks
from runbooks.access import approvals, operators
from runbooks.access.context import signed_in_as
from runbooks.engine import history
from runbooks.errors import ApprovalPending
from tests.integration.test_console_browser import NAME, PASSWORD, Stack, stack
from tests.support.browser import Page

__all__ = ["stack"]  # the module-scoped fixture: one browser and one console for this module

APPROVER, APPROVER_PASSWORD = "bea", "bea-correct-horse-battery"


def ask(stack: Stack, who: str) -> int:
    """`who` runs `invoke failed.flush --reason ...`: the gate opens an approval request
    instead of the record, and nothing is flushed."""
    typed = {"hours": None, "env": "", "host": "", "inventory": "", "reason": "incident 7"}
    with (
        pytest.raises(ApprovalPending) as pending,
        signed_in_as(who, "failed.flush", typed),
        history.recording(stack.app.sessions, "failed.flush", environment="local"),
    ):
        failed_tasks.flush(stack.app.uow)
    return pending.value.approval


def test_a_second_operator_approves_a_request_by_its_button(stack: Stack) -> None:
    operators.add(stack.app.sessions, APPROVER, "approver", APPROVER_PASSWORD, "test")
    asked = ask(stack, NAME)
    theirs = ask(stack, APPROVER)
    page: Page = stack.page
    page.driver.delete_all_cookies()

    page.sign_in(NAME, PASSWORD)  # the requester: no button on their own request
    page.wait("form.signout", "the signed-in header")
    page.click("header nav a[href='/approvals']")
    assert "failed.flush" in page.text(f"#approval-{asked}")
    assert not page.driver.find_elements(By.CSS_SELECTOR, f"#approval-{asked} button")
    page.sign_out()

    page.sign_in(APPROVER, APPROVER_PASSWORD)
    page.wait("form.signout", "the signed-in header")
    page.click("header nav a[href='/approvals']")
    row = page.text(f"#approval-{asked}")
    assert NAME in row and "pending" in row and "incident 7" in row
    # their own request is listed, without buttons
    assert not page.driver.find_elements(By.CSS_SELECTOR, f"#approval-{theirs} button")

    page.click(f"#approval-{asked} form[action='/approvals/{asked}/approve'] button")
    page.at("/approvals?run=")
    run_id = int(page.path().rsplit("=", 1)[1])
    done = page.text("#done")
    assert f"approved {asked}" in done and f"by {APPROVER}" in done, done
    assert approvals.get(stack.app.sessions, asked)["status"] == "approved"
    page.click("#statuses a[href='/approvals?status=approved']")
    row = page.text(f"#approval-{asked}")
    assert f"approved by {APPROVER}" in row
    assert not page.driver.find_elements(By.CSS_SELECTOR, f"#approval-{asked} button")
    run = history.get_run(stack.app.sessions, run_id)
    assert (run["name"], run["operator"]) == ("approvals.approve", APPROVER)
