"""Queue samples: each queue's waiting, unacked and oldest ages, one sample a minute, kept a day.

The console's queue chart reads them (:mod:`runbooks.console.chart`); the console's background
sampler writes them (:mod:`runbooks.console.wiring`, see docs/architecture.md for why the
console and not beat). They live on the broker's Redis, next to the queues they describe, in one
sorted set (:attr:`Keyspace.queue_samples`) scored by the sample's minute (epoch seconds) whose
members are JSON::

    {"at": 1764640800, "queues": {"payments": [waiting, unacked, oldest_waiting, oldest_unacked]}}

Writing is one MULTI/EXEC: the minute's sample replaces any other of that minute (two consoles
sampling the same broker write one sample a minute between them), and everything older than
`keep` seconds, or beyond `KEEP_SAMPLES` members, is trimmed in the same transaction. So the key
never holds more than a day at one a minute (about 150 kB for three queues) however long it runs.
Samples are derived data: losing them (a Redis without persistence) loses the chart's history,
never a message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from celery_app.infra.boundary import redis_errors
from celery_app.infra.keyspace import Keyspace
from celery_app.ops.queues import QueueStats, queue_stats

STEP = 60  # seconds: one sample a minute
KEEP = 24 * 3600  # seconds of samples kept
KEEP_SAMPLES = KEEP // STEP
FIELDS = ("waiting", "unacked", "oldest_waiting", "oldest_unacked")


@dataclass(frozen=True)
class Sample:
    """The queues as they stood at minute `at` (epoch seconds): queue -> one value per FIELDS
    (ages in seconds, None where unknown or empty)."""

    at: int
    queues: dict[str, tuple[float | None, ...]]

    def value(self, queue: str, name: str) -> float | None:
        row = self.queues.get(queue)
        return None if row is None else row[FIELDS.index(name)]


def minute(now: float) -> int:
    return int(now // STEP * STEP)


def as_member(at: int, stats: Sequence[QueueStats]) -> str:
    def age(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    queues = {
        s.name: [s.waiting, s.unacked, age(s.oldest_waiting), age(s.oldest_unacked)] for s in stats
    }
    return json.dumps({"at": at, "queues": queues}, separators=(",", ":"))


def write(
    client: redis.Redis,
    keyspace: Keyspace,
    stats: Sequence[QueueStats],
    now: float,
    keep: int = KEEP,
    keep_samples: int = KEEP_SAMPLES,
) -> int:
    """Store `stats` as the sample of `now`'s minute and trim to `keep` seconds and
    `keep_samples` members; return the sample's minute."""
    at = minute(now)
    key = keyspace.queue_samples
    with redis_errors("queue samples"):
        pipe = client.pipeline(transaction=True)
        pipe.zremrangebyscore(key, at, at)
        pipe.zadd(key, {as_member(at, stats): at})
        pipe.zremrangebyscore(key, "-inf", f"({at - keep}")
        pipe.zremrangebyrank(key, 0, -keep_samples - 1)
        pipe.execute()
    return at


def sample(client: redis.Redis, keyspace: Keyspace, clock: Callable[[], float] = time.time) -> int:
    """Read every queue's numbers from the broker `client` and store them as this minute's
    sample there; return its minute."""
    now = clock()
    return write(client, keyspace, queue_stats(client, clock=lambda: now), now)


def newest(client: redis.Redis, keyspace: Keyspace) -> tuple[int, bytes | None]:
    """How many samples there are and the newest one as stored: they change with every write."""
    with redis_errors("queue samples"):
        pipe = client.pipeline(transaction=False)
        pipe.zcard(keyspace.queue_samples)
        pipe.zrange(keyspace.queue_samples, -1, -1)
        count, last = pipe.execute()
    return int(count), (last[0] if last else None)


def read(client: redis.Redis, keyspace: Keyspace, since: float) -> list[Sample]:
    """The samples taken at or after `since` (epoch seconds), oldest first."""
    with redis_errors("queue samples"):
        raw = cast("list[bytes]", client.zrangebyscore(keyspace.queue_samples, since, "+inf"))
    try:  # one parse for the lot (a day is 1,440 members), one by one only if that fails
        return [as_sample(data) for data in json.loads(b"[" + b",".join(raw) + b"]")]
    except (ValueError, TypeError, KeyError, AttributeError):
        return [found for found in map(parsed, raw) if found is not None]


def as_sample(data: Any) -> Sample:
    return Sample(int(data["at"]), {str(q): tuple(row) for q, row in data["queues"].items()})


def parsed(member: bytes) -> Sample | None:
    """One member as a Sample; None for one that is not a sample (a hand-made member)."""
    try:
        return as_sample(json.loads(member))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
