"""A real worker's log masks secrets: a failing task whose arguments carry a known secret value
and a password inside a URL is logged with both masked (Celery logs arguments on failure)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_app.celery import make_app
from celery_app.ops import failed_tasks
from tests.support.money import MoneyEnv, money_env
from tests.support.services import RedisServer, wait_for

KNOWN = "Kn0wnSecretValue-7f3a"  # a value settings knows (the admin URL's password)
HOST_ONLY = "HostOnlyPw-91c2"  # only a pattern can know this one


@pytest.fixture
def money_with_secret(
    tmp_path: Path, redis_server: RedisServer, database_url: str
) -> Iterator[MoneyEnv]:
    env = money_env(
        tmp_path,
        redis_server.url,
        database_url,
        MAQSAFY_REDIS_SUPERUSER_URL=f"redis://admin:{KNOWN}@127.0.0.1:6399/0",
    )
    yield env
    env.close()


def test_a_failing_task_is_logged_without_its_secrets(money_with_secret: MoneyEnv) -> None:
    money = money_with_secret
    send = failed_tasks.sender(make_app(money.container.settings))
    worker = money.start_worker()
    send("purchase.post", [f"{KNOWN} postgresql://app:{HOST_ONLY}@db/x"], {}, "payments")
    wait_for(lambda: "raised unexpected" in worker.log_text(), 60, "the failure to reach the log")
    log = worker.log_text()
    failure = next(line for line in log.splitlines() if "raised unexpected" in line)
    assert "request id must be a positive integer" in failure
    assert "********" in failure
    assert KNOWN not in log and HOST_ONLY not in log
