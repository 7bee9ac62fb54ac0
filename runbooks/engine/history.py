"""Run history in SQL: every runbook run and every recorded ops command, redacted.

Tables (migration 0002): `ops_runs` (one row per run: kind, name, environment, operator, the
project's version, arguments, check mode, status, start, end), `ops_run_hosts` (each host's
outcome and counters) and `ops_run_steps` (each step's outcome, rc, duration, redacted output);
(migration 0004) `ops_request_nonces`, the signed ops requests a worker has accepted
(:mod:`runbooks.ops_queue.requests`).

Nothing acts without its record: a run or a state-changing command first inserts its row
(status `running`, operator, redacted arguments, environment), then acts, then closes the row
with the outcome. A row that cannot be opened raises HistoryError before anything happened; a
row that cannot be closed is logged as a warning on the `runbooks.engine.history` logger (the entry
point shows it) so the command's own outcome is not hidden.

Runbooks write through :func:`start_run` / :func:`finish_run`; other ops commands (cache clear,
queue purge, session revoke) record themselves with the :func:`recording` context manager, or
:func:`start_run` / :func:`finish_command` where opening and closing are apart::

    with recording(app.sessions, "cache.clear", environment="local", redactor=r) as rec:
        rec.host("localhost", "ok", "deleted 120 cache keys")
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    select,
)
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from celery_app.infra.db import UnitOfWork, describe_error
from celery_app.infra.models import Base, utcnow
from runbooks.engine.redact import Redactor
from runbooks.engine.results import RunResult
from runbooks.errors import HistoryError, NotFound

OUTPUT_LIMIT = 16_000
log = logging.getLogger("runbooks.engine.history")


class OpsRun(Base):
    """One run of a runbook or one recorded ops command."""

    __tablename__ = "ops_runs"
    __table_args__ = (Index("ix_ops_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # runbook | command
    name: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(100), default="")
    operator: Mapped[str] = mapped_column(String(100), default="")
    version: Mapped[str] = mapped_column(String(64), default="")
    arguments: Mapped[str] = mapped_column(Text, default="{}")
    check_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="running")
    message: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)


class OpsRunHost(Base):
    """One host's outcome in a run."""

    __tablename__ = "ops_run_hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("ops_runs.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # ok | failed | unreachable | not_run
    cause: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    batch: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    rescued: Mapped[int] = mapped_column(Integer, default=0)
    duration: Mapped[float] = mapped_column(Float, default=0.0)


class OpsRunStep(Base):
    """One step's outcome on one host."""

    __tablename__ = "ops_run_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("ops_runs.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    rc: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    rescued: Mapped[bool] = mapped_column(Boolean, default=False)
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OpsRequestNonce(Base):
    """A request nonce a worker has accepted once (replays are refused against this table)."""

    __tablename__ = "ops_request_nonces"

    __table_args__ = (Index("ix_ops_request_nonces_received_at", "received_at"),)

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def schema_metadata() -> MetaData:
    """Every table the migrations create: the app's (celery_app.infra.models) and the ops
    tables above, which share its declarative Base (Alembic compares against this)."""
    return Base.metadata


def operator_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def project_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maqsafy-ops")
    except PackageNotFoundError:
        from celery_app import __version__

        return __version__


@contextmanager
def _writing(sessions: sessionmaker[Session]) -> Iterator[UnitOfWork]:
    try:
        with UnitOfWork(sessions) as uow:
            yield uow
    except (OperationalError, ProgrammingError) as exc:  # down, or not migrated yet
        bind = sessions.kw.get("bind")
        url = bind.url if bind is not None else "(DATABASE_URL)"
        raise HistoryError(f"run history unavailable: {describe_error(exc, url)}") from exc


@contextmanager
def closing(run_id: int, name: str) -> Iterator[None]:
    """Around closing a row: a history that cannot be written is a warning, not the outcome."""
    try:
        yield
    except HistoryError as exc:
        log.warning(
            "history run %s (%s) was not closed and still says running: %s", run_id, name, exc
        )


