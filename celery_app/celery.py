"""The Celery app on the Redis broker, configured for money (`celery -A celery_app worker`).

Late acks with reject-on-worker-lost, prefetch 1, JSON only, a visibility timeout above the
longest task, no result backend (results live in SQL). Delivery is at least once; exactly-once
comes from SQL (see :mod:`celery_app.money.posting`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery
from celery.schedules import crontab
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    before_task_publish,
    task_failure,
    worker_init,
    worker_process_init,
)
from kombu.transport.redis import Channel

from celery_app import bootstrap
from celery_app.errors import ConfigError, MaqsafyError
from celery_app.infra.embedded import ensure_embedded_redis
from celery_app.infra.keyspace import QUEUES
from celery_app.infra.redaction import RedactingFilter, Redactor
from celery_app.ops.queues import stamp_sent_at
from celery_app.ops.redis_acl import unacked_keys
from celery_app.settings import Settings, load_settings


def kombu_url(url: str) -> str:
    """Translate redis-py's unix:// URL into kombu's redis+socket:// form."""
    if not url.startswith("unix://"):
        return url
    parts = urlsplit(url)
    db = parse_qs(parts.query).get("db", ["0"])[0]
    return f"redis+socket://{parts.path}?virtual_host={db}"


def transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's options: the visibility timeout, and the unacked keys of the role whose Redis
    user the broker URL names (the ops runner and the operator's tool keep their own)."""
    user = urlsplit(settings.redis_url("broker")).username or ""
    key, index, mutex = unacked_keys(user)
    options: dict[str, Any] = {"visibility_timeout": settings.visibility_timeout}
    if key != Channel.unacked_key:
        options.update(unacked_key=key, unacked_index_key=index, unacked_mutex_key=mutex)
    return options


def configure(app: Celery, settings: Settings) -> None:
    bootstrap.make_var_dir(settings)  # beat keeps its schedule file here
    app.conf.update(
        broker_url=kombu_url(settings.redis_url("broker")),
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(settings),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue="maintenance",
        task_create_missing_queues=True,
        task_routes={
            "wallet.*": {"queue": "payments"},
            "purchase.*": {"queue": "payments"},
            "runbook.*": {"queue": "ops"},
            "notify.*": {"queue": "ops"},
        },
        enable_utc=True,
        timezone="UTC",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule_filename=str(settings.var_dir / "celerybeat-schedule"),
        beat_schedule={
            "outbox-relay": {"task": "outbox.relay", "schedule": 30.0},
            "ledger-reconcile": {"task": "ledger.reconcile", "schedule": crontab(minute=5)},
            "settlement-daily": {
                "task": "settlement.run_daily",
                "schedule": crontab(hour=23, minute=30),
            },
            # maintenance (issue 6): see celery_app/ops/maintenance.py
            "redis-memory-check": {"task": "maintenance.memory", "schedule": 300.0},
            "failed-prune": {"task": "maintenance.prune_failed", "schedule": crontab(minute=17)},
            "lock-sweep": {"task": "maintenance.sweep_locks", "schedule": 600.0},
            # notifications (issue 14): see celery_app/ops/long_wait.py
            "queue-long-wait": {"task": "queue.long_wait", "schedule": 15.0},
        },
    )


def make_app(settings: Settings) -> Celery:
    """Build a Celery app for `settings` (the module's `app` uses the environment's)."""
    new = Celery(
        "maqsafy",
        include=["celery_app.money.jobs", "celery_app.ops.jobs", "celery_app.ops.worker_commands"],
        set_as_current=False,
    )
    configure(new, settings)
    return new


def make_enqueue(target: Celery, settings: Settings) -> Callable[..., None]:
    """Return a function that sends a money task by name and raises if the broker refused.

    `wallet`, when given, travels in the message so the worker locks it without reading SQL.
    """

    def enqueue(task_name: str, request_id: int, wallet: int | None = None) -> None:
        if settings.embedded_redis:
            ensure_embedded_redis(settings.var_dir)
        kwargs = {} if wallet is None else {"wallet": wallet}
        target.send_task(
            task_name, args=[request_id], kwargs=kwargs, retry_policy={"max_retries": 2}
        )

    return enqueue


try:
    _settings = load_settings()
    app = make_app(_settings)
except ConfigError as exc:  # one line for the operator, no traceback; 2 as for every bad input
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

app.set_current()
enqueue = make_enqueue(app, _settings)
assert set(QUEUES) >= {"payments", "maintenance", "ops"}


@worker_init.connect
@beat_init.connect
def _embedded_broker(**_: Any) -> None:
    if _settings.embedded_redis:
        ensure_embedded_redis(_settings.var_dir)


# Every message this process sends carries its send time, so `queue.size` can age it.
before_task_publish.connect(stamp_sent_at, weak=False)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redacted_logs(logger: Any = None, **_: Any) -> None:
    """Worker and beat logs mask the secrets settings know and every secret pattern (a task's
    arguments or an exception can carry a password; Celery logs both on failure)."""
    if logger is None:
        return
    redacting = RedactingFilter(Redactor(_settings.secrets))
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    bootstrap.reset()
    # Build this process's container now (no connection is opened: the engine is lazy), so
    # its first task does not pay for it: ~0.5 s of imports and set-up, the time of hundreds
    # of postings.
    # A setting error is raised again by the first task that needs it, where it is recorded.
    with contextlib.suppress(MaqsafyError):
        bootstrap.get()


@task_failure.connect
def _record_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    from celery_app.ops import notify
    from celery_app.ops.failed_tasks import record_failure

    name = getattr(sender, "name", "?")
    try:
        request = getattr(sender, "request", None)
        delivery = getattr(request, "delivery_info", None) or {}
        queue = str(delivery.get("routing_key") or "")
        row = record_failure(
            bootstrap.get(),
            task_id=task_id or "",
            task_name=name,
            queue=queue,
            args=args or [],
            kwargs=kwargs or {},
            exception=exception,
            traceback=str(einfo.traceback) if einfo is not None else "",
        )
        if name != notify.TASK:  # a webhook that is down would notify its own failures forever
            summary = f"task {name} failed on {queue or '?'} (failed task {row})"
            notify.send_app_event(
                app,
                _settings,
                "task.failed",
                {
                    "summary": summary,
                    "task": name,
                    "queue": queue,
                    "failed_task": row,
                    "error": f"{type(exception).__name__}: {exception}"[:300] if exception else "",
                },
            )
    except MaqsafyError:
        pass
    except Exception:  # a notification that could not be queued must not hide the failure
        logging.getLogger(__name__).warning("task.failed notification not sent", exc_info=True)
