"""Failed tasks with a real worker: a real failure is recorded, listed, shown, retried, forgotten;
a money task retried after it had succeeded posts nothing more."""

from __future__ import annotations

from sqlalchemy import select

from celery_app.celery import make_app
from celery_app.infra.models import Account
from celery_app.money import posting, submit
from celery_app.ops import failed_tasks, queues
from celery_app.ops.failed_tasks import record_failure
from tests.support.money import MoneyEnv
from tests.support.services import wait_for


def drained(money: MoneyEnv) -> bool:
    """Nothing waiting and nothing unacked on the payments queue."""
    stats = queues.queue_stats(money.container.redis("broker"), ["payments"])[0]
    return stats.waiting == 0 and stats.unacked == 0


def balances(money: MoneyEnv) -> dict[str, int]:
    with money.container.uow() as uow:
        return {a.code: a.balance for a in uow.session.scalars(select(Account))}


def test_failed_money_task_lifecycle_with_a_real_worker(money: MoneyEnv) -> None:
    uow = money.container.uow
    send = failed_tasks.sender(make_app(money.container.settings))
    money.open_wallets(1)
    money.start_worker()

    # A real final failure: a purchase message whose request id is not an id.
    send("purchase.post", ["not-an-id"], {}, "payments")
    wait_for(lambda: failed_tasks.count_failed(uow) == 1, 60, "the failure to be recorded")
    [row] = failed_tasks.list_failed(uow, queue="payments", since="1h").rows
    shown = failed_tasks.show(uow, row.id)
    assert (shown.task_name, shown.args) == ("purchase.post", '["not-an-id"]')
    assert "request id must be a positive integer" in shown.exception and shown.traceback

    # Retry sends the original arguments: it fails again and is recorded again.
    assert failed_tasks.retry(uow, send, [row.id]).retried == [row.id]
    wait_for(lambda: failed_tasks.count_failed(uow) == 1, 60, "the retried task to fail again")
    [again] = failed_tasks.list_failed(uow).rows  # SQLite may reuse the deleted row's id
    assert again.args == row.args and again.task_id != row.task_id
    assert failed_tasks.forget(uow, [again.id]) == 1
    assert failed_tasks.count_failed(uow) == 0

    # A purchase that posted, then (say the worker died before acking) recorded as failed.
    locks = posting.locks(money.container)
    top_up = submit.submit_top_up(money.container, "seed", "wallet:0", 5000, lambda *_: None)
    posting.post_request(money.container, top_up.request_id, locks)
    bought = submit.submit_purchase(
        money.container, "buy-1", "wallet:0", "merchant:0", 1250, money.enqueue
    )
    money.wait_settled()
    wait_for(lambda: drained(money), 30, "the payments queue to drain")
    before = (money.postings_per_request(), money.entry_count(), balances(money))
    assert before[0][bought.request_id] == 1
    failed_id = record_failure(
        money.container,
        task_id="lost-ack",
        task_name="purchase.post",
        queue="payments",
        args=[bought.request_id],
        kwargs={},
        exception=RuntimeError("worker lost"),
        traceback="",
    )

    worker = money.workers[0]
    done = worker.log_text().count("succeeded")
    assert failed_tasks.retry(uow, send, all_rows=True, queue="payments").retried == [failed_id]
    wait_for(lambda: worker.log_text().count("succeeded") > done, 30, "the retried purchase")
    wait_for(lambda: drained(money), 30, "the payments queue to drain")

    assert (money.postings_per_request(), money.entry_count(), balances(money)) == before
    assert failed_tasks.count_failed(uow) == 0
