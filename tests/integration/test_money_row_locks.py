"""A posting in progress never stops parents and students submitting on the same accounts.

On PostgreSQL a submit's INSERT checks its foreign keys with ``FOR KEY SHARE`` on the wallet,
then the merchant. A posting that held those accounts ``FOR UPDATE`` blocked it, and a posting
holding one account while waiting for the other deadlocked with it (PostgreSQL aborted the
submit: seen under the operator's day load). Postings lock ``FOR NO KEY UPDATE``, which a
foreign-key check does not wait for.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from celery_app.money import posting, posting_sql, submit
from tests.support.money import MoneyEnv, submit_while_held


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_submit_does_not_wait_for_a_posting_holding_its_accounts(money: MoneyEnv) -> None:
    money.open_wallets(1)
    first = submit.submit_top_up(money.container, "t", "wallet:0", 5_000, lambda *_: None)
    _, _, wallet = posting.peek(money.container, first.request_id)

    def post(conn: Connection) -> None:  # the posting statement itself, left uncommitted
        assert posting_sql.post_pg(conn, first.request_id, wallet, token=1).result == "posted"

    assert not submit_while_held(money, post, "wallet:0"), "the submit waited for the posting"
    assert money.statuses() == {"posted": 1, "pending": 1}
