"""Scheduled maintenance: real beat (a test-only one-second schedule) and a real worker run each
job once, shown by its effect in SQL and Redis and in the worker's log; then each job by hand."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from celery_app.infra.models import FailedTask, PaymentRequest, ReconciliationRun
from celery_app.money import submit
from tests.support.health import fail_a_task
from tests.support.money import MoneyEnv, money_env
from tests.support.redis_app import ROOT, invoke
from tests.support.services import RedisServer, start_redis, wait_for

PASSWORD = "maint-test-pw-90d1"


@pytest.fixture
def money(tmp_path: Path) -> Iterator[tuple[MoneyEnv, RedisServer]]:
    server = start_redis(tmp_path / "redis", password=PASSWORD)
    env = money_env(tmp_path, server.url, f"sqlite:///{tmp_path / 'maqsafy.db'}")
    yield env, server
    env.close()
    server.stop()


def seed(money: MoneyEnv, server: RedisServer) -> int:
    """Leave one piece of work for each job; return the id of a request only the relay posts."""
    app = money.container
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    for task_id in ("old", "new"):
        fail_a_task(app, task_id)
    with app.uow() as uow:
        uow.session.execute(
            update(FailedTask).where(FailedTask.task_id == "old").values(failed_at=old)
        )
        uow.commit()
    client = server.client()
    client.set(app.keyspace.lock("wallet:stale"), "orphan")  # no TTL: never expires
    client.set(app.keyspace.lock("wallet:live"), "holder", px=600_000)
    client.config_set("maxmemory-policy", "allkeys-lru")  # the memory check must complain

    def broker_down(task: str, request_id: int, wallet: int) -> None:
        raise ConnectionError("broker down while submitting")

    money.open_wallets(1)
    submitted = submit.submit_top_up(app, "maint-1", "wallet:0", 500, broker_down)
    assert not submitted.queued
    return submitted.request_id


def test_beat_runs_each_maintenance_job_once(
    money: tuple[MoneyEnv, RedisServer], tmp_path: Path
) -> None:
    env, server = money
    app = env.container
    request_id = seed(env, server)
    worker = env.start_worker("maint@test", concurrency=1)
    beat_log = tmp_path / "beat.log"
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.support.fast_beat",
            "beat",
            "-s",
            str(tmp_path / "beat-schedule"),
            "-l",
            "info",
            "-f",
            str(beat_log),
        ],
        cwd=ROOT,
        env={**os.environ, **env.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = server.client()

    def status(request: int) -> str:
        with app.uow() as uow:
            return str(uow.session.get(PaymentRequest, request).status)  # type: ignore[union-attr]

    def reconciled() -> int:
        with app.uow() as uow:
            return int(uow.session.scalar(select(func.count()).select_from(ReconciliationRun)) or 0)

    def failed_ids() -> list[str]:
        with app.uow() as uow:
            return list(uow.session.scalars(select(FailedTask.task_id)))

    def all_ran() -> bool:
        log = worker.log_text()
        return all(
            re.search(rf"Task {re.escape(name)}\[[^\]]+\] succeeded", log)
            for name in (
                "maintenance.memory",
                "maintenance.prune_failed",
                "maintenance.sweep_locks",
                "ledger.reconcile",
                "outbox.relay",
            )
        )

    try:
        wait_for(all_ran, 60, "each maintenance job to run on the worker", every=0.2)
        wait_for(lambda: status(request_id) == "posted", 30, "the relayed top-up to post")
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(10)
    assert reconciled() >= 1
    assert failed_ids() == ["new"]  # pruned: older than a week only
    assert client.get(app.keyspace.lock("wallet:stale")) is None
    assert client.get(app.keyspace.lock("wallet:live")) == b"holder"
    log = worker.log_text()
    assert "maxmemory-policy is allkeys-lru, not noeviction" in log  # the memory check's result
    assert "Sending due task redis-memory-check (maintenance.memory)" in beat_log.read_text()
    assert PASSWORD not in log + beat_log.read_text()


def test_each_job_by_hand(money: tuple[MoneyEnv, RedisServer]) -> None:
    env, server = money
    seed(env, server)

    memory = invoke(env.env, "maintenance.memory")
    assert memory.returncode == 1, memory.stdout + memory.stderr
    assert "policy: the broker's maxmemory-policy is allkeys-lru" in memory.stdout
    server.client().config_set("maxmemory-policy", "noeviction")

    pruned = invoke(env.env, "maintenance.prune")
    assert pruned.stdout.strip() == "pruned 1 failed tasks older than 168h"
    locks = invoke(env.env, "maintenance.locks")
    assert locks.stdout.startswith("swept 1 lock key(s) without a TTL")
    again = invoke(env.env, "maintenance.locks")
    assert again.stdout.startswith("swept 0 lock key(s)")  # run twice: nothing more to do
    relay = invoke(env.env, "maintenance.relay")
    assert relay.stdout.strip() == "re-sent 1 pending payment request(s)"
    assert server.client().llen("payments") == 1  # the top-up's task, waiting for a worker
    reconcile = invoke(env.env, "maintenance.reconcile")
    assert reconcile.returncode == 0 and "balanced" in reconcile.stdout
    bad = invoke(env.env, "maintenance.prune", "--hours", "soon")
    assert (bad.returncode, bad.stderr.count("\n")) == (2, 1)
