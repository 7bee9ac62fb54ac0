"""Fenced locks: a stalled holder cannot commit, and tokens survive Redis losing its data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from celery_app.infra.models import Account, PaymentRequest
from celery_app.money import posting, submit
from celery_app.money.locks import FencedLocks
from tests.support.money import MoneyEnv, money_env
from tests.support.services import RedisServer, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def money(tmp_path: Path, redis_server: RedisServer, database_url: str) -> Iterator[MoneyEnv]:
    env = money_env(tmp_path, redis_server.url, database_url, MAQSAFY_LOCK_TTL_MS="300")
    yield env
    env.close()


def test_holder_stopped_past_expiry_cannot_commit(
    money: MoneyEnv, redis_server: RedisServer
) -> None:
    money.open_wallets(1)
    locks = posting.locks(money.container)
    noop = lambda *_: None  # noqa: E731 - no worker in this test; posting is driven by hand
    top = submit.submit_top_up(money.container, "seed", "wallet:0", 1000, noop)
    posting.post_request(money.container, top.request_id, locks)
    stalled = submit.submit_purchase(money.container, "a", "wallet:0", "merchant:0", 600, noop)
    other = submit.submit_purchase(money.container, "b", "wallet:0", "merchant:0", 600, noop)

    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stalled_holder", str(stalled.request_id)],
        env={**os.environ, **money.env},
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        line = holder.stdout.readline()
        assert line.startswith("LOCKED "), line
        stalled_token = int(line.split()[1])
        os.kill(holder.pid, signal.SIGSTOP)
        _, _, wallet_id = posting.peek(money.container, stalled.request_id)
        lock_key = money.container.keyspace.lock(f"account:{wallet_id}")
        wait_for(lambda: not redis_server.client().exists(lock_key), 10, "the lock to expire")

        outcome = posting.post_request(money.container, other.request_id, locks)
        assert outcome.result == "posted"

        os.kill(holder.pid, signal.SIGCONT)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        verdict = holder.stdout.readline()
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
    assert verdict.startswith("REFUSED fencing token"), verdict
    with money.container.uow() as uow:
        wallet = uow.session.scalars(select(Account).where(Account.code == "wallet:0")).one()
        assert wallet.balance == 400  # 1000 - one purchase of 600, never two
        assert wallet.fence > stalled_token
        assert uow.session.get(PaymentRequest, stalled.request_id).status == "pending"
    # Delivered again later, the stalled request is judged on today's balance: rejected.
    again = posting.post_request(money.container, stalled.request_id, locks)
    assert again.result == "rejected"


def test_tokens_stay_monotonic_when_redis_loses_its_data(redis_server: RedisServer) -> None:
    client = redis_server.client()
    floor = {"value": 0}
    locks = FencedLocks(client, lambda r: f"t:lock:{r}", "t:fence", lambda: floor["value"], 1000)
    first = locks.acquire("a")
    locks.release(first)
    second = locks.acquire("a")
    assert second.token > first.token
    client.flushall()
    third = locks.acquire("a")
    assert third.token > second.token
    # SQL has seen a token from the future (a clock that was ahead): the seed honours it.
    client.flushall()
    floor["value"] = third.token + 10**12
    fourth = locks.acquire("b")
    assert fourth.token > floor["value"]


def test_a_held_lock_is_not_granted_twice_and_only_its_owner_releases(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    locks = FencedLocks(client, lambda r: f"t:lock:{r}", "t:fence", lambda: 0, 5000)
    held = locks.acquire("a")
    assert locks.try_acquire("a") is None
    impostor = type(held)(key=held.key, token=held.token, value="not-the-owner")
    assert locks.release(impostor) is False
    assert locks.try_acquire("a") is None
    assert locks.release(held) is True
    assert locks.try_acquire("a") is not None
