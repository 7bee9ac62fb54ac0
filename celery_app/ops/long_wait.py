"""Long-wait alerts, like Laravel Horizon's: a queue whose oldest waiting message has waited
longer than its threshold is notified once per episode.

Beat runs :func:`check` (``queue.long_wait``, every 15 s). The age of the oldest waiting message
comes from its ``sent_at`` stamp (:mod:`celery_app.ops.queues`); thresholds are
``Settings.long_wait`` (`MAQSAFY_LONG_WAIT`, default ``payments=60``; 0 turns a queue off).
An episode is a flag in Redis (locks role, ``<prefix>:lock:notify:long-wait:<queue>``) set with
``SET NX`` when the wait first passes the threshold: only the tick that set it notifies. The
flag is removed when the queue is empty or its oldest message waits less than the threshold
again, so the next long wait is a new episode. The flag carries a TTL (renewed on every tick of
the episode), so the lock sweep leaves it alone and a forgotten one ends by itself. A message
whose age is unknown (no stamp) neither starts nor ends an episode. A notification that could
not be queued is a warning, and the next tick tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from celery_app.infra.redaction import mask_patterns
from celery_app.ops.queues import queue_stats

log = logging.getLogger(__name__)

EPISODE_TTL = 86_400  # seconds; renewed while the episode lasts
Notify = Callable[[str, Mapping[str, Any]], int]


def flag_key(container: Any, queue: str) -> str:
    return str(container.keyspace.lock(f"notify:long-wait:{queue}"))


def check(container: Any, notify: Notify, clock: Callable[[], float] = time.time) -> list[str]:
    """Compare each queue's oldest waiting message with its threshold; notify the queues whose
    episode starts now and return their names."""
    thresholds = {queue: seconds for queue, seconds in container.settings.long_wait if seconds}
    if not thresholds:
        return []
    flags = container.redis("locks")
    started = []
    for stats in queue_stats(container.redis("broker"), list(thresholds), clock):
        key, limit = flag_key(container, stats.name), thresholds[stats.name]
        age = stats.oldest_waiting
        if age is not None and age >= limit:
            if not flags.set(key, int(clock()), nx=True, ex=EPISODE_TTL):
                flags.expire(key, EPISODE_TTL)  # the same episode: notified already
                continue
            payload = {
                "summary": f"queue {stats.name}: the oldest message has waited {age:.0f} s "
                f"(threshold {limit} s)",
                "queue": stats.name,
                "oldest_waiting_seconds": round(age, 1),
                "threshold_seconds": limit,
                "waiting": stats.waiting,
                "unacked": stats.unacked,
            }
            try:
                notify("queue.long_wait", payload)
            except Exception as exc:  # not queued: the next tick tries again
                flags.delete(key)
                log.warning("queue.long_wait for %s not sent: %s: %s", stats.name,
                            type(exc).__name__, mask_patterns(str(exc)))  # fmt: skip
                continue
            started.append(stats.name)
        elif stats.waiting == 0 or (age is not None and age < limit):
            flags.delete(key)
    return started
