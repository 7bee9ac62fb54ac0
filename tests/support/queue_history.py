"""Sample data for the Queues chart (the screenshots, the console benchmark): written the way
the console's sampler writes it (celery_app/ops/queue_samples.py)."""

from __future__ import annotations

import time

from celery_app.bootstrap import Container
from celery_app.ops import queue_samples
from celery_app.ops.queues import QueueStats


def queue_history(app: Container, hours: int = 6) -> None:
    """Samples of the last `hours` for the Queues chart: a lunch rush on payments, a sampler
    that was down for a quarter of an hour (the console's sampler writes the same way)."""
    now = time.time()
    for minute in range(hours * 60, 0, -1):
        if 200 <= minute < 215:
            continue
        rush = max(0.0, 40 - abs(minute - 120) / 2)
        stats = [
            QueueStats("payments", True, int(rush), min(2, int(rush)), rush * 1.5, 3.0, True),
            QueueStats("maintenance", False, int(300 <= minute < 310), 0, None, None, True),
            QueueStats("ops", False, 0, int(60 <= minute < 90), None, 20.0, True),
        ]
        queue_samples.write(app.redis("broker"), app.keyspace, stats, now - 60 * minute)