def _clip(text: str) -> str:
    return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + "\n[... truncated]"


def start_run(
    sessions: sessionmaker[Session],
    kind: str,
    name: str,
    environment: str = "",
    arguments: Mapping[str, Any] | None = None,
    check: bool = False,
    redactor: Redactor | None = None,
    operator: str | None = None,
    started_at: dt.datetime | None = None,
) -> int:
    """Insert a `running` row and return its id."""
    redactor = redactor or Redactor()
    with _writing(sessions) as uow:
        run = OpsRun(
            kind=kind,
            name=name,
            environment=environment,
            operator=operator or operator_name(),
            version=project_version(),
            arguments=redactor.text(json.dumps(dict(arguments or {}), default=str)),
            check_mode=check,
            status="running",
            started_at=started_at or utcnow(),
        )
        uow.session.add(run)
        uow.session.flush()
        run_id = run.id
        uow.commit()
    return run_id


def finish_run(
    sessions: sessionmaker[Session], run_id: int, result: RunResult, redactor: Redactor
) -> None:
    """Write every host's and step's outcome (redacted) and close the run row."""
    with _writing(sessions) as uow:
        run = uow.session.get(OpsRun, run_id)
        if run is None:
            raise NotFound(f"no run {run_id} in the history")
        for host in result.hosts.values():
            counts = host.counts()
            uow.session.add(
                OpsRunHost(
                    run_id=run_id,
                    host=host.host,
                    status=host.status,
                    cause=host.cause,
                    message=redactor.text(host.message),
                    batch=host.batch,
                    ok=counts["ok"],
                    changed=counts["changed"],
                    skipped=counts["skipped"],
                    failed=counts["failed"],
                    rescued=counts["rescued"],
                    duration=host.duration,
                )
            )
            for step in host.steps:
                uow.session.add(
                    OpsRunStep(
                        run_id=run_id,
                        host=host.host,
                        position=step.position,
                        step=redactor.text(step.step)[:300],
                        action=step.action,
                        status=step.status,
                        message=redactor.text(step.message),
                        rc=step.rc,
                        attempts=step.attempts,
                        rescued=step.rescued,
                        duration=step.duration,
                        stdout=_clip(redactor.text(step.stdout)),
                        stderr=_clip(redactor.text(step.stderr)),
                        started_at=step.started_at,
                    )
                )
        run.status = result.status
        run.message = redactor.text(result.stopped or "")
        run.ended_at = result.ended_at or utcnow()
        run.duration = result.duration
        uow.commit()


@dataclass
class CommandRecord:
    """What :func:`recording` collects for an ops command; `run_id` is its open row."""

    run_id: int = 0
    hosts: dict[str, tuple[str, str]] = field(default_factory=dict)
    status: str | None = None
    message: str = ""
    output: str = ""

    def host(self, name: str, status: str, message: str = "") -> None:
        self.hosts[name] = (status, message)


def finish_command(
    sessions: sessionmaker[Session],
    run_id: int,
    *,
    status: str = "ok",
    message: str = "",
    hosts: Mapping[str, tuple[str, str]] | None = None,
    output: str = "",
    started_at: dt.datetime | None = None,
    ended_at: dt.datetime | None = None,
    redactor: Redactor | None = None,
) -> None:
    """Close the command row `run_id` (opened by :func:`start_run`) with its outcome.

    `hosts` maps a host to (status, message); `output` is kept (redacted) as one step's stdout.
    """
    redactor = redactor or Redactor()
    ended_at = ended_at or utcnow()
    with _writing(sessions) as uow:
        run = uow.session.get(OpsRun, run_id)
        if run is None:
            raise NotFound(f"no run {run_id} in the history")
        started_at = started_at or run.started_at
        if started_at.tzinfo is None:  # SQLite keeps no zone: the rows are written in UTC
            started_at = started_at.replace(tzinfo=dt.UTC)
        for host, (host_status, host_message) in (hosts or {}).items():
            uow.session.add(
                OpsRunHost(
                    run_id=run_id,
                    host=host,
                    status=host_status,
                    message=redactor.text(host_message),
                    failed=int(host_status in ("failed", "unreachable")),
                    ok=int(host_status == "ok"),
                )
            )
        if output:
            uow.session.add(
                OpsRunStep(
                    run_id=run_id,
                    host=next(iter(hosts or {}), "-"),
                    position=1,
                    step=run.name,
                    action="command",
                    status=status,
                    message=redactor.text(message),
                    stdout=_clip(redactor.text(output)),
                    started_at=started_at,
                )
            )
        run.status = status
        run.message = redactor.text(message)
        run.ended_at = ended_at
        run.duration = (ended_at - started_at).total_seconds()
        uow.commit()


