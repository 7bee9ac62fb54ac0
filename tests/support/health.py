"""A healthy environment to inject faults into: a locked-down, persistent Redis, SQL, a worker.

"Healthy" is what `invoke status` calls ok: the broker on an AOF Redis that demands a
password, the schema at head, one worker answering ping, the ledger reconciled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from celery_app.bootstrap import Container
from celery_app.money import settlement
from celery_app.ops.failed_tasks import record_failure
from tests.support.money import MoneyEnv, money_env
from tests.support.services import RedisServer, start_redis

PASSWORD = "health-test-pw-51c2"


@contextmanager
def healthy_env(directory: Path) -> Iterator[tuple[MoneyEnv, RedisServer]]:
    server = start_redis(directory / "redis", "--appendonly", "yes", password=PASSWORD)
    money = money_env(directory, server.url, f"sqlite:///{directory / 'maqsafy.db'}")
    try:
        money.start_worker("health@test", concurrency=1)
        settlement.reconcile(money.container)
        yield money, server
    finally:
        money.close()
        server.stop()


def fail_a_task(app: Container, task_id: str) -> None:
    """Record a purchase that finally failed, as the worker's failure hook does."""
    record_failure(
        app,
        task_id=task_id,
        task_name="purchase.post",
        queue="payments",
        args=[1],
        kwargs={},
        exception=RuntimeError("boom"),
        traceback="",
    )
