"""The maintenance tasks beat runs (`invoke maintenance.*` runs the same functions), the
no-op that proves a worker consumes a queue, the long-wait check and notification delivery."""

from __future__ import annotations

import logging
from typing import Any

import redis

from celery_app import bootstrap
from celery_app.celery import app
from celery_app.errors import MaqsafyError
from celery_app.infra.redaction import mask_patterns
from celery_app.ops import long_wait, maintenance, notify


@app.task(name="maintenance.memory")
def memory_check() -> dict[str, Any]:
    """Check Redis memory, policy, evictions and persistence; log what is wrong."""
    return maintenance.memory_check(bootstrap.get()).as_dict()


@app.task(name="maintenance.prune_failed")
def prune_failed() -> int:
    """Delete failed tasks older than a week."""
    return maintenance.prune_failed(bootstrap.get())


@app.task(name="maintenance.sweep_locks")
def sweep_locks() -> int:
    """Delete lock keys that would never expire."""
    return maintenance.sweep_stale_locks(bootstrap.get())


@app.task(name="health.noop")
def noop() -> None:
    """Do nothing: proves a worker consumes a queue, and is the benchmarks' baseline."""


@app.task(name=notify.TASK, bind=True, max_retries=notify.MAX_RETRIES)
def deliver(self: Any, variable: str, body: dict[str, Any]) -> int:
    """POST one notification to the webhook whose URL `variable` holds; back off and retry
    while the receiver fails in a way that may pass (see celery_app/ops/notify.py)."""
    try:
        return notify.post(variable, body)
    except notify.DeliveryFailed as exc:
        if not exc.transient:
            raise
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 600)) from None


@app.task(name="queue.long_wait")
def long_wait_check() -> list[str]:
    """Notify, once per episode, the queues whose oldest message waits past its threshold."""
    container = bootstrap.get()

    def send(event: str, payload: Any) -> int:
        return notify.send_app_event(app, container.settings, event, payload)

    try:
        return long_wait.check(container, send)
    except (MaqsafyError, redis.RedisError) as exc:  # a warning per tick, not a failed row
        logging.getLogger(__name__).warning("queue.long_wait: %s", mask_patterns(str(exc)))
        return []
