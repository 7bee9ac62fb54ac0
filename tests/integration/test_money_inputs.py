"""Bad input writes nothing; failures become records; any sequence keeps the books balanced."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from celery_app.errors import InvalidRequest
from celery_app.infra.models import Account, FailedTask, Outbox, PaymentRequest
from celery_app.money import posting, settlement, submit
from tests.support.money import MoneyEnv, money_env
from tests.support.services import RedisServer, wait_for


@pytest.fixture
def money(tmp_path: Path, redis_server: RedisServer, database_url: str) -> Iterator[MoneyEnv]:
    env = money_env(tmp_path, redis_server.url, database_url)
    env.open_wallets(2)
    yield env
    env.close()


def counts(money: MoneyEnv) -> tuple[int, int]:
    with money.container.uow() as uow:
        requests = uow.session.scalar(select(func.count()).select_from(PaymentRequest))
        outbox = uow.session.scalar(select(func.count()).select_from(Outbox))
    return int(requests or 0), int(outbox or 0)


@pytest.mark.parametrize(
    ("key", "wallet", "merchant", "amount", "message"),
    [
        ("k1", "wallet:0", "merchant:0", 12.5, "not a float"),
        ("k1", "wallet:0", "merchant:0", float("nan"), "NaN"),
        ("k1", "wallet:0", "merchant:0", -100, "positive"),
        ("k1", "wallet:0", "merchant:0", 0, "positive"),
        ("k1", "wallet:0", "merchant:0", 10**15, "exceeds the limit"),
        ("k1", "wallet:0", "merchant:0", "ten", "whole number"),
        ("k1", "wallet:404", "merchant:0", 100, "no wallet account 'wallet:404'"),
        ("k1", "wallet:0", "merchant:404", 100, "no merchant account 'merchant:404'"),
        ("k1", "merchant:0", "wallet:0", 100, "no wallet account 'merchant:0'"),
        ("bad key!", "wallet:0", "merchant:0", 100, "idempotency key"),
        ("", "wallet:0", "merchant:0", 100, "idempotency key"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    money: MoneyEnv, key: str, wallet: str, merchant: str, amount: object, message: str
) -> None:
    before = counts(money)
    with pytest.raises(InvalidRequest, match=message):
        submit.submit_purchase(money.container, key, wallet, merchant, amount, money.enqueue)
    assert counts(money) == before


def test_a_task_that_finally_fails_lands_in_failed_tasks(money: MoneyEnv) -> None:
    money.start_worker()
    money.enqueue("purchase.post", 999_999)

    def recorded() -> bool:
        with money.container.uow() as uow:
            return bool(uow.session.scalar(select(func.count()).select_from(FailedTask)))

    wait_for(recorded, 30, "a failed_tasks row")
    with money.container.uow() as uow:
        row = uow.session.scalars(select(FailedTask)).one()
    assert row.task_name == "purchase.post"
    assert row.queue == "payments"
    assert json.loads(row.args) == [999_999]
    assert row.exception == "InvalidRequest: no payment request with id 999999"
    assert "Traceback" in row.traceback and row.task_id


def test_broker_down_at_submit_keeps_the_request_for_the_relay(money: MoneyEnv) -> None:
    def broker_down(task: str, request_id: int, wallet: int) -> None:
        raise ConnectionError("redis is down")

    sent = submit.submit_top_up(money.container, "t-down", "wallet:0", 500, broker_down)
    assert not sent.queued
    assert money.statuses() == {"pending": 1}
    seen: list[tuple[str, int, int]] = []

    def record(task: str, request_id: int, wallet: int) -> None:
        seen.append((task, request_id, wallet))

    # The failed send took its stamp back: the next relay run sends it, whatever its age cutoff.
    assert submit.relay(money.container, record, older_than=3600) == 1
    _, _, wallet = posting.peek(money.container, sent.request_id)
    assert seen == [("wallet.top_up", sent.request_id, wallet)]


_dates = itertools.count()
ops = st.lists(
    st.one_of(
        st.tuples(st.just("top_up"), st.integers(0, 1), st.integers(1, 5_000)),
        st.tuples(st.just("purchase"), st.integers(0, 1), st.integers(1, 5_000)),
        st.tuples(st.just("settle"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=ops)
def test_any_sequence_leaves_balances_equal_to_entries_and_no_wallet_negative(
    money: MoneyEnv, sequence: list[tuple[str, int, int]]
) -> None:
    locks = posting.locks(money.container)
    noop = lambda *_: None  # noqa: E731 - posting is driven directly, in order
    for kind, wallet, amount in sequence:
        key = f"h{next(_dates)}"
        if kind == "settle":
            day = dt.date(2000, 1, 1) + dt.timedelta(days=next(_dates))
            settlement.run_daily(money.container, day)
            continue
        if kind == "top_up":
            sent = submit.submit_top_up(money.container, key, f"wallet:{wallet}", amount, noop)
        else:
            sent = submit.submit_purchase(
                money.container, key, f"wallet:{wallet}", "merchant:0", amount, noop
            )
        posting.post_request(money.container, sent.request_id, locks)
    result = settlement.reconcile(money.container)
    assert result.balanced, result.discrepancies
    with money.container.uow() as uow:
        lowest = uow.session.scalar(
            select(func.min(Account.balance)).where(Account.kind.in_(["wallet", "merchant"]))
        )
    assert lowest is not None and lowest >= 0


def test_unit_of_work_rolls_back_unless_committed(money: MoneyEnv) -> None:
    with money.container.uow() as uow:
        uow.session.add(Account(code="wallet:ghost", kind="wallet", name="", balance=0, fence=0))
        uow.session.flush()
    with money.container.uow() as uow:
        found = uow.session.scalar(select(Account).where(Account.code == "wallet:ghost"))
    assert found is None


def test_top_ups_are_throttled_per_parent_and_a_repeated_key_counts_nothing(
    money: MoneyEnv,
) -> None:
    from celery_app.errors import RateLimited

    noop = lambda *_: None  # noqa: E731 - only submission is under test
    for n in range(10):
        submit.submit_top_up(money.container, f"tp-{n}", "wallet:0", 100, noop, parent="p-1")
    again = submit.submit_top_up(money.container, "tp-3", "wallet:0", 100, noop, parent="p-1")
    assert again.duplicate
    before = counts(money)
    with pytest.raises(RateLimited, match="too many top-ups for parent p-1"):
        submit.submit_top_up(money.container, "tp-10", "wallet:0", 100, noop, parent="p-1")
    assert counts(money) == before
    other = submit.submit_top_up(money.container, "tp-x", "wallet:1", 100, noop, parent="p-2")
    assert not other.duplicate
