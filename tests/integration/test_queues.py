"""Queue facts and purge against messages a real Celery producer and kombu consumer wrote."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from celery.signals import before_task_publish

from celery_app.errors import InvalidRequest, Refused
from celery_app.ops import queues
from tests.support.broker import dump_all, hold_unacked, producer, send
from tests.support.services import RedisServer


@pytest.fixture
def stamped() -> Iterator[None]:
    before_task_publish.connect(queues.stamp_sent_at)
    yield
    before_task_publish.disconnect(queues.stamp_sent_at)


@pytest.fixture
def unstamped() -> Iterator[None]:
    """A producer that is not this project's (the app's module stamps every message it sends)."""
    connected = before_task_publish.disconnect(queues.stamp_sent_at)
    yield
    if connected:
        before_task_publish.connect(queues.stamp_sent_at, weak=False)


def by_name(stats: list[queues.QueueStats]) -> dict[str, queues.QueueStats]:
    return {s.name: s for s in stats}


def test_depth_unacked_and_ages_from_real_messages(
    redis_server: RedisServer, unstamped: None
) -> None:
    client = redis_server.client()
    app = producer(redis_server.url)
    for n in range(4):
        send(app, "purchase.post", [n], "payments")
    send(app, "purchase.post", [99], "payments", priority=9)
    send(app, "maintenance.memory", [], "maintenance")
    consumer = hold_unacked(redis_server.url, "payments", 1)
    try:
        stats = by_name(queues.queue_stats(client, clock=lambda: time.time() + 60))
    finally:
        consumer.release()

    pay = stats["payments"]
    assert (pay.waiting, pay.unacked, pay.money) == (4, 1, True)
    assert pay.oldest_unacked is not None and pay.oldest_unacked >= 60
    assert not pay.waiting_age_known and pay.oldest_waiting is None  # Celery sends no timestamp
    assert (stats["maintenance"].waiting, stats["maintenance"].unacked) == (1, 0)
    assert (stats["ops"].waiting, stats["ops"].waiting_age_known) == (0, True)


def test_sent_at_stamp_gives_waiting_age(redis_server: RedisServer, stamped: None) -> None:
    app = producer(redis_server.url)
    send(app, "runbook.run", ["diagnose"], "ops")
    send(app, "runbook.run", ["later"], "ops", priority=3)

    ops = by_name(queues.queue_stats(redis_server.client(), clock=lambda: time.time() + 120))["ops"]

    assert ops.waiting == 2 and ops.waiting_age_known
    assert ops.oldest_waiting is not None and 120 <= ops.oldest_waiting < 3600


def test_purge_deletes_waiting_keeps_unacked_and_refuses_money(redis_server: RedisServer) -> None:
    client = redis_server.client()
    app = producer(redis_server.url)
    for n in range(3):
        send(app, "runbook.run", [n], "ops", priority=n * 3)
        send(app, "purchase.post", [n], "payments")
    consumer = hold_unacked(redis_server.url, "ops", 1)
    try:
        before = dump_all(client)
        with pytest.raises(Refused, match="money queue"):
            queues.purge(client, "payments")
        with pytest.raises(InvalidRequest, match="unknown queue"):
            queues.purge(client, "nope", force=True)
        assert dump_all(client) == before

        assert queues.purge(client, "ops") == 2
        assert client.hlen("unacked") == 1
        assert queues.purge(client, "payments", force=True) == 3
        stats = by_name(queues.queue_stats(client))
        assert stats["ops"].unacked == 1 and stats["ops"].waiting == 0
        assert stats["payments"].waiting == 0
    finally:
        consumer.release()


def test_unknown_queue_in_stats_is_an_error(redis_server: RedisServer) -> None:
    with pytest.raises(InvalidRequest, match="expected one of: payments, maintenance, ops"):
        queues.queue_stats(redis_server.client(), ["payments", "nope"])
