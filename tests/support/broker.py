"""Fill a real redis-server the way production does: Celery messages, unacked ones, other roles.

Messages are sent by a real Celery producer and taken (not acknowledged) by a real kombu
consumer, so the queue lists, ``_kombu.binding.*`` sets and the ``unacked``/``unacked_index``
entries are exactly what kombu writes.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery
from kombu import Connection

from celery_app.infra.keyspace import Keyspace


def producer(url: str) -> Celery:
    """A Celery app on `url` configured like the project's (JSON only, routed queues)."""
    app = Celery("maqsafy-test", broker=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_create_missing_queues=True,
        task_default_queue="maintenance",
        broker_connection_retry_on_startup=False,
        broker_transport_options={"max_retries": 0},  # a dead broker fails at once in tests
    )
    return app


def send(app: Celery, name: str, args: list[Any], queue: str, **options: Any) -> None:
    app.send_task(name, args=args, queue=queue, **options)


def hold_unacked(url: str, queue: str, count: int) -> Connection:
    """Take `count` messages from `queue` without acknowledging them; keep the connection open.

    Closing the returned connection would give the messages back (kombu restores unacked
    messages on close), so the caller closes it only once it has looked.
    """
    conn = Connection(url)
    simple = conn.SimpleQueue(queue)
    for _ in range(count):
        simple.get(timeout=5)
    return conn


def seed_other_roles(client: redis.Redis, keyspace: Keyspace) -> None:
    """Write session, rate-limit, lock and fence keys, plus a key no role owns."""
    for n in range(20):
        client.hset(keyspace.session(f"s{n}"), mapping={"user": n, "csrf": f"t{n}"})
        client.expire(keyspace.session(f"s{n}"), 7200)
        client.zadd(keyspace.ratelimit(f"login:{n}"), {f"hit{n}": n})
        client.set(keyspace.lock(f"account:{n}"), f"owner:{n}", px=600_000)
    client.set(keyspace.fence_counter, 123456)
    client.set("someone-else:key", "untouched")


def dump_all(client: redis.Redis) -> dict[bytes, bytes | None]:
    """Return every key's DUMP (value, type and encoding)."""
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}
