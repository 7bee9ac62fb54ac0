"""Batched posting: each request of a batch under its own checks, exactly once whatever fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, update

from celery_app.infra.models import Account, PaymentRequest
from celery_app.money import posting, posting_sql, settlement, submit
from tests.support.money import MoneyEnv, assert_exactly_once, fund, money_env, submit_while_held
from tests.support.services import RedisServer, wait_for

ROOT = Path(__file__).resolve().parents[2]
NOOP = lambda *_, **__: None  # noqa: E731 - requests stored, their messages not sent


@pytest.fixture
def money(tmp_path: Path, redis_server: RedisServer, database_url: str) -> Iterator[MoneyEnv]:
    # Short locks: a killed batch poster's locks expire in half a second.
    env = money_env(tmp_path, redis_server.url, database_url, MAQSAFY_LOCK_TTL_MS="500")
    yield env
    env.close()


def purchases(money: MoneyEnv, amounts: list[int]) -> list[int]:
    """Store one purchase per wallet (wallet:i pays amounts[i]); send no message."""
    return [
        submit.submit_purchase(
            money.container, f"buy-{i}", f"wallet:{i}", "merchant:0", amount, NOOP
        ).request_id
        for i, amount in enumerate(amounts)
    ]


def status_of(money: MoneyEnv) -> dict[int, tuple[str, str | None]]:
    with money.container.uow() as uow:
        rows = uow.session.execute(
            select(PaymentRequest.id, PaymentRequest.status, PaymentRequest.reason)
        ).all()
    return {r.id: (r.status, r.reason) for r in rows}


def balances(money: MoneyEnv) -> dict[str, int]:
    with money.container.uow() as uow:
        rows = uow.session.execute(select(Account.code, Account.balance)).all()
    return {code: balance for code, balance in rows}


def test_a_short_request_in_a_batch_is_rejected_and_the_others_post(money: MoneyEnv) -> None:
    money.open_wallets(4)
    fund(money, 4, 1000)
    ids = purchases(money, [500, 400, 1500, 300])  # wallet:2 is 500 short
    outcome = posting.post_request(money.container, ids[0], posting.locks(money.container))
    assert (outcome.result, outcome.batched) == ("posted", 3)
    seen = status_of(money)
    assert [seen[r] for r in ids] == [
        ("posted", None),
        ("posted", None),
        ("rejected", "insufficient funds: short by 500 halalas"),
        ("posted", None),
    ]
    posted = money.postings_per_request()
    assert [posted.get(r, 0) for r in ids] == [1, 1, 0, 1]
    assert money.entry_count() == 2 * (4 + 3)  # the seed top-ups' and the three purchases'
    money_now = balances(money)
    assert [money_now[f"wallet:{i}"] for i in range(4)] == [500, 600, 1000, 700]
    assert money_now["merchant:0"] == 1200
    assert settlement.reconcile(money.container).balanced


def test_a_fenced_out_request_in_a_batch_stays_pending_and_the_others_post(
    money: MoneyEnv,
) -> None:
    money.open_wallets(3)
    fund(money, 3, 1000)
    ids = purchases(money, [100, 200, 300])
    wallets = [posting.peek(money.container, r)[2] for r in ids]
    locks = posting.locks(money.container)
    grant = locks.acquire(
        f"account:{wallets[0]}", also=(f"account:{wallets[1]}", f"account:{wallets[2]}")
    )
    assert len(grant.also) == 2
    # This holder stalled past wallet:1's lock expiry, and a later holder committed there.
    later = locks.acquire("account:elsewhere")
    locks.release(later)
    with money.container.engine.begin() as conn:
        conn.execute(update(Account).where(Account.id == wallets[1]).values(fence=later.token))
    verdicts = posting.commit_batch(money.container, list(zip(ids, wallets, strict=True)), grant)
    locks.release(grant)
    assert [verdicts[r].result for r in ids] == ["posted", "stale", "posted"]
    assert [status_of(money)[r][0] for r in ids] == ["posted", "pending", "posted"]
    # Its own message, delivered later, posts it under a newer grant.
    assert posting.post_request(money.container, ids[1], locks).result == "posted"
    assert [money.postings_per_request()[r] for r in ids] == [1, 1, 1]
    assert [balances(money)[f"wallet:{i}"] for i in range(3)] == [900, 800, 700]
    assert_exactly_once(money, requests=6)


def test_messages_of_batched_requests_delivered_later_post_nothing(money: MoneyEnv) -> None:
    money.open_wallets(4)
    fund(money, 4, 1000)
    ids = purchases(money, [500, 400, 1500, 300])
    posting.post_request(money.container, ids[0], posting.locks(money.container))
    before = (money.postings_per_request(), money.entry_count(), balances(money))
    worker = money.start_worker()
    for request_id in ids * 2:  # every batched request's message, delivered twice
        money.enqueue("purchase.post", request_id)
    wait_for(
        lambda: worker.log_text().count("'result': 'duplicate'") == 2 * len(ids),
        60,
        "the worker to end every delivery as a duplicate",
    )
    assert (money.postings_per_request(), money.entry_count(), balances(money)) == before
    assert_exactly_once(money, requests=8)


def test_batch_killed_before_its_commit_posts_nothing_then_each_posts_once(
    money: MoneyEnv,
) -> None:
    money.open_wallets(4)
    fund(money, 4, 1000)
    ids = purchases(money, [100, 200, 300, 400])
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stalled_batch", *map(str, ids)],
        env={**os.environ, **money.env},
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.split() == ["WRITTEN", "posted", "posted", "posted", "posted"], line
        os.kill(holder.pid, signal.SIGKILL)  # mid-batch: every write done, no COMMIT
        holder.wait(30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert [status_of(money)[r][0] for r in ids] == ["pending"] * 4
    assert money.entry_count() == 2 * 4  # the seed top-ups' only
    money.start_worker()
    for request_id in ids * 2:
        money.enqueue("purchase.post", request_id)
    money.wait_settled()
    assert [balances(money)[f"wallet:{i}"] for i in range(4)] == [900, 800, 700, 600]
    assert_exactly_once(money, requests=8)


def test_batches_of_one_post_each_message_alone_and_once(
    tmp_path: Path, redis_server: RedisServer, database_url: str
) -> None:
    money = money_env(tmp_path, redis_server.url, database_url, MAQSAFY_POST_BATCH="1")
    try:
        money.open_wallets(3)
        fund(money, 3, 1000)
        ids = purchases(money, [100, 200, 1500])
        wallets = [posting.peek(money.container, r)[2] for r in ids]
        locks = posting.locks(money.container)
        pairs = list(zip(ids, wallets, strict=True))
        first = [posting.post_request(money.container, r, locks, w) for r, w in pairs]
        again = [posting.post_request(money.container, r, locks, w) for r, w in pairs]
        assert [(o.result, o.batched) for o in first] == [
            ("posted", 0),
            ("posted", 0),
            ("rejected", 0),
        ]
        assert [(o.result, o.status) for o in again] == [
            ("duplicate", "posted"),
            ("duplicate", "posted"),
            ("duplicate", "rejected"),
        ]
        assert_exactly_once(money, requests=6)
    finally:
        money.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_submit_does_not_wait_for_a_batch_holding_its_accounts(money: MoneyEnv) -> None:
    money.open_wallets(2)
    tops = [
        submit.submit_top_up(money.container, f"t{i}", f"wallet:{i}", 5_000, NOOP).request_id
        for i in range(2)
    ]
    wanted = [(r, posting.peek(money.container, r)[2]) for r in tops]

    def post(conn: Connection) -> None:  # the batch statement, left uncommitted
        verdicts = posting_sql.post_batch_pg(conn, wanted, token=1)
        assert [verdicts[r].result for r in tops] == ["posted", "posted"]

    assert not submit_while_held(money, post, "wallet:1"), "the submit waited for the batch"
    assert money.statuses() == {"posted": 2, "pending": 1}
