"""Query and act on failed tasks: Laravel's queue:failed, queue:retry, queue:forget, queue:flush.

Rows are written by :func:`record_failure` (at the end) when a task finally fails, secrets
masked. Listing is newest first with keyset paging (``WHERE id < :before ORDER BY id DESC
LIMIT n``): a page walks the primary key, so page 20,000 of a 1,000,000-row table costs what
page 1 does. ``--since`` uses ``ix_failed_tasks_failed_at``.

Retry re-sends the stored task name, args and kwargs to the stored queue and deletes a row only
after the broker accepted its message; a broker error stops the retry with the rows not yet sent
kept. A money task retried after it already succeeded posts nothing more: posting is idempotent
in SQL (see :mod:`celery_app.money.posting`). Every function that is given ids checks all of
them first: one unknown id and nothing changes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from celery_app.bootstrap import Container
from celery_app.errors import InvalidRequest, NotFound, ServiceUnavailable
from celery_app.infra.db import UnitOfWork
from celery_app.infra.models import FailedTask
from celery_app.infra.redaction import Redactor
from celery_app.inputs import record_ids, shown
from celery_app.ops.queues import known_queue

if TYPE_CHECKING:
    from celery import Celery

UowFactory = Callable[[], UnitOfWork]
# (task name, args, kwargs, queue or None); returns once the broker accepted the message.
Send = Callable[[str, list[Any], dict[str, Any], str | None], None]

AGE = re.compile(r"([0-9]{1,6})\s*([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_LIMIT = 1000
MAX_HOURS = 24 * 365 * 100
RETRY_BATCH = 500


def utc(value: dt.datetime) -> dt.datetime:
    """Return `value` as an aware UTC datetime (SQLite hands back naive UTC)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """Parse ``--since``: an ISO date or time (UTC unless it says otherwise) or an age (2h, 3d)."""
    raw = text.strip()
    now = now or dt.datetime.now(dt.UTC)
    age = AGE.fullmatch(raw.lower())
    try:
        if age:
            return now - dt.timedelta(**{UNITS[age.group(2)]: int(age.group(1))})
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
            return dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(), dt.UTC)
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}.*", raw):
            return utc(dt.datetime.fromisoformat(raw))
    except (ValueError, OverflowError):  # no such date, or an age before year 1
        pass
    raise InvalidRequest(
        f"--since: expected an ISO date or time (2026-11-27, 2026-11-27T08:00Z) or an age "
        f"(30m, 2h, 3d, 1w), got {shown(text)}"
    )


def parse_ids(text: str | Iterable[str | int]) -> list[int]:
    """Parse ids given as ``12``, ``12,13`` or ``12 13``; raise InvalidRequest on anything else."""
    return record_ids(text, "failed-task", "failed.list")


def parse_id(text: str | int) -> int:
    """Parse exactly one failed-task id."""
    ids = parse_ids(str(text))
    if len(ids) != 1:
        raise InvalidRequest(f"give one failed-task id, got {len(ids)}")
    return ids[0]


def sender(app: Celery) -> Send:
    """Return a Send over `app`'s producer (the caller passes the app: this module is imported by
    the Celery app itself, to record failures, so it never imports it back)."""
    producer = app

    def send(name: str, args: list[Any], kwargs: dict[str, Any], queue: str | None) -> None:
        producer.send_task(
            name, args=args, kwargs=kwargs, queue=queue, retry_policy={"max_retries": 2}
        )

    return send


def _hours(hours: int | None) -> int | None:
    if hours is not None and not 0 <= hours <= MAX_HOURS:
        raise InvalidRequest(f"--hours: expected a whole number of hours, 0 or more, got {hours}")
    return hours


def _decode(text: str, kind: type, what: str, row_id: int) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, kind):
        raise InvalidRequest(f"failed task {row_id}: stored {what} are not a JSON {kind.__name__}")
    return value


