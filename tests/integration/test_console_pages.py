"""The console's Approvals, Deploys, Queues and Workers pages over real HTTP, on the same kind
of stack as test_console.py (its fixture: uvicorn in a thread, a real redis-server, SQLite and
PostgreSQL). Every new route signed out is covered by test_console.py's walk of the routes.

The approval requests are made and run as `invoke failed.flush --reason` and `invoke
approvals.run` make and run them (the gate's own path, as the signed-in operator); only the
decision goes through the console, as another operator would click it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from celery_app.dev.worker_process import start_worker
from celery_app.ops import queues
from runbooks.access import approvals
from runbooks.access.context import granted, signed_in_as
from runbooks.console import acting, auth
from runbooks.console import app as web
from runbooks.console.auth import Viewer
from runbooks.engine import history
from runbooks.errors import AccessDenied, ApprovalPending
from tests.integration.test_console import SECRET, Stack, sqlite_only, stack
from tests.support.broker import producer, send
from tests.support.console import Browser, Served
from tests.support.redis_app import app_env
from tests.support.services import wait_for

__all__ = ["stack"]  # the module-scoped fixture, one per database for this module

REASON = f"incident 42: stale failures password={SECRET}"
TYPED = {"hours": None, "env": "", "host": "", "inventory": "", "reason": REASON}


def flush(stack: Stack, who: str) -> acting.Outcome:
    """`invoke failed.flush --reason ...` as `who` (what the gate sees from the command)."""
    from celery_app.ops import failed_tasks as ft

    return acting.act(
        stack.console,
        Viewer(who, "", "", ""),
        "failed.flush",
        TYPED,
        lambda: ft.flush(stack.app.uow),
        lambda n: f"flushed {n} failed tasks",
        hours=None,
    )


def request(stack: Stack, who: str) -> int:
    """`who` asks to flush the failed tasks: an approval request, nothing runs."""
    with pytest.raises(ApprovalPending) as pending:
        flush(stack, who)
    number = pending.value.approval
    assert approvals.get(stack.app.sessions, number)["status"] == "pending"
    return number


def status(stack: Stack, number: int) -> Any:
    return approvals.get(stack.app.sessions, number)["status"]


def test_approvals_are_decided_in_the_console_and_run_once(stack: Stack) -> None:
    row = stack.fail(task="approval.task")
    asked = request(stack, "ana")
    own = request(stack, "bob")
    viewer, bob, root = stack.signed_in("val"), stack.signed_in("bob"), stack.signed_in("root")

    page = viewer.get("/approvals")
    assert page.status_code == 200 and f'id="approval-{asked}"' in page.text
    assert "failed.flush" in page.text and "incident 42" in page.text
    assert SECRET not in page.text  # the reason as people read it, secrets masked
    assert "Approve" not in page.text  # a viewer gets no buttons
    shown = bob.get("/approvals").text
    assert f'action="/approvals/{asked}/approve"' in shown
    assert f'action="/approvals/{own}/approve"' not in shown  # not on their own request

    before = stack.runs()
    refused = viewer.post(f"/approvals/{asked}/approve")
    assert refused.status_code == 403 and "val is a viewer" in refused.text
    assert 'id="approvals"' in refused.text  # said on the approvals page, one line
    mine = bob.post(f"/approvals/{own}/approve")
    assert mine.status_code == 403
    assert f"approval {own} was requested by bob: another approver decides it" in mine.text
    assert bob.post(f"/approvals/{asked}/approve", csrf="").status_code == 403
    assert stack.runs() == before
    assert (status(stack, asked), status(stack, own)) == ("pending", "pending")

    done = bob.post(f"/approvals/{asked}/approve")
    assert done.status_code == 303 and done.headers["location"].startswith("/approvals?run=")
    after = bob.get(done.headers["location"])
    assert f"approved {asked} for 24h" in after.text and "by bob" in after.text
    run = history.get_run(stack.app.sessions, int(done.headers["location"].rsplit("=", 1)[1]))
    assert (run["name"], run["operator"], run["status"]) == ("approvals.approve", "bob", "ok")
    assert run["arguments"] == {"approval": asked, "via": "console"}
    again = root.post(f"/approvals/{asked}/approve")
    assert again.status_code == 403 and f"approval {asked} is approved, not pending" in again.text

    denied = root.post(f"/approvals/{own}/deny")
    assert denied.status_code == 303 and status(stack, own) == "denied"
    assert f"denied {own}" in root.get(denied.headers["location"]).text

    # `invoke approvals.run ID` as ana: exactly the approved arguments, once
    approvals.check_runnable(stack.app.sessions, asked, "ana")
    with granted(asked):
        ran = flush(stack, "ana")
    assert not stack.exists(row) and status(stack, asked) == "used"
    record = history.get_run(stack.app.sessions, ran.run_id)
    assert (record["operator"], record["approved_by"]) == ("ana", "bob")
    with pytest.raises(AccessDenied, match=f"approval {asked} is used"), granted(asked):
        flush(stack, "ana")
    listed = viewer.get("/approvals", params={"status": "used"})
    assert f'id="approval-{asked}"' in listed.text and f"run {ran.run_id}" in listed.text


@sqlite_only
def test_approval_bad_ids_and_filters_change_nothing(stack: Stack) -> None:
    b = stack.signed_in("bob")
    before = stack.runs()
    for path in ("/approvals/abc/approve", "/approvals/0/deny", "/approvals/99999999/approve"):
        assert b.post(path).status_code == 404, path
    assert b.post("/approvals/1/approve", csrf="wrong").status_code == 403
    bad = b.get("/approvals", params={"status": "nosuch"})
    assert bad.status_code == 400 and "status: expected one of pending" in bad.text
    assert stack.runs() == before


@sqlite_only
def test_the_deploy_log_page_lists_recorded_deploys(stack: Stack) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    release = f"20261201T000000Z-{sha[:7]}"
    with signed_in_as("root", "deploy", {}):  # the rows a deploy writes (runbooks/deploy/context)
        run_id = history.start_run(
            stack.app.sessions, "command", "deploy", "staging", {"ref": "v1", "sha": sha}
        )
    history.finish_command(
        stack.app.sessions, run_id, hosts={"host0": ("ok", f"release {release}")}
    )
    b = stack.signed_in("val")
    page = b.get("/deploys", params={"env": "staging"})
    assert page.status_code == 200
    row = re.search(rf'<tr id="deploy-{run_id}">(.*?)</tr>', page.text, re.S)
    assert row, page.text
    for shown in ("deploy", "staging", "ok", release, "v1", "root", "host0"):
        assert shown in row.group(1), shown
    assert "no earlier deploy in the log" in row.group(1)
    assert f'id="deploy-{run_id}"' in b.get("/deploys").text  # every environment
    other = b.get("/deploys", params={"env": "production"})
    assert other.status_code == 200 and f'id="deploy-{run_id}"' not in other.text
    # A deploy 15 commits or more on: the page shows the first 10 and counts the rest.
    head = subprocess.run(
        ["git", "rev-list", "--max-count=16", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.split()
    for ref, sha_of in (("old", head[15]), ("new", head[0])):
        with signed_in_as("root", "deploy", {}):
            later = history.start_run(
                stack.app.sessions, "command", "deploy", "canary", {"ref": ref, "sha": sha_of}
            )
        history.finish_command(
            stack.app.sessions,
            later,
            hosts={"h": ("ok", f"release 20261201T00000{len(ref)}Z-{sha_of[:7]}")},
        )
    row = re.search(rf'<tr id="deploy-{later}">(.*?)</tr>', b.get("/deploys").text, re.S)
    between = subprocess.run(
        ["git", "rev-list", "--count", f"{head[15]}..{head[0]}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert row and row.group(1).count("<code>+ ") == 10, row
    assert f"and {int(between.stdout) - 10} more" in row.group(1)
    before = stack.runs()
    bad = b.get("/deploys", params={"env": "../etc"})
    assert bad.status_code == 400 and "expected a name like staging" in bad.text
    assert stack.runs() == before


@sqlite_only
def test_queues_page_shows_a_waiting_message_and_workers_page_answers(stack: Stack) -> None:
    def waiting() -> int:
        [found] = [q for q in queues.queue_stats(stack.redis.client()) if q.name == "maintenance"]
        return found.waiting

    before = waiting()
    sender = producer(stack.redis.url)
    send(sender, "maintenance.memory", [], "maintenance")
    sender.close()
    assert waiting() == before + 1
    page = stack.signed_in("val").get("/queues")
    assert page.status_code == 200
    row = re.search(r'<tr id="queue-maintenance">(.*?)</tr>', page.text, re.S)
    assert row and f'<td class="waiting">{before + 1}</td>' in row.group(1)
    assert '<tr id="queue-payments">' in page.text and "payments $" in page.text

    workers = stack.signed_in("val").get("/workers")  # none runs here: the ping finds none
    assert workers.status_code == 200 and "no worker answered" in workers.text
    for path in ("/approvals", "/deploys", "/queues", "/workers"):
        assert f'<a href="{path}">' in workers.text  # in the layout's navigation


@sqlite_only
def test_workers_page_shows_a_real_worker(stack: Stack, tmp_path: Path) -> None:
    """A worker on the stack's broker (its own SQL: the page asks only over the broker), read
    by the console with the command's 1 s wait (the stack's 0.2 s is for pages without one)."""
    env = {**app_env(tmp_path, stack.redis.url), "PATH": os.environ["PATH"]}
    worker = start_worker("pages1@test", tmp_path / "w.log", queues="ops", concurrency=1, env=env)
    served = Served(web.build(dataclasses.replace(stack.console, workers_timeout=1.0)))
    b = Browser(served.url)
    b.http.cookies.set(auth.COOKIE, stack.signed_in("val").http.cookies[auth.COOKIE])
    try:
        worker.wait_ready()
        page = b.get("/workers")
    finally:
        b.close()
        served.stop()
        worker.kill()  # it ran nothing: no warm shutdown to wait for
    assert page.status_code == 200
    row = re.search(r"<tr><td>pages1@test</td>(.*?)</tr>", page.text, re.S)
    assert row, page.text
    assert "<td>ops</td>" in row.group(1) and "<td>1</td>" in row.group(1)


def heard(page: str) -> str:
    found = re.search(r'<span id="heard">at ([0-9:]+ UTC)</span>', page)
    assert found, page
    return found.group(1)


@sqlite_only
def test_workers_are_pinged_in_the_background_and_pages_show_the_last_answer(
    stack: Stack,
) -> None:
    """A page never waits out a ping: views within the interval show one answer, and a newer
    one arrives on its own (no worker here: the answer is that none replied)."""
    cookie = stack.signed_in("val").http.cookies[auth.COOKIE]
    for every, same in ((60.0, True), (0.3, False)):
        console = dataclasses.replace(stack.console, workers_every=every)
        served = Served(web.build(console))
        b = Browser(served.url)
        b.http.cookies.set(auth.COOKIE, cookie)
        try:
            first = heard(b.get("/workers").text)
            assert "no worker answered" in b.get("/").text
            if same:
                assert heard(b.get("/workers").text) == first
            else:
                wait_for(
                    lambda b=b, first=first: heard(b.get("/workers").text) != first,
                    10,
                    "a newer ping's answer",
                )
        finally:
            b.close()
            served.stop()
        assert console.watch._thread is not None and not console.watch._thread.is_alive()