def record_command(
    sessions: sessionmaker[Session],
    name: str,
    *,
    environment: str = "",
    arguments: Mapping[str, Any] | None = None,
    status: str = "ok",
    message: str = "",
    hosts: Mapping[str, tuple[str, str]] | None = None,
    output: str = "",
    check: bool = False,
    started_at: dt.datetime | None = None,
    ended_at: dt.datetime | None = None,
    redactor: Redactor | None = None,
    operator: str | None = None,
) -> int:
    """Record one ops command that already finished (an import, a test); return its id.

    A command that changes state uses :func:`recording` instead, so its row exists before it acts.
    """
    redactor = redactor or Redactor()
    started_at = started_at or utcnow()
    run_id = start_run(
        sessions, "command", name, environment, arguments, check, redactor, operator, started_at
    )
    finish_command(
        sessions,
        run_id,
        status=status,
        message=message,
        hosts=hosts,
        output=output,
        started_at=started_at,
        ended_at=ended_at,
        redactor=redactor,
    )
    return run_id


@contextmanager
def recording(
    sessions: sessionmaker[Session],
    name: str,
    *,
    environment: str = "",
    arguments: Mapping[str, Any] | None = None,
    check: bool = False,
    redactor: Redactor | None = None,
) -> Iterator[CommandRecord]:
    """Open the command's row (`running`), run the block, close the row with the outcome.

    A row that cannot be opened raises HistoryError and the block never runs; an exception in
    the block closes the row `failed` and re-raises; a row that cannot be closed is a warning
    (see :func:`closing`), never the command's outcome.
    """
    redactor = redactor or Redactor()
    started = utcnow()
    record = CommandRecord(
        start_run(sessions, "command", name, environment, arguments, check, redactor, None, started)
    )
    try:
        yield record
    except BaseException as exc:
        record.status = "failed"
        record.message = record.message or f"{type(exc).__name__}: {exc}"
        raise
    finally:
        status = record.status or (
            "failed"
            if any(s in ("failed", "unreachable") for s, _ in record.hosts.values())
            else "ok"
        )
        with closing(record.run_id, name):
            finish_command(
                sessions,
                record.run_id,
                status=status,
                message=record.message,
                hosts=record.hosts,
                output=record.output,
                started_at=started,
                redactor=redactor,
            )


# -- reading ---------------------------------------------------------------------------------


def list_runs(sessions: sessionmaker[Session], limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs first, as plain dicts."""
    with _writing(sessions) as uow:
        rows = uow.session.scalars(select(OpsRun).order_by(OpsRun.id.desc()).limit(limit)).all()
        return [_run_dict(row) for row in rows]


def get_run(sessions: sessionmaker[Session], run_id: int) -> dict[str, Any]:
    """One run with its hosts and steps; NotFound when there is no such run."""
    with _writing(sessions) as uow:
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
        "version": run.version,
        "arguments": arguments,
        "check": run.check_mode,
        "status": run.status,
        "message": run.message,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "duration": run.duration,
    }
