"""Reading the run history: the newest runs, one run with its hosts and steps, a run's failed
hosts (for --retry-failed), a run's status alone (the console's live view)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from runbooks.engine.history_tables import OpsRun, OpsRunHost, OpsRunStep, writing
from runbooks.errors import NotFound


def list_runs(
    sessions: sessionmaker[Session], limit: int = 20, before: int | None = None
) -> list[dict[str, Any]]:
    """The newest runs first, as plain dicts; `before`: only runs with a lower id (the next
    page, walked on the primary key like failed tasks are)."""
    query = select(OpsRun)
    if before is not None:
        query = query.where(OpsRun.id < before)
    with writing(sessions) as uow:
        rows = uow.session.scalars(query.order_by(OpsRun.id.desc()).limit(limit)).all()
        return [_run_dict(row) for row in rows]


def run_status(sessions: sessionmaker[Session], run_id: int) -> str:
    """A run's status alone (`running` until it ends); NotFound when there is no such run."""
    with writing(sessions) as uow:
        status = uow.session.scalar(select(OpsRun.status).where(OpsRun.id == run_id))
    if status is None:
        raise NotFound(f"no run {run_id} in the history (`invoke history` lists them)")
    return str(status)


def get_run(sessions: sessionmaker[Session], run_id: int) -> dict[str, Any]:
    """One run with its hosts and steps; NotFound when there is no such run."""
    with writing(sessions) as uow:
        run = uow.session.get(OpsRun, run_id)
        if run is None:
            raise NotFound(f"no run {run_id} in the history (`invoke history` lists them)")
        hosts = uow.session.scalars(
            select(OpsRunHost).where(OpsRunHost.run_id == run_id).order_by(OpsRunHost.id)
        ).all()
        steps = uow.session.scalars(
            select(OpsRunStep).where(OpsRunStep.run_id == run_id).order_by(OpsRunStep.id)
        ).all()
        data = _run_dict(run)
        data["hosts"] = [
            {
                "host": h.host,
                "status": h.status,
                "cause": h.cause,
                "message": h.message,
                "batch": h.batch,
                "ok": h.ok,
                "changed": h.changed,
                "skipped": h.skipped,
                "failed": h.failed,
                "rescued": h.rescued,
                "duration": h.duration,
            }
            for h in hosts
        ]
        data["steps"] = [
            {
                "host": s.host,
                "position": s.position,
                "step": s.step,
                "action": s.action,
                "status": s.status,
                "message": s.message,
                "rc": s.rc,
                "attempts": s.attempts,
                "rescued": s.rescued,
                "duration": s.duration,
                "stdout": s.stdout,
                "stderr": s.stderr,
            }
            for s in steps
        ]
        return data


def failed_hosts(sessions: sessionmaker[Session], run_id: int) -> tuple[dict[str, Any], list[str]]:
    """The run (as a dict) and its hosts that failed or were unreachable, for --retry-failed."""
    run = get_run(sessions, run_id)
    return run, [h["host"] for h in run["hosts"] if h["status"] in ("failed", "unreachable")]


def _run_dict(run: OpsRun) -> dict[str, Any]:
    try:
        arguments = json.loads(run.arguments or "{}")
    except ValueError:
        arguments = {}
    return {
        "id": run.id,
        "kind": run.kind,
        "name": run.name,
        "environment": run.environment,
        "operator": run.operator,
        "approved_by": run.approved_by or "",
        "approval_id": run.approval_id,
        "version": run.version,
        "arguments": arguments,
        "check": run.check_mode,
        "status": run.status,
        "message": run.message,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "duration": run.duration,
    }
