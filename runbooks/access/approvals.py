"""The two-person rule: a command that needs a second person becomes an approval request.

    request(...)      -> id        a pending request: who, what, the exact arguments and their
                                   digest, the environment, why it needs approval, --reason
    decide(...)                    approve or deny, by an approver who did not ask
    use(...)          -> Approval  at the run: approved, unexpired, unused, same operator, and
                                   the same arguments and record (digests), then `used` at once
    list_approvals(...)            newest first, expired ones shown as such

A request expires DEFAULT_HOURS after it was made if nobody decided; an approval expires
`hours` (default DEFAULT_HOURS) after it was granted. :func:`approval_requested` is called once
per new request (the notifier hangs off it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from celery_app.infra.db import UnitOfWork
from celery_app.infra.models import utcnow
from runbooks.access.operators import aware
from runbooks.access.tables import Approval
from runbooks.errors import AccessDenied, NotFound

DEFAULT_HOURS = 24
MAX_HOURS = 168
NOT_HASHED = ("reason",)  # why it is asked is not what runs


def digest(document: Mapping[str, Any]) -> str:
    """sha256 of `document` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def invocation_digest(command: str, arguments: Mapping[str, Any]) -> str:
    """The digest of a command line: the task and every argument but --reason."""
    kept = {k: v for k, v in arguments.items() if k not in NOT_HASHED}
    return digest({"command": command, "arguments": kept})


def approval_requested(approval: Mapping[str, Any]) -> None:
    """Called once for each new request (as :func:`as_dict` shows it), after it is stored: the
    environment's webhooks that want `approval.requested` are told (queued on its `ops` queue;
    never raises, see :func:`runbooks.notify.notify`)."""
    from runbooks.notify import notify

    arguments = approval.get("arguments")
    directory = arguments.get("inventory") if isinstance(arguments, Mapping) else None
    notify(
        str(approval["environment"]),
        "approval.requested",
        {
            "summary": f"{approval['requested_by']} asks to run {approval['command']} on "
            f"{approval['environment']} (approval {approval['id']}): {approval['reason']}",
            "approval": approval["id"],
            "command": approval["command"],
            "why": approval["why"],
            "reason": approval["reason"],
            "requested_by": approval["requested_by"],
            "expires_at": approval["expires_at"],
            "next": f"invoke approve {approval['id']} (another approver)",
        },
        inventory_dir=Path(directory) if isinstance(directory, str) and directory else None,
    )


def request(
    sessions: sessionmaker[Session],
    *,
    command: str,
    arguments: Mapping[str, Any],
    record_digest: str,
    record: str,
    environment: str,
    why: str,
    reason: str,
    requested_by: str,
) -> dict[str, Any]:
    """Store a pending request and return it (as :func:`as_dict`)."""
    now = utcnow()
    kept = {k: v for k, v in arguments.items() if k not in NOT_HASHED}
    row = Approval(
        command=command,
        record=record,
        environment=environment,
        arguments=json.dumps(kept, sort_keys=True, default=str),
        digest=invocation_digest(command, arguments),
        record_digest=record_digest,
        why=why,
        reason=reason,
        status="pending",
        requested_by=requested_by,
        requested_at=now,
        expires_at=now + dt.timedelta(hours=DEFAULT_HOURS),
    )
    with UnitOfWork(sessions) as uow:
        uow.session.add(row)
        uow.session.flush()
        shown = as_dict(row, now)
        uow.commit()
    approval_requested(shown)
    return shown


def status_of(row: Approval, now: dt.datetime) -> str:
    """The status as it stands now (pending and approved ones past their expiry: expired)."""
    if row.status in ("pending", "approved") and aware(row.expires_at) <= now:
        return "expired"
    return row.status


def as_dict(row: Approval, now: dt.datetime | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": status_of(row, now or utcnow()),
        "command": row.command,
        "arguments": json.loads(row.arguments),
        "environment": row.environment,
        "why": row.why,
        "reason": row.reason,
        "requested_by": row.requested_by,
        "requested_at": aware(row.requested_at).isoformat(),
        "decided_by": row.decided_by,
        "decided_at": aware(row.decided_at).isoformat() if row.decided_at else None,
        "expires_at": aware(row.expires_at).isoformat(),
        "run_id": row.run_id,
        "digest": row.digest,
    }


