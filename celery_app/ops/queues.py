"""Facts about the broker's queues (depth, unacked, oldest message) and a guarded purge.

Read straight from kombu's Redis transport layout:

* a queue is a list per priority step (``payments``, ``payments\\x06\\x163``, ...); producers
  LPUSH and workers BRPOP, so the oldest waiting message is at index -1;
* a message a worker holds but has not acknowledged sits in the ``unacked`` hash (delivery tag ->
  ``[message, exchange, routing_key]``) and its delivery time in the ``unacked_index`` zset.

Celery's message carries no send time (headers hold the task id and an optional ``eta``). The age
of a waiting message is known only when the producer stamped a ``sent_at`` header (connect
:func:`stamp_sent_at` to ``before_task_publish``); otherwise it is reported as unknown. The age of
an unacked message is how long ago a worker received it (its ``unacked_index`` score).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel

from celery_app.errors import InvalidRequest, Refused
from celery_app.infra.boundary import redis_errors
from celery_app.infra.keyspace import MONEY_QUEUES, OPS_UNACKED_KEYS, QUEUES
from celery_app.inputs import shown

SEP: str = Channel.sep
UNACKED: str = Channel.unacked_key
UNACKED_INDEX: str = Channel.unacked_index_key
SENT_AT = "sent_at"


def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """`before_task_publish` handler: stamp the send time so queue ages can be measured."""
    if headers is not None:
        headers.setdefault(SENT_AT, time.time())


def known_queue(name: str) -> str:
    """Return `name` if the app declares it, else raise InvalidRequest listing the queues."""
    if name not in QUEUES:
        raise InvalidRequest(f"unknown queue {shown(name)}; expected one of: {', '.join(QUEUES)}")
    return name


def priority_lists(queue: str) -> list[str]:
    """Return the Redis list names kombu uses for `queue`, one per priority step."""
    return [queue if step == 0 else f"{queue}{SEP}{step}" for step in PRIORITY_STEPS]


@dataclass(frozen=True)
class QueueStats:
    """One queue's depth, its unacked messages and the age of the oldest of each (seconds)."""

    name: str
    money: bool
    waiting: int
    unacked: int
    oldest_waiting: float | None  # None: empty, or no message carries a send time
    oldest_unacked: float | None
    waiting_age_known: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sent_at(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(SENT_AT)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _binding_map(client: redis.Redis) -> dict[tuple[str, str], str]:
    """Map (exchange, routing key) to queue from kombu's ``_kombu.binding.*`` sets."""
    found: dict[tuple[str, str], str] = {}
    for key in client.scan_iter(match="_kombu.binding.*", count=1000):
        exchange = _text(key)[len("_kombu.binding.") :]
        for member in client.smembers(key):
            routing_key, _pattern, queue = _text(member).split(SEP, 2)
            found[(exchange, routing_key)] = queue
    return found


def unacked_by_queue(client: redis.Redis, now: float) -> dict[str, tuple[int, float | None]]:
    """Return queue -> (unacked count, seconds since the oldest was delivered), from the
    workers' ``unacked`` hash and the ops runners' own."""
    bindings = _binding_map(client)
    result: dict[str, tuple[int, float | None]] = {}
    tags: list[tuple[str, str, bytes]] = []  # (queue, its index zset, delivery tag)
    ops_hash, ops_index, _mutex = OPS_UNACKED_KEYS
    for hash_key, index_key in ((UNACKED, UNACKED_INDEX), (ops_hash, ops_index)):
        for tag, raw in client.hscan_iter(hash_key, count=1000):
            try:
                _message, exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            tags.append((bindings.get((exchange, routing_key), routing_key), index_key, tag))
    scores: list[float | None] = []
    for start in range(0, len(tags), 1000):
        pipe = client.pipeline(transaction=False)
        for _queue, index_key, tag in tags[start : start + 1000]:
            pipe.zscore(index_key, tag)
        scores.extend(pipe.execute())
    for (queue, _index, _tag), score in zip(tags, scores, strict=True):
        count, oldest = result.get(queue, (0, None))
        age = None if score is None else max(0.0, now - float(score))
        if age is not None and (oldest is None or age > oldest):
            oldest = age
        result[queue] = (count + 1, oldest)
    return result


def queue_stats(
    client: redis.Redis,
    queues: Iterable[str] = QUEUES,
    clock: Callable[[], float] = time.time,
) -> list[QueueStats]:
    """Return depth, unacked count and oldest ages for each queue on the broker `client`."""
    names = [known_queue(q) for q in queues]
    now = clock()
    with redis_errors("broker"):
        pipe = client.pipeline(transaction=False)
        for name in names:
            for key in priority_lists(name):
                pipe.llen(key)
                pipe.lindex(key, -1)
        replies = pipe.execute()
        unacked = unacked_by_queue(client, now)
    stats = []
    per_queue = 2 * len(PRIORITY_STEPS)
    for i, name in enumerate(names):
        chunk = replies[i * per_queue : (i + 1) * per_queue]
        waiting = sum(int(n) for n in chunk[0::2])
        sent = [_sent_at(raw) for raw in chunk[1::2] if raw is not None]
        known = [now - s for s in sent if s is not None]
        count, oldest_unacked = unacked.get(name, (0, None))
        stats.append(
            QueueStats(
                name=name,
                money=name in MONEY_QUEUES,
                waiting=waiting,
                unacked=count,
                oldest_waiting=max(known) if known else None,
                oldest_unacked=oldest_unacked,
                waiting_age_known=waiting == 0 or len(known) == len(sent) > 0,
            )
        )
    return stats


def check_purge(queue: str, *, force: bool = False) -> str:
    """Return `queue` if it may be purged; refuse an unknown queue, or a money one without force."""
    name = known_queue(queue)
    if name in MONEY_QUEUES and not force:
        raise Refused(
            f"{name!r} is a money queue: its messages are payments; purge it only with --force"
        )
    return name


def purge(client: redis.Redis, queue: str, *, force: bool = False) -> int:
    """Delete every waiting message of `queue`; return how many. Unacked messages stay.

    A money queue is refused without `force`: its messages are payments someone is waiting for
    (the outbox relay would re-enqueue them, but only after its delay).
    """
    keys = priority_lists(check_purge(queue, force=force))
    with redis_errors("broker"):
        pipe = client.pipeline(transaction=True)
        for key in keys:
            pipe.llen(key)
        pipe.delete(*keys)
        replies = pipe.execute()
    return sum(int(n) for n in replies[: len(keys)])
