"""Run history in SQL: every runbook run and every recorded ops command, redacted.

The tables are :mod:`runbooks.engine.history_tables`'s; reading is
:mod:`runbooks.engine.history_read`'s (both re-exported here, so callers use this module).

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

Whoever starts an action elsewhere (the console, in a thread of its own) learns which record
it opened with :func:`announcing` (:mod:`runbooks.engine.history_announce`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from celery_app.infra.models import utcnow
from runbooks.access import approvals, gate
from runbooks.engine.history_announce import announce, announcing
from runbooks.engine.history_read import failed_hosts, get_run, list_runs, run_status
from runbooks.engine.history_tables import (
    OpsRequestNonce,
    OpsRun,
    OpsRunHost,
    OpsRunStep,
    schema_metadata,
    writing,
)
from runbooks.engine.redact import Redactor
from runbooks.engine.results import HostResult, RunResult
from runbooks.errors import HistoryError, NotFound

# Writing lives here; reading (history_read) and the tables (history_tables) are re-exported,
# so callers use one module: `history.start_run(...)`, `history.get_run(...)`.
__all__ = [
    "CommandRecord", "OpsRequestNonce", "OpsRun", "OpsRunHost", "OpsRunStep", "add_host",
    "announcing", "closing",
    "failed_hosts", "finish_command", "finish_run", "get_run", "list_runs", "operator_name",
    "project_version", "record_command", "recording", "run_status", "schema_metadata",
    "start_run",
]  # fmt: skip

OUTPUT_LIMIT = 16_000
log = logging.getLogger("runbooks.engine.history")


def operator_name() -> str:
    """Who the last record opened here names (an operator account once accounts exist), else
    the OS user (the one local operator when the database holds no accounts)."""
    admitted = gate.last_admitted()
    return admitted.operator if admitted is not None else gate.os_user()


def project_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maqsafy-ops")
    except PackageNotFoundError:
        from celery_app import __version__

        return __version__


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
    approval: str | None = None,
) -> int:
    """Insert a `running` row and return its id, once the gate admits it.

    The gate (:func:`runbooks.access.gate.admit`) decides in the same transaction: who the
    row names, whether their role allows it, and whether it needs (and spends) an approval;
    `approval` says why a book or inventory requires one. An `operator` given is vouched for
    by the caller (a signed ops request the worker verified, a refusal it records) and is not
    judged again.
    """
    redactor = redactor or Redactor()
    arguments = dict(arguments or {})
    intent = gate.Intent(kind, name, environment, arguments, check, approval)
    try:
        run_id = _insert_run(sessions, intent, redactor, operator, started_at)
    except gate.RequestNeeded as needed:  # rolled back, no row: the request is its own write
        gate.request_approval(sessions, needed)
    announce(run_id)
    return run_id


def _insert_run(
    sessions: sessionmaker[Session],
    intent: gate.Intent,
    redactor: Redactor,
    operator: str | None,
    started_at: dt.datetime | None,
) -> int:
    kind, name, environment, arguments = (
        intent.kind, intent.name, intent.environment, intent.arguments
    )  # fmt: skip
    check = intent.check
    with writing(sessions) as uow:
        admitted = (
            gate.Admitted(operator) if operator else gate.admit(sessions, uow.session, intent)
        )
        run = OpsRun(
            kind=kind,
            name=name,
            environment=environment,
            operator=admitted.operator,
            approved_by=admitted.approved_by,
            approval_id=admitted.approval_id,
            version=project_version(),
            arguments=redactor.text(json.dumps(arguments, default=str)),
            check_mode=check,
            status="running",
            started_at=started_at or utcnow(),
        )
        uow.session.add(run)
        uow.session.flush()
        run_id = run.id
        if admitted.approval_id is not None:
            approvals.mark_run(uow.session, admitted.approval_id, run_id)
        uow.commit()
    return run_id


def finish_run(
    sessions: sessionmaker[Session], run_id: int, result: RunResult, redactor: Redactor
) -> None:
    """Write every host's and step's outcome (redacted) and close the run row."""
    with writing(sessions) as uow:
        run = uow.session.get(OpsRun, run_id)
        if run is None:
            raise NotFound(f"no run {run_id} in the history")
        for host in result.hosts.values():
            add_host(uow.session, run_id, host, redactor)
        run.status = result.status
        run.message = redactor.text(result.stopped or "")
        run.ended_at = result.ended_at or utcnow()
        run.duration = result.duration
        uow.commit()


def add_host(session: Session, run_id: int, host: HostResult, redactor: Redactor) -> None:
    """Add one host's row and its steps' rows (redacted) to run `run_id` in `session`."""
    counts = host.counts()
    session.add(
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
        session.add(
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


@dataclass
class CommandRecord:
    """What :func:`recording` collects for an ops command; `run_id` is its open row."""

    run_id: int = 0
    hosts: dict[str, tuple[str, str]] = field(default_factory=dict)
    status: str | None = None
    message: str = ""
    output: str = ""
    operator: str = ""  # who the row names (the gate's decision)

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
    with writing(sessions) as uow:
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
    approval: str | None = None,
) -> Iterator[CommandRecord]:
    """Open the command's row (`running`), run the block, close the row with the outcome.

    A row that cannot be opened raises HistoryError and the block never runs; an exception in
    the block closes the row `failed` and re-raises; a row that cannot be closed is a warning
    (see :func:`closing`), never the command's outcome.
    """
    redactor = redactor or Redactor()
    started = utcnow()
    record = CommandRecord(
        start_run(
            sessions,
            "command",
            name,
            environment,
            arguments,
            check,
            redactor,
            None,
            started,
            approval,
        )
    )
    admitted = gate.last_admitted()
    record.operator = admitted.operator if admitted else ""
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