def list_approvals(
    sessions: sessionmaker[Session], status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest requests first; `status` keeps only those with it (as it stands now)."""
    now = utcnow()
    with UnitOfWork(sessions) as uow:
        rows = uow.session.scalars(select(Approval).order_by(Approval.id.desc())).all()
        shown = [as_dict(r, now) for r in rows]
    return [a for a in shown if status is None or a["status"] == status][:limit]


def get(sessions: sessionmaker[Session], approval_id: int) -> dict[str, Any]:
    with UnitOfWork(sessions) as uow:
        row = uow.session.get(Approval, approval_id)
        if row is None:
            raise NotFound(f"no approval {approval_id} (invoke approvals lists them)")
        return as_dict(row)


def check_decision(sessions: sessionmaker[Session], approval_id: int, by: str) -> None:
    """Refuse deciding a request that is not pending, has expired, or is `by`'s own."""
    found = get(sessions, approval_id)
    if found["status"] != "pending":
        raise AccessDenied(f"approval {approval_id} is {found['status']}, not pending")
    if found["requested_by"] == by:
        raise AccessDenied(
            f"approval {approval_id} was requested by {by}: another approver decides it"
        )


def decide(
    sessions: sessionmaker[Session],
    approval_id: int,
    by: str,
    approve: bool,
    hours: int = DEFAULT_HOURS,
) -> str:
    """Approve (valid for `hours`) or deny a pending request of someone else; a line saying so."""
    check_decision(sessions, approval_id, by)
    now = utcnow()
    values: dict[str, Any] = {
        "status": "approved" if approve else "denied",
        "decided_by": by,
        "decided_at": now,
    }
    if approve:
        values["expires_at"] = now + dt.timedelta(hours=hours)
    with UnitOfWork(sessions) as uow:
        done = uow.session.execute(
            update(Approval)
            .where(
                Approval.id == approval_id,
                Approval.status == "pending",
                Approval.expires_at > now,
                Approval.requested_by != by,
            )
            .values(**values)
        )
        if not getattr(done, "rowcount", 0):  # decided or expired meanwhile
            raise AccessDenied(f"approval {approval_id} is no longer pending")
        row = uow.session.get(Approval, approval_id)
        assert row is not None
        uow.commit()
        who = row.requested_by
    if approve:
        return (
            f"approved {approval_id} for {hours}h: {who} runs it once with "
            f"`invoke approvals.run {approval_id}`"
        )
    return f"denied {approval_id}"


def check_runnable(
    sessions: sessionmaker[Session], approval_id: int, operator: str
) -> dict[str, Any]:
    """The approval, if `operator` may run it now: approved, unexpired, theirs, its arguments
    those approved (the run's own admission checks all of it again, and spends it)."""
    found = get(sessions, approval_id)
    if found["status"] != "approved":
        raise AccessDenied(f"approval {approval_id} is {found['status']}: nothing ran")
    if found["requested_by"] != operator:
        raise AccessDenied(
            f"approval {approval_id} was requested by {found['requested_by']}; only they run it"
        )
    check_arguments(found, found["arguments"])
    return found


def check_arguments(row: Mapping[str, Any] | Approval, arguments: Mapping[str, Any]) -> None:
    """The stored arguments are those approved (their digest), else AccessDenied."""
    command = row["command"] if isinstance(row, Mapping) else row.command
    stored = row["digest"] if isinstance(row, Mapping) else row.digest
    if invocation_digest(command, arguments) != stored:
        number = row["id"] if isinstance(row, Mapping) else row.id
        raise AccessDenied(
            f"the arguments differ from those approved in approval {number}: nothing ran"
        )


def use(
    session: Session,
    approval_id: int,
    operator: str,
    command: str,
    arguments: Mapping[str, Any],
    record_digest: str,
) -> Approval:
    """Spend approval `approval_id` on this run (in the caller's transaction, with its record):
    approved, unexpired, requested by `operator`, the same command line and record, once."""
    now = utcnow()
    row = session.get(Approval, approval_id)
    if row is None:
        raise NotFound(f"no approval {approval_id} (invoke approvals lists them)")
    status = status_of(row, now)
    if status != "approved":
        raise AccessDenied(f"approval {approval_id} is {status}: nothing ran")
    if row.requested_by != operator:
        raise AccessDenied(
            f"approval {approval_id} was requested by {row.requested_by}; only they run it"
        )
    if row.command != command:
        raise AccessDenied(f"approval {approval_id} is for {row.command}, not {command}")
    check_arguments(row, arguments)
    if row.record_digest != record_digest:
        raise AccessDenied(
            f"what {row.command} would do differs from approval {approval_id} (the ref moved?): "
            "nothing ran; ask for a new approval"
        )
    done = session.execute(
        update(Approval)
        .where(Approval.id == approval_id, Approval.status == "approved")
        .values(status="used")
    )
    if not getattr(done, "rowcount", 0):
        raise AccessDenied(f"approval {approval_id} was already used: nothing ran")
    return row


def mark_run(session: Session, approval_id: int, run_id: int) -> None:
    session.execute(update(Approval).where(Approval.id == approval_id).values(run_id=run_id))
