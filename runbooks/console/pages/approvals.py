"""Approvals: the requests waiting for a second person, and Approve and Deny.

The same functions `invoke approvals`, `approve` and `deny` call, in the same order: the id is
parsed (404), the gate judges the operator's role for the command (an approver), the service
refuses a request that is not pending or is the operator's own (both before anything is
recorded), then the decision runs recorded as `approvals.approve` or `approvals.deny`. A
refusal is shown on this page as one line (403), nothing recorded.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from celery_app.errors import InvalidRequest, NotFound
from celery_app.infra.models import utcnow
from celery_app.inputs import record_id, shown
from runbooks.access import approvals, gate
from runbooks.access.context import signed_in_as
from runbooks.console import acting, wiring
from runbooks.console.auth import Viewer
from runbooks.console.templating import render
from runbooks.errors import AccessDenied

STATUSES = ("pending", "approved", "denied", "used", "expired")  # as `approvals --status`
ACTIONS = ("approvals.approve", "approvals.deny")  # the records this page's buttons close


def approval_number(request: Request) -> int:
    """The id in the path; NotFound (404) for anything that is not one."""
    try:
        return record_id(request.path_params["id"], "approval", "the approvals page")
    except InvalidRequest as exc:
        raise NotFound(str(exc)) from None


def age(since: str, now: dt.datetime) -> str:
    """How long ago `since` (ISO time) was, as people read it: 45 s, 12 min, 3 h, 2 d."""
    seconds = max(0, int((now - dt.datetime.fromisoformat(since)).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def view(console: wiring.Console, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each request with its arguments masked (secrets, patterns) and its age."""
    now = utcnow()
    return [
        {
            **a,
            "arguments": console.redactor.value(
                {k: v for k, v in a["arguments"].items() if v not in (None, "", False)}
            ),
            "reason": console.redactor.text(a["reason"]),
            "age": age(a["requested_at"], now),
        }
        for a in rows
    ]


async def list_approvals(request: Request, viewer: Viewer) -> Response:
    """The pending requests (or `?status=`), newest first: who asked for what and why."""
    return await page(request, viewer)


async def page(request: Request, viewer: Viewer, status: int = 200, problem: str = "") -> Response:
    console = wiring.of(request)
    chosen = request.query_params.get("status", "pending")
    if chosen not in STATUSES:  # the 400 page, no list: nothing is read for a bad filter
        raise InvalidRequest(f"status: expected one of {', '.join(STATUSES)}, got {shown(chosen)}")

    def read() -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        rows = approvals.list_approvals(console.app.sessions, chosen)
        return view(console, rows), acting.banner(console, request.query_params.get("run"), ACTIONS)

    rows, done = await run_in_threadpool(read)
    return render(
        request,
        "approvals.html",
        viewer,
        status,
        rows=rows,
        chosen=chosen,
        statuses=STATUSES,
        problem=problem,
        done=done,
        can_decide=acting.may(viewer, "approvals.approve"),
    )


def decide(console: wiring.Console, viewer: Viewer, number: int, approve: bool) -> acting.Outcome:
    """`invoke approve ID` / `invoke deny ID` as the signed-in operator (default --hours)."""
    name = "approvals.approve" if approve else "approvals.deny"
    hours = approvals.DEFAULT_HOURS
    typed: dict[str, Any] = (
        {"id": str(number), "hours": str(hours)} if approve else {"id": str(number)}
    )
    with signed_in_as(viewer.name, name, typed):
        gate.may(console.app.sessions, name)  # the role, before the request is even read
    approvals.check_decision(console.app.sessions, number, viewer.name)
    return acting.act(
        console,
        viewer,
        name,
        typed,
        lambda: approvals.decide(console.app.sessions, number, viewer.name, approve, hours),
        str,
        approval=number,
    )


async def approve(request: Request, viewer: Viewer) -> Response:
    """Approve another operator's request (approver role)."""
    return await deciding(request, viewer, True)


async def deny(request: Request, viewer: Viewer) -> Response:
    """Deny another operator's request (approver role)."""
    return await deciding(request, viewer, False)


async def deciding(request: Request, viewer: Viewer, approving: bool) -> Response:
    number = approval_number(request)
    try:
        outcome = await run_in_threadpool(decide, wiring.of(request), viewer, number, approving)
    except AccessDenied as exc:  # the service's refusal, on the page it came from
        return await page(request, viewer, 403, str(exc).splitlines()[0])
    return RedirectResponse(f"/approvals?run={outcome.run_id}", status_code=303)
