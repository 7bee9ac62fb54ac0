"""Failed tasks through list, show, retry, forget, flush and prune on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from celery_app import bootstrap
from celery_app.bootstrap import Container
from celery_app.errors import InvalidRequest, NotFound, ServiceUnavailable
from celery_app.infra import migrate
from celery_app.infra.models import FailedTask
from celery_app.ops import failed_tasks
from celery_app.ops.failed_tasks import record_failure
from celery_app.settings import load_settings
from tests.support.broker import producer
from tests.support.services import RedisServer


@pytest.fixture
def app(database_url: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[Container]:
    settings = load_settings(
        environ={
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_server.url,
            "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
        },
        dotenv=tmp_path / "no.env",
    )
    container = bootstrap.build(settings)
    migrate.upgrade(container.engine)
    yield container
    container.engine.dispose()


def fail(app: Container, name: str, queue: str, args: list[object], hours_ago: int = 0) -> int:
    row_id = record_failure(
        app,
        task_id=f"t-{name}-{args}",
        task_name=name,
        queue=queue,
        args=args,
        kwargs={"note": "x"} if queue == "ops" else {},
        exception=RuntimeError(f"boom {args}"),
        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: boom",
    )
    if hours_ago:
        with app.uow() as uow:
            when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)
            uow.session.execute(
                update(FailedTask).where(FailedTask.id == row_id).values(failed_at=when)
            )
            uow.commit()
    return row_id


@pytest.fixture
def rows(app: Container) -> list[int]:
    return [
        fail(app, "purchase.post", "payments", [1], hours_ago=72),
        fail(app, "wallet.top_up", "payments", [2], hours_ago=30),
        fail(app, "runbook.run", "ops", ["diagnose"], hours_ago=5),
        fail(app, "purchase.post", "payments", [4]),
        fail(app, "maintenance.memory", "maintenance", []),
    ]


def test_list_filters_and_keyset_pages(app: Container, rows: list[int]) -> None:
    page = failed_tasks.list_failed(app.uow, limit=2)
    assert [r.id for r in page.rows] == [rows[4], rows[3]]
    page = failed_tasks.list_failed(app.uow, limit=2, before=page.next_before)
    assert [r.id for r in page.rows] == [rows[2], rows[1]]
    page = failed_tasks.list_failed(app.uow, limit=2, before=page.next_before)
    assert [r.id for r in page.rows] == [rows[0]] and page.next_before is None

    by_queue = failed_tasks.list_failed(app.uow, queue="payments")
    assert [r.id for r in by_queue.rows] == [rows[3], rows[1], rows[0]]
    by_task = failed_tasks.list_failed(app.uow, task="purchase.post", since="48h")
    assert [r.id for r in by_task.rows] == [rows[3]]
    recent = failed_tasks.list_failed(app.uow, since="6h")
    assert {r.id for r in recent.rows} == {rows[2], rows[3], rows[4]}
    old_date = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date().isoformat()
    assert len(failed_tasks.list_failed(app.uow, since=old_date).rows) >= 4

    with pytest.raises(InvalidRequest, match="unknown queue"):
        failed_tasks.list_failed(app.uow, queue="nope")
    with pytest.raises(InvalidRequest, match="--since"):
        failed_tasks.list_failed(app.uow, since="yesterday")


def test_show_forget_flush_prune(app: Container, rows: list[int]) -> None:
    shown = failed_tasks.show(app.uow, rows[2])
    assert (shown.task_name, shown.queue, json.loads(shown.args)) == (
        "runbook.run",
        "ops",
        ["diagnose"],
    )
    assert "RuntimeError: boom" in shown.traceback and "boom" in shown.exception
    assert shown.failed_at.tzinfo is not None

    with pytest.raises(NotFound):
        failed_tasks.show(app.uow, 999_999)
    with pytest.raises(NotFound, match="999999"):
        failed_tasks.forget(app.uow, [rows[0], 999_999])
    assert failed_tasks.count_failed(app.uow) == 5  # one unknown id: nothing deleted

    assert failed_tasks.forget(app.uow, [rows[4]]) == 1
    assert failed_tasks.prune(app.uow) == 2  # the 72 h and 30 h old ones (default 24 h)
    assert failed_tasks.flush(app.uow, hours=1) == 1  # the 5 h old one
    assert failed_tasks.flush(app.uow) == 1
    assert failed_tasks.count_failed(app.uow) == 0


def sender_for(redis_server: RedisServer) -> failed_tasks.Send:
    celery = producer(redis_server.url)

    def send(name: str, args: list[object], kwargs: dict[str, object], queue: str | None) -> None:
        celery.send_task(name, args=args, kwargs=kwargs, queue=queue, retry=False)

    return send


def queued(redis_server: RedisServer, queue: str) -> list[tuple[str, list[object]]]:
    import base64

    out = []
    for raw in redis_server.client().lrange(queue, 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return sorted(out, key=str)


def test_retry_by_id_sends_then_deletes(
    app: Container, rows: list[int], redis_server: RedisServer
) -> None:
    send = sender_for(redis_server)
    with pytest.raises(NotFound):
        failed_tasks.retry(app.uow, send, [rows[0], 424242])
    assert queued(redis_server, "payments") == []  # nothing sent on a bad id

    report = failed_tasks.retry(app.uow, send, [rows[0], rows[2]])

    assert report.retried == [rows[0], rows[2]]
    assert queued(redis_server, "payments") == [("purchase.post", [1])]
    assert queued(redis_server, "ops") == [("runbook.run", ["diagnose"])]
    assert failed_tasks.count_failed(app.uow) == 3


def test_retry_all_of_one_queue(app: Container, rows: list[int], redis_server: RedisServer) -> None:
    report = failed_tasks.retry(app.uow, sender_for(redis_server), all_rows=True, queue="payments")
    assert report.retried == [rows[0], rows[1], rows[3]]
    assert queued(redis_server, "payments") == [
        ("purchase.post", [1]),
        ("purchase.post", [4]),
        ("wallet.top_up", [2]),
    ]
    left = failed_tasks.list_failed(app.uow).rows
    assert {r.queue for r in left} == {"ops", "maintenance"}


def test_retry_keeps_rows_when_the_broker_refuses(
    app: Container, rows: list[int], redis_server: RedisServer
) -> None:
    send = sender_for(redis_server)
    redis_server.stop()
    with pytest.raises(ServiceUnavailable, match="kept"):
        failed_tasks.retry(app.uow, send, all_rows=True)
    assert failed_tasks.count_failed(app.uow) == 5


def test_an_id_once_forgotten_is_never_handed_out_again(tmp_path: Path) -> None:
    """SQLite reuses the highest rowid unless the table is AUTOINCREMENT (migration 0003)."""
    settings = load_settings(
        {"MAQSAFY_VAR_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"},
        dotenv=tmp_path / "none",
    )
    app = bootstrap.build(settings)
    migrate.upgrade(app.engine)

    def fail() -> int:
        return record_failure(
            app,
            task_id="t",
            task_name="purchase.post",
            queue="payments",
            args=[1],
            kwargs={},
            exception=RuntimeError("x"),
            traceback="",
        )

    first, second = fail(), fail()
    assert failed_tasks.forget(app.uow, [second]) == 1
    third = fail()
    assert third > second > first
    app.engine.dispose()


def test_a_failure_is_stored_with_its_secrets_masked(app: Container) -> None:
    """Secrets the configuration never knew (a URL password in the message) are masked too."""
    message = "cannot reach postgresql://app:hostpw-123@db/x (REDIS_PASSWORD=s3cr3t-host)"
    row_id = record_failure(
        app,
        task_id="t-secret",
        task_name="purchase.post",
        queue="payments",
        args=[7, "redis://:argpw-9@cache:6379/0"],
        kwargs={"api_token": "tok-xyz", "idempotency_key": "req-0007"},
        exception=ServiceUnavailable(message),
        traceback=f"Traceback (most recent call last):\n  ...\nServiceUnavailable: {message}",
    )
    with app.uow() as uow:
        row = uow.session.get(FailedTask, row_id)
        assert row is not None
        stored = " ".join([row.args, row.kwargs, row.exception, row.traceback])
    for secret in ("hostpw-123", "s3cr3t-host", "argpw-9", "tok-xyz"):
        assert secret not in stored
    shown = failed_tasks.show(app.uow, row_id)
    assert shown.exception == (  # the `)` goes with the value: better than a leaked character
        "ServiceUnavailable: cannot reach postgresql://app:********@db/x (REDIS_PASSWORD=********"
    )
    assert json.loads(shown.args) == [7, "redis://:********@cache:6379/0"]
    # Still JSON, and the payment's own key is kept: a retry posts the same request once.
    assert json.loads(shown.kwargs) == {"api_token": "********", "idempotency_key": "req-0007"}
