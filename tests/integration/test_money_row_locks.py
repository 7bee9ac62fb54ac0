"""A posting in progress never stops parents and students submitting on the same accounts.

On PostgreSQL a submit's INSERT checks its foreign keys with ``FOR KEY SHARE`` on the wallet,
then the merchant. A posting that held those accounts ``FOR UPDATE`` blocked it, and a posting
holding one account while waiting for the other deadlocked with it (PostgreSQL aborted the
submit: seen under the operator's day load). Postings lock ``FOR NO KEY UPDATE``, which a
foreign-key check does not wait for.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine

from celery_app.money import posting, posting_sql, submit
from tests.support.money import MoneyEnv


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_submit_does_not_wait_for_a_posting_holding_its_accounts(money: MoneyEnv) -> None:
    money.open_wallets(1)
    first = submit.submit_top_up(money.container, "t", "wallet:0", 5_000, lambda *_: None)
    holder = create_engine(money.env["DATABASE_URL"])
    try:
        with holder.connect() as conn:
            # The posting statement itself, left uncommitted: its row locks stay held.
            tx = conn.begin()
            _, _, wallet = posting.peek(money.container, first.request_id)
            verdict = posting_sql.post_pg(conn, first.request_id, wallet, token=1)
            assert verdict.result == "posted"
            done: list[int] = []

            def shop() -> None:
                sent = submit.submit_purchase(
                    money.container, "p", "wallet:0", "merchant:0", 700, lambda *_: None
                )
                done.append(sent.request_id)

            shopper = threading.Thread(target=shop, daemon=True)
            shopper.start()
            shopper.join(30)  # a deadline, not a timing: blocked, it waits for the commit below
            blocked = shopper.is_alive()
            tx.commit()
            shopper.join(30)
        assert not blocked, "the submit waited for the posting's row locks"
        assert len(done) == 1 and money.statuses() == {"posted": 1, "pending": 1}
    finally:
        holder.dispose()
