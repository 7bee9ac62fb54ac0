"""A sliced run's records: one run row shared by its slices, each slice's lease, each host once.

`invoke run BOOK --remote --slices N` becomes N tasks on the ops queue, run by any ops workers,
possibly at the same moment and possibly more than once (a slice whose worker died is taken
again). SQL coordinates them, never the broker (the app has no result backend):

- :func:`open_run`: the first slice to arrive writes the run's row (`running`) and one
  `ops_run_slices` row per slice in one transaction keyed by (request, slice); a slice that
  arrives at the same time hits that key, rolls back, and joins the run the winner opened.
- :func:`claim`: a slice is taken by one worker at a time: an UPDATE that succeeds only when
  the slice has not ended and nobody holds it, or its holder's heartbeat is older than the
  lease (its worker died). :func:`beat` renews the heartbeat while the slice runs.
- :func:`record_host`: each host's row and its steps' rows are written as the host ends; a
  host is unique per run, so a host written twice (two holders after a stalled heartbeat)
  counts once, and a slice taken again skips the hosts already written (:func:`recorded`).
- :func:`finish_slice`: marks the slice ended; the slice that ends last (decided under a lock
  on the run's row) closes the run with the status its hosts and slices give.

Times are the workers' clocks (UTC): they must agree to well within the lease (NTP).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from celery_app.infra.models import utcnow
from runbooks.engine.history import add_host, project_version
from runbooks.engine.history_tables import OpsRun, OpsRunHost, OpsRunSlice, writing
from runbooks.engine.redact import Redactor
from runbooks.engine.results import HostResult

FAILED = ("failed", "unreachable")


@dataclass(frozen=True)
class Closed:
    """The run a slice's end closed: its id, status and message (why it stopped, if it did)."""

    run_id: int
    status: str
    message: str


def find_run(sessions: sessionmaker[Session], request: str) -> int | None:
    """The run a sliced request opened (None before its first slice arrived)."""
    with writing(sessions) as uow:
        return uow.session.scalar(
            select(OpsRunSlice.run_id).where(OpsRunSlice.request == request).limit(1)
        )


def open_run(
    sessions: sessionmaker[Session],
    request: str,
    slices: int,
    *,
    name: str,
    environment: str,
    arguments: Mapping[str, Any],
    check: bool,
    operator: str,
    redactor: Redactor,
) -> int:
    """The run of `request`: opened here with its `slices` rows, or the one already open."""
    found = find_run(sessions, request)
    if found is not None:
        return found
    try:
        with writing(sessions) as uow:
            run = OpsRun(
                kind="runbook",
                name=name,
                environment=environment,
                operator=operator,
                version=project_version(),
                arguments=redactor.text(json.dumps(dict(arguments), default=str)),
                check_mode=check,
                status="running",
                started_at=utcnow(),
            )
            uow.session.add(run)
            uow.session.flush()
            for index in range(slices):
                uow.session.add(
                    OpsRunSlice(request=request, slice=index, run_id=run.id, stopped="")
                )
            run_id = run.id
            uow.commit()
            return run_id
    except IntegrityError:  # another slice opened it first: join that run
        found = find_run(sessions, request)
        if found is None:
            raise
        return found


def claim(
    sessions: sessionmaker[Session], request: str, index: int, holder: str, lease: float
) -> str:
    """Take slice `index` for `holder`: "claimed", "done" (it ended) or "held" (a live holder)."""
    now = utcnow()
    with writing(sessions) as uow:
        taken = uow.session.execute(
            update(OpsRunSlice)
            .where(
                OpsRunSlice.request == request,
                OpsRunSlice.slice == index,
                OpsRunSlice.done_at.is_(None),
                or_(
                    OpsRunSlice.holder.is_(None),
                    OpsRunSlice.heartbeat_at < now - dt.timedelta(seconds=lease),
                ),
            )
            .values(holder=holder, heartbeat_at=now, attempts=OpsRunSlice.attempts + 1)
        )
        won = getattr(taken, "rowcount", 0) == 1
        uow.commit()
        if won:
            return "claimed"
        done = uow.session.scalar(
            select(OpsRunSlice.done_at).where(
                OpsRunSlice.request == request, OpsRunSlice.slice == index
            )
        )
        return "done" if done is not None else "held"


