"""The run history's tables (migrations 0002, 0004-0007) and the unit of work that writes them.

`ops_runs` (one row per run: kind, name, environment, operator, the operator who approved it
and the approval, the project's version, arguments, check mode, status, start, end),
`ops_run_hosts` (each host's outcome and counters), `ops_run_steps` (each step's outcome, rc,
duration, redacted output), `ops_request_nonces` (the signed ops requests a worker has
accepted: :mod:`runbooks.ops_queue.requests`) and `ops_run_slices` (each slice of a sliced run,
who holds it and its heartbeat: :mod:`runbooks.engine.history_slices`). A host appears once per
run (a unique index), so a slice run again after its worker died cannot count a host twice.
They and the access tables (:mod:`runbooks.access.tables`) share the app's declarative Base, so
:func:`schema_metadata` is every table Alembic manages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

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
)
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from celery_app.infra.db import UnitOfWork, describe_error
from celery_app.infra.models import Base, utcnow
from runbooks.access import tables as access_tables
from runbooks.errors import HistoryError


class OpsRun(Base):
    """One run of a runbook or one recorded ops command."""

    __tablename__ = "ops_runs"
    __table_args__ = (
        Index("ix_ops_runs_started_at", "started_at"),
        Index("ix_ops_runs_name_id", "name", "id"),  # the deploy log reads deploys by name
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # runbook | command
    name: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(100), default="")
    operator: Mapped[str] = mapped_column(String(100), default="")
    approved_by: Mapped[str] = mapped_column(String(100), default="")  # the second person
    approval_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
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
    __table_args__ = (Index("uq_ops_run_hosts_run_host", "run_id", "host", unique=True),)

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


class OpsRunSlice(Base):
    """One slice of a sliced run: which request it belongs to, who holds it, whether it ended.

    The slices' rows are written with their run's row, in one transaction keyed by the request
    (`request`, `slice`), so slices arriving at once on several workers open one run.
    """

    __tablename__ = "ops_run_slices"

    request: Mapped[str] = mapped_column(String(64), primary_key=True)
    slice: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("ops_runs.id", ondelete="CASCADE"), index=True)
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)  # node:pid
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # times a worker took it
    stopped: Mapped[str] = mapped_column(Text, default="")  # why it stopped early, if it did
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def schema_metadata() -> MetaData:
    """Every table the migrations create: the app's (celery_app.infra.models) and the ops
    tables above and the access tables, which share its declarative Base (Alembic compares
    against this)."""
    assert access_tables.Operator.metadata is Base.metadata
    return Base.metadata


@contextmanager
def writing(sessions: sessionmaker[Session]) -> Iterator[UnitOfWork]:
    """A unit of work on the history tables; HistoryError naming the database if it fails."""
    try:
        with UnitOfWork(sessions) as uow:
            yield uow
    except (OperationalError, ProgrammingError) as exc:  # down, or not migrated yet
        bind = sessions.kw.get("bind")
        url = bind.url if bind is not None else "(DATABASE_URL)"
        raise HistoryError(f"run history unavailable: {describe_error(exc, url)}") from exc
