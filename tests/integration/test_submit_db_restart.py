"""The submit API survives a PostgreSQL restart: real PostgreSQL, real Redis, real workers.

A restart (or failover) is simulated by terminating the database's client backends from a
separate connection, between calls or at an exact point inside a submit (see
:mod:`tests.support.pg_restart`). The caller must get a result, never the dead connection's
error, and every request must be posted exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from celery_app.infra.models import Account, Outbox, PaymentRequest
from celery_app.money import posting, settlement, submit
from celery_app.ops.queues import priority_lists
from celery_app.stores.ratelimit import TopUpThrottle, check_top_up
from tests.support.money import MoneyEnv, money_env
from tests.support.pg_restart import Backends, Seam
from tests.support.services import RedisServer, create_pg_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    url, drop = create_pg_database()
    yield url
    drop()


@pytest.fixture
def money(tmp_path: Path, redis_server: RedisServer, pg_url: str) -> Iterator[MoneyEnv]:
    env = money_env(tmp_path, redis_server.url, pg_url)
    yield env
    env.close()


@pytest.fixture
def backends(pg_url: str) -> Iterator[Backends]:
    source = Backends(pg_url)
    yield source
    source.close()


def fund(money: MoneyEnv, wallet: str, amount: int) -> None:
    sent = submit.submit_top_up(money.container, f"seed-{wallet}", wallet, amount, lambda *_: None)
    posting.post_request(money.container, sent.request_id, posting.locks(money.container))


def outbox(money: MoneyEnv, request_id: int) -> tuple[dt.datetime | None, int]:
    with money.container.uow() as uow:
        row = uow.session.scalar(select(Outbox).where(Outbox.request_id == request_id))
        assert row is not None
        return row.enqueued_at, row.attempts


def queued(redis_server: RedisServer) -> int:
    client = redis_server.client()
    return sum(int(client.llen(name)) for name in priority_lists("payments"))


def posted_once(money: MoneyEnv, *request_ids: int) -> None:
    per_request = money.postings_per_request()
    assert {rid: per_request.get(rid) for rid in request_ids} == dict.fromkeys(request_ids, 1)
    assert max(per_request.values()) == 1, "a request was posted twice"
    assert settlement.reconcile(money.container).balanced


def test_pooled_connection_killed_between_calls_is_replaced(
    money: MoneyEnv, backends: Backends
) -> None:
    money.open_wallets(2)
    for wallet in ("wallet:0", "wallet:1"):
        fund(money, wallet, 10_000)
    money.start_worker()
    sent = []
    for n in range(6):
        assert money.container.engine.pool.checkedin() >= 1, "no pooled connection to kill"
        assert backends.terminate(), "no backend was terminated: nothing was tested"
        # The relay has no retry of its own: only the pre-ping replaces its dead connection.
        assert submit.relay(money.container, money.enqueue, older_than=3600) == 0
        assert backends.terminate()  # and again, for the submit's own checkout
        sent.append(
            submit.submit_purchase(
                money.container,
                f"after-restart-{n}",
                f"wallet:{n % 2}",
                "merchant:0",
                300 + n,
                money.enqueue,
            )
        )
    assert [(s.duplicate, s.queued) for s in sent] == [(False, True)] * 6
    assert all(outbox(money, s.request_id)[0] is not None for s in sent), "a stamp was lost"
    money.wait_settled()
    posted_once(money, *(s.request_id for s in sent))


def test_connection_killed_right_after_the_send_changes_nothing(
    money: MoneyEnv, backends: Backends, redis_server: RedisServer
) -> None:
    """The outbox row was stored already stamped: no second transaction after the send."""
    money.open_wallets(1)
    fund(money, "wallet:0", 5000)
    killed: set[int] = set()

    def send_then_restart(task_name: str, request_id: int, wallet: int) -> None:
        money.enqueue(task_name, request_id, wallet=wallet)
        killed.update(backends.terminate())

    sent = submit.submit_purchase(
        money.container, "sent-then-restart", "wallet:0", "merchant:0", 700, send_then_restart
    )
    assert killed, "no backend was terminated: nothing was tested"
    assert (sent.duplicate, sent.queued) == (False, True)
    enqueued_at, attempts = outbox(money, sent.request_id)
    assert enqueued_at is not None and attempts == 1
    assert submit.relay(money.container, money.enqueue, older_than=3600) == 0
    assert queued(redis_server) == 1
    money.start_worker()
    money.wait_settled()
    posted_once(money, sent.request_id)


def test_send_refused_and_stamp_not_cleared_is_relayed_after_the_cutoff(
    money: MoneyEnv, backends: Backends, redis_server: RedisServer
) -> None:
    """The rare path: the broker refuses, then the database dies before the stamp is cleared."""
    money.open_wallets(1)
    fund(money, "wallet:0", 5000)
    seam = Seam(money.container.engine, backends, "checkout")

    def refuse_then_restart(task_name: str, request_id: int, wallet: int) -> None:
        seam.arm()  # the next checkout is the clearing's: its backend dies after the pre-ping
        raise ConnectionError("broker refused")

    sent = submit.submit_purchase(
        money.container, "stamp-kept", "wallet:0", "merchant:0", 700, refuse_then_restart
    )
    seam.remove()
    assert seam.fired, "the seam never fired: nothing was tested"
    assert (sent.duplicate, sent.queued) == (False, False)
    enqueued_at, attempts = outbox(money, sent.request_id)
    assert enqueued_at is not None and attempts == 1, "the stamp was cleared: nothing tested"
    assert queued(redis_server) == 0
    # It reads "sent just now", so only a relay past the cutoff sends it: once, and posted once.
    assert submit.relay(money.container, money.enqueue, older_than=3600) == 0
    assert submit.relay(money.container, money.enqueue, older_than=0) == 1
    assert outbox(money, sent.request_id)[1] == 2
    money.start_worker()
    money.wait_settled()
    posted_once(money, sent.request_id)


@pytest.mark.parametrize("moment", ["checkout", "commit"])
def test_connection_killed_while_storing_is_retried_once_on_a_fresh_one(
    money: MoneyEnv, backends: Backends, moment: str
) -> None:
    """`checkout`: dead before the first statement; `commit`: rows sent, COMMIT not yet."""
    money.open_wallets(1)
    check_top_up("parent-control", money.container)  # one top-up counted, for comparison
    seam = Seam(money.container.engine, backends, moment)
    seam.arm()
    sent = submit.submit_top_up(
        money.container, "store-lost", "wallet:0", 2500, money.enqueue, parent="parent-1"
    )
    seam.remove()
    assert seam.fired, "the seam never fired: nothing was tested"
    assert (sent.duplicate, sent.queued) == (False, True)
    assert money.statuses() == {"pending": 1}
    limiter = TopUpThrottle.from_container(money.container).limiter
    assert limiter.peek("parent-1").remaining == limiter.peek("parent-control").remaining
    money.start_worker()
    money.wait_settled()
    posted_once(money, sent.request_id)


def test_commit_that_landed_but_whose_answer_was_lost_is_found_and_relayed(
    money: MoneyEnv, backends: Backends
) -> None:
    """The retry cannot tell its own lost commit from a twin's: it reports what it finds.

    The request is stored by one autocommit statement; the seam sits just before it is sent,
    where the row of an earlier attempt whose answer was lost is landed and the connection dies.
    """
    money.open_wallets(1)
    fired: list[int] = []

    def land_then_restart(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if fired or "INSERT INTO payment_requests" not in statement:
            return
        fired.extend(backends.terminate())
        assert fired  # this transaction dies unanswered...
        with Session(backends.engine) as other:  # ...and its rows are in, as if COMMIT landed
            ids = dict(other.execute(select(Account.code, Account.id)).all())
            request = PaymentRequest(
                idempotency_key="ack-lost",
                kind="top_up",
                debit_account_id=ids[submit.CLEARING],
                credit_account_id=ids["wallet:0"],
                amount=2500,
                status="pending",
            )
            other.add(request)
            other.flush()
            other.add(Outbox(request_id=request.id, task_name="wallet.top_up", attempts=0))
            other.commit()

    event.listen(money.container.engine, "before_cursor_execute", land_then_restart)
    sent = submit.submit_top_up(money.container, "ack-lost", "wallet:0", 2500, money.enqueue)
    event.remove(money.container.engine, "before_cursor_execute", land_then_restart)
    assert fired, "the seam never fired: nothing was tested"
    assert (sent.duplicate, sent.queued) == (True, False)
    assert money.statuses() == {"pending": 1}
    assert submit.relay(money.container, money.enqueue, older_than=3600) == 1
    money.start_worker()
    money.wait_settled()
    posted_once(money, sent.request_id)