def beat(sessions: sessionmaker[Session], request: str, index: int, holder: str) -> bool:
    """Renew `holder`'s heartbeat on the slice; False when it is no longer theirs."""
    with writing(sessions) as uow:
        renewed = uow.session.execute(
            update(OpsRunSlice)
            .where(
                OpsRunSlice.request == request,
                OpsRunSlice.slice == index,
                OpsRunSlice.holder == holder,
                OpsRunSlice.done_at.is_(None),
            )
            .values(heartbeat_at=utcnow())
        )
        mine = getattr(renewed, "rowcount", 0) == 1
        uow.commit()
        return mine


def stale(sessions: sessionmaker[Session], request: str, lease: float) -> list[int]:
    """The slices of `request` held by a worker whose heartbeat is older than the lease."""
    cutoff = utcnow() - dt.timedelta(seconds=lease)
    with writing(sessions) as uow:
        return list(
            uow.session.scalars(
                select(OpsRunSlice.slice)
                .where(
                    OpsRunSlice.request == request,
                    OpsRunSlice.done_at.is_(None),
                    OpsRunSlice.holder.is_not(None),
                    OpsRunSlice.heartbeat_at < cutoff,
                )
                .order_by(OpsRunSlice.slice)
            )
        )


def recorded(sessions: sessionmaker[Session], run_id: int) -> set[str]:
    """The hosts run `run_id` has written already."""
    with writing(sessions) as uow:
        return set(uow.session.scalars(select(OpsRunHost.host).where(OpsRunHost.run_id == run_id)))


def record_host(
    sessions: sessionmaker[Session], run_id: int, host: HostResult, redactor: Redactor
) -> bool:
    """Write one host's outcome; False when the run already has that host (kept as it was)."""
    try:
        with writing(sessions) as uow:
            add_host(uow.session, run_id, host, redactor)
            uow.commit()
    except IntegrityError:
        return False
    return True


def finish_slice(
    sessions: sessionmaker[Session],
    request: str,
    index: int,
    holder: str,
    stopped: str,
    redactor: Redactor,
) -> Closed | None:
    """End `holder`'s slice; when it was the run's last, close the run and say how it ended."""
    now = utcnow()
    with writing(sessions) as uow:
        session = uow.session
        run_id = session.scalar(
            select(OpsRunSlice.run_id).where(
                OpsRunSlice.request == request, OpsRunSlice.slice == index
            )
        )
        if run_id is None:
            return None
        # the run's row is the lock: slices ending at once decide one after the other
        run = session.scalars(
            select(OpsRun).where(OpsRun.id == run_id).with_for_update(key_share=True)
        ).one()
        session.execute(
            update(OpsRunSlice)
            .where(
                OpsRunSlice.request == request,
                OpsRunSlice.slice == index,
                OpsRunSlice.holder == holder,
                OpsRunSlice.done_at.is_(None),
            )
            .values(done_at=now, stopped=redactor.text(stopped), heartbeat_at=now)
        )
        closed = _close_if_last(session, run, request, now)
        uow.commit()
        return closed


def _close_if_last(session: Session, run: OpsRun, request: str, now: dt.datetime) -> Closed | None:
    rows = session.execute(
        select(OpsRunSlice.slice, OpsRunSlice.done_at, OpsRunSlice.stopped)
        .where(OpsRunSlice.request == request)
        .order_by(OpsRunSlice.slice)
    ).all()
    if run.status != "running" or any(done is None for _, done, _ in rows):
        return None
    stopped = [f"slice {i + 1}: {why}" for i, _, why in rows if why]
    failed = session.scalar(
        select(func.count())
        .select_from(OpsRunHost)
        .where(OpsRunHost.run_id == run.id, OpsRunHost.status.in_(FAILED))
    )
    run.status = "stopped" if stopped else "failed" if failed else "ok"
    run.message = "; ".join(stopped)
    started = run.started_at
    if started.tzinfo is None:  # SQLite keeps no zone: the rows are written in UTC
        started = started.replace(tzinfo=dt.UTC)
    run.ended_at = now
    run.duration = (now - started).total_seconds()
    return Closed(run.id, run.status, run.message)
