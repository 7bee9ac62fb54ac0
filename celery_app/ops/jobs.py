"""The maintenance tasks beat runs (`invoke maintenance.*` runs the same functions), and the
no-op that proves a worker consumes a queue."""

from __future__ import annotations

from typing import Any

from celery_app import bootstrap
from celery_app.celery import app
from celery_app.ops import maintenance


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
