"""Exactly once, whatever fails: real workers, real Redis, SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest

from celery_app.money import posting, submit
from tests.support.money import MoneyEnv, assert_exactly_once, fund
from tests.support.services import RedisServer, wait_for


def submit_purchases(money: MoneyEnv, count: int, wallets: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for n in range(count):
        submit.submit_purchase(
            money.container,
            f"buy-{n}",
            f"wallet:{rng.randrange(wallets)}",
            "merchant:0",
            rng.randrange(100, 900),
            money.enqueue,
        )


def part_posted(money: MoneyEnv) -> Callable[[], bool]:
    return lambda: money.statuses().get("posted", 0) >= 20 + 30


def test_same_key_twice_posts_once_and_conflicting_reuse_is_refused(money: MoneyEnv) -> None:
    money.open_wallets(1)
    money.start_worker()
    first = submit.submit_top_up(money.container, "topup-1", "wallet:0", 5000, money.enqueue)
    again = submit.submit_top_up(money.container, "topup-1", "wallet:0", 5000, money.enqueue)
    assert again.duplicate and again.request_id == first.request_id and not again.queued
    with pytest.raises(Exception, match="already used for a different request"):
        submit.submit_top_up(money.container, "topup-1", "wallet:0", 9999, money.enqueue)
    money.wait_settled()
    assert money.postings_per_request() == {first.request_id: 1}
    assert_exactly_once(money, requests=1)


def test_same_task_delivered_many_times_concurrently_posts_once(money: MoneyEnv) -> None:
    money.open_wallets(1)
    fund(money, 1, 10_000)
    sent = submit.submit_purchase(
        money.container, "p-dup", "wallet:0", "merchant:0", 700, lambda *_: None
    )
    money.start_worker(concurrency=2)
    for _ in range(20):  # twenty deliveries of the same message
        money.enqueue("purchase.post", sent.request_id)
    # and four threads posting it directly, racing the worker's two processes
    locks = posting.locks(money.container)
    outcomes: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: outcomes.append(
                posting.post_request(money.container, sent.request_id, locks).result
            )
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    money.wait_settled()
    wait_for(lambda: "w1@test" in money.workers[0].log_text(), 5, "worker log")
    assert money.postings_per_request()[sent.request_id] == 1
    assert money.entry_count() == 4  # the seed top-up's two entries + the purchase's two
    assert outcomes.count("posted") <= 1
    assert_exactly_once(money, requests=2)


def test_worker_killed_mid_batch_then_restarted_posts_each_request_once(money: MoneyEnv) -> None:
    money.open_wallets(20)
    fund(money, 20, 50_000)
    submit_purchases(money, 300, wallets=20)
    worker = money.start_worker("w1@test")
    # Polled often: a worker posting in batches of 32 can post the rest within one poll.
    wait_for(part_posted(money), 60, "part of the batch", every=0.005)
    worker.kill()  # SIGKILL to the main process and its pool children
    assert money.pending() > 0, "the batch finished before the kill; nothing was tested"
    money.start_worker("w2@test")
    money.wait_settled(relay=True)
    assert_exactly_once(money, requests=320)


def test_redis_flushed_mid_batch_loses_no_payment(
    money: MoneyEnv, redis_server: RedisServer
) -> None:
    money.open_wallets(20)
    fund(money, 20, 50_000)
    submit_purchases(money, 300, wallets=20)
    money.start_worker()
    # Polled often: a worker posting in batches of 32 can post the rest within one poll.
    wait_for(part_posted(money), 60, "part of the batch", every=0.005)
    redis_server.client().flushall()  # queued messages, locks and the fence counter are gone
    assert money.pending() > 0, "the batch finished before the flush; nothing was tested"
    money.wait_settled(relay=True)
    assert_exactly_once(money, requests=320)


def test_insufficient_funds_is_a_recorded_outcome_not_a_failure(money: MoneyEnv) -> None:
    money.open_wallets(1)
    fund(money, 1, 1000)
    money.start_worker()
    ok = submit.submit_purchase(money.container, "b1", "wallet:0", "merchant:0", 600, money.enqueue)
    money.wait_settled()
    short = submit.submit_purchase(
        money.container, "b2", "wallet:0", "merchant:0", 600, money.enqueue
    )
    money.wait_settled()
    outcome = posting.post_request(
        money.container, short.request_id, posting.locks(money.container)
    )
    assert outcome.result == "duplicate" and outcome.status == "rejected"
    assert outcome.reason == "insufficient funds: short by 200 halalas"
    assert money.postings_per_request().keys() == {1, ok.request_id}
    assert_exactly_once(money, requests=3)
