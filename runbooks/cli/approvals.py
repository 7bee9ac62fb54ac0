"""`approvals`, `approve`, `deny`, `approvals.run`: the two-person rule.

A command that needs approval (see runbooks.access.rules, and `approval: required` in a book
or an inventory) stops and records a request instead of running (exit 3); another operator
with the approver role approves or denies it; the requester then runs exactly the approved
arguments, once, before the approval expires.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from invoke import Collection, Context

from runbooks.cli.apps import container, run_recorded
from runbooks.cli.errors import operator_errors, refuse
from runbooks.cli.flags import JSON_HELP, task, whole

STATUSES = ("pending", "approved", "denied", "used", "expired")


def approval_id(text: str) -> int:
    from celery_app.inputs import record_id

    with operator_errors():
        return record_id(text, "approval", "`invoke approvals`")


def render_approvals(rows: list[dict[str, Any]]) -> None:
    for a in rows:
        args = " ".join(f"{k}={v}" for k, v in a["arguments"].items() if v not in (None, "", False))
        decided = f" by {a['decided_by']}" if a["decided_by"] else ""
        print(
            f"{a['id']:>5}  {a['status']:<8}{decided:<12} {a['command']:<16} "
            f"{a['environment'] or '-':<11} asked by {a['requested_by']}: {a['reason']}"
        )
        print(f"       {a['why']}; {args}; expires {a['expires_at'][:19]}")
    if not rows:
        print("no approval requests")


@task(
    name="list",
    default=True,
    help={"status": f"only these: {', '.join(STATUSES)}", **JSON_HELP},
)
def list_approvals(c: Context, status: str = "", json: bool = False) -> None:
    """List approval requests, newest first: who asked for what, why, and what became of it."""
    from runbooks.access import approvals
    from runbooks.cli.output import emit

    if status and status not in STATUSES:
        from celery_app.inputs import shown

        refuse(f"--status: expected one of {', '.join(STATUSES)}, got {shown(status)}")
    app = container()
    with operator_errors():
        rows = approvals.list_approvals(app.sessions, status or None)
    emit(rows, json, render_approvals)


def decide(id: str, approve: bool, hours: str = "24") -> None:
    """approve and deny: checked (another approver, a pending request), then recorded."""
    from runbooks.access import approvals, gate

    number = approval_id(id)
    valid = whole(hours, "--hours", 1, approvals.MAX_HOURS)
    app = container()
    with operator_errors():
        name = "approvals.approve" if approve else "approvals.deny"
        who = gate.may(app.sessions, name)
        if who.local:
            refuse("approvals need operator accounts (invoke operators.add NAME --role admin)")
        approvals.check_decision(app.sessions, number, who.operator)
    _, message = run_recorded(
        app,
        name,
        "",
        lambda: approvals.decide(app.sessions, number, who.operator, approve, valid),
        str,
        approval=number,
    )
    print(message)


@task(
    help={
        "id": "the approval's id, as `invoke approvals` shows it",
        "hours": "how long the approval stays usable, 1 to 168 hours (default 24)",
    }
)
def approve(c: Context, id: str, hours: str = "24") -> None:
    """Approve another operator's request (approver role); they run it with approvals.run."""
    decide(id, True, hours)


@task(help={"id": "the approval's id, as `invoke approvals` shows it"})
def deny(c: Context, id: str) -> None:
    """Deny another operator's request (approver role)."""
    decide(id, False)


@task(name="run", help={"id": "the approved request's id"})
def run_approved(c: Context, id: str) -> None:
    """Run an approved request: exactly its arguments, once, before it expires."""
    from runbooks.access import approvals, context, gate
    from runbooks.cli.program import task_named

    number = approval_id(id)
    app = container()
    with operator_errors():
        who = gate.may(app.sessions, "approvals.run")
        if who.local:
            refuse("approvals need operator accounts (invoke operators.add NAME --role admin)")
        found = approvals.check_runnable(app.sessions, number, who.operator)
        arguments = dict(found["arguments"])
    try:
        command = task_named(found["command"])
    except KeyError:
        refuse(f"approval {number} is for {found['command']!r}, which this version has not")
    if "reason" in inspect.signature(command.body).parameters:
        arguments["reason"] = found["reason"]
    with context.granted(number):
        command(Context(config=c.config), **arguments)
    with operator_errors():
        if approvals.get(app.sessions, number)["status"] == "approved":  # it needed none
            print(f"warning: approval {number} was not spent; it stays usable", file=sys.stderr)


ns = Collection("approvals", list_approvals, run_approved)