@dataclass(frozen=True)
class FailedView:
    """One failed task as a value."""

    id: int
    task_id: str
    queue: str
    task_name: str
    args: str
    kwargs: str
    exception: str
    failed_at: dt.datetime
    traceback: str = field(default="", repr=False)

    @classmethod
    def of(cls, row: FailedTask, full: bool = False) -> FailedView:
        return cls(
            id=row.id,
            task_id=row.task_id,
            queue=row.queue,
            task_name=row.task_name,
            args=row.args,
            kwargs=row.kwargs,
            exception=row.exception,
            failed_at=utc(row.failed_at),
            traceback=row.traceback if full else "",
        )

    def as_dict(self, full: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["failed_at"] = self.failed_at.isoformat()
        if not full:
            del data["traceback"]
        return data


@dataclass(frozen=True)
class Page:
    """A page of failed tasks, newest first; pass `next_before` as `before` for the next."""

    rows: list[FailedView]
    next_before: int | None


def list_failed(
    uow: UowFactory,
    *,
    queue: str | None = None,
    task: str | None = None,
    since: str | dt.datetime | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Page:
    """Return one page of failed tasks matching the filters, newest first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"--limit: expected 1 to {MAX_LIMIT}, got {limit}")
    query = select(FailedTask)
    if queue is not None:
        query = query.where(FailedTask.queue == known_queue(queue))
    if task is not None:
        query = query.where(FailedTask.task_name == task)
    if since is not None:
        cutoff = parse_since(since) if isinstance(since, str) else utc(since)
        query = query.where(FailedTask.failed_at >= cutoff)
    if before is not None:
        query = query.where(FailedTask.id < before)
    query = query.order_by(FailedTask.id.desc()).limit(limit + 1)
    with uow() as work:
        rows = list(work.session.scalars(query))
    more = len(rows) > limit
    views = [FailedView.of(row) for row in rows[:limit]]
    return Page(views, views[-1].id if more else None)


def count_failed(uow: UowFactory, since: dt.datetime | None = None) -> int:
    """Count failed tasks, all or those that failed at or after `since`."""
    query = select(func.count()).select_from(FailedTask)
    if since is not None:
        query = query.where(FailedTask.failed_at >= utc(since))
    with uow() as work:
        return int(work.session.scalar(query) or 0)


def _require(work: UnitOfWork, ids: Sequence[int], writes: bool = True) -> list[FailedTask]:
    rows = list(work.session.scalars(select(FailedTask).where(FailedTask.id.in_(ids))))
    missing = sorted(set(ids) - {row.id for row in rows})
    if missing:
        listed = ", ".join(str(i) for i in missing[:10])
        outcome = "; nothing changed" if writes else ""  # a read changes nothing anyway
        raise NotFound(f"no failed task with id {listed}{outcome} (see invoke failed.list)")
    return sorted(rows, key=lambda row: row.id)


def check(uow: UowFactory, ids: Sequence[int] | None = None, queue: str | None = None) -> None:
    """Refuse now, writing nothing, what a change would refuse: unknown ids, a queue beside ids.

    It reads the table even without ids, so a database that is down or not migrated says so
    before the change is recorded in the run history.
    """
    if queue is not None:
        if ids is not None:
            raise InvalidRequest("--queue goes with --all")
        known_queue(queue)
    with uow() as work:
        _require(work, ids or [])


def show(uow: UowFactory, task_id: int) -> FailedView:
    """Return one failed task with its traceback."""
    with uow() as work:
        return FailedView.of(_require(work, [task_id], writes=False)[0], full=True)


def forget(uow: UowFactory, ids: Sequence[int]) -> int:
    """Delete the given rows; one unknown id and nothing is deleted."""
    with uow() as work:
        _require(work, ids)
        deleted = work.session.execute(delete(FailedTask).where(FailedTask.id.in_(ids)))
        work.commit()
    return int(deleted.rowcount)  # type: ignore[attr-defined]


def flush(uow: UowFactory, hours: int | None = None) -> int:
    """Delete every failed task, or those older than `hours`; return how many."""
    statement = delete(FailedTask)
    if _hours(hours) is not None:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours or 0)
        statement = statement.where(FailedTask.failed_at < cutoff)
    with uow() as work:
        deleted = work.session.execute(statement)
        work.commit()
    return int(deleted.rowcount)  # type: ignore[attr-defined]


def prune(uow: UowFactory, hours: int = 24) -> int:
    """Delete failed tasks older than `hours` (24 by default), like queue:prune-failed."""
    return flush(uow, hours)


@dataclass
class RetryReport:
    """Rows re-sent (and deleted), in id order."""

    retried: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"retried": self.retried, "count": len(self.retried)}


def _send_and_delete(
    uow: UowFactory, send: Send, rows: list[FailedTask], report: RetryReport
) -> None:
    calls = [
        (
            row.id,
            row.task_name,
            _decode(row.args, list, "args", row.id),
            _decode(row.kwargs, dict, "kwargs", row.id),
            row.queue or None,
        )
        for row in rows
    ]
    accepted: list[int] = []
    try:
        for row_id, name, args, kwargs, queue in calls:
            try:
                send(name, args, kwargs, queue)
            except Exception as exc:  # kombu/redis errors: the broker did not take it
                raise ServiceUnavailable(
                    f"the broker refused failed task {row_id} ({type(exc).__name__}: {exc}); "
                    f"{len(report.retried) + len(accepted)} retried, the rest kept; "
                    "check the broker Redis"
                ) from exc
            accepted.append(row_id)
    finally:
        if accepted:
            with uow() as work:
                work.session.execute(delete(FailedTask).where(FailedTask.id.in_(accepted)))
                work.commit()
            report.retried.extend(accepted)


def retry(
    uow: UowFactory,
    send: Send,
    ids: Sequence[int] | None = None,
    *,
    all_rows: bool = False,
    queue: str | None = None,
) -> RetryReport:
    """Re-send the given rows (or all, optionally of one queue); delete each once accepted."""
    report = RetryReport()
    if all_rows == (ids is not None):
        raise InvalidRequest("give failed-task ids or --all, not both and not neither")
    if queue is not None and not all_rows:
        raise InvalidRequest("--queue goes with --all")
    if ids is not None:
        with uow() as work:
            rows = _require(work, ids)
        _send_and_delete(uow, send, rows, report)
        return report
    after = 0
    while True:
        query = select(FailedTask).where(FailedTask.id > after)
        if queue is not None:
            query = query.where(FailedTask.queue == known_queue(queue))
        with uow() as work:
            rows = list(work.session.scalars(query.order_by(FailedTask.id).limit(RETRY_BATCH)))
        if not rows:
            return report
        _send_and_delete(uow, send, rows, report)
        after = rows[-1].id


def record_failure(
    container: Container,
    *,
    task_id: str,
    task_name: str,
    queue: str,
    args: Any,
    kwargs: Any,
    exception: BaseException | None,
    traceback: str,
) -> int:
    """Insert one failed-task row; return its id."""
    redactor = Redactor(container.settings.secrets)
    mask = redactor.text
    shown = f"{type(exception).__name__}: {exception}" if exception is not None else ""
    with container.uow() as uow:
        row = FailedTask(
            task_id=task_id,
            queue=queue,
            task_name=task_name,
            args=mask(json.dumps(list(args), default=str)),
            kwargs=mask(json.dumps(dict(kwargs), default=str)),
            exception=mask(shown)[:10_000],
            traceback=mask(traceback)[-20_000:],
        )
        uow.session.add(row)
        uow.commit()
        return row.id
