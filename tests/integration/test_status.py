"""`invoke status`: exit 0 healthy, 1 warning, 2 critical, following faults injected for real."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from celery_app.celery import make_app
from celery_app.dev.worker_process import start_worker
from celery_app.infra.models import Account
from celery_app.money import settlement
from celery_app.ops import failed_tasks
from celery_app.ops.status import collect, workers_reader
from runbooks.reach.redis import REDIS_VARIABLES
from tests.support.deploy import kill_pidfiles
from tests.support.health import PASSWORD, fail_a_task, healthy_env
from tests.support.money import MoneyEnv
from tests.support.redis_app import invoke
from tests.support.services import RedisServer, start_redis


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MoneyEnv, RedisServer]]:
    with healthy_env(tmp_path_factory.mktemp("status")) as found:
        yield found


def status(money: MoneyEnv) -> tuple[int, dict[str, object], str]:
    done = invoke(money.env, "status", "--json")
    assert not done.stderr.strip(), done.stderr
    assert PASSWORD not in done.stdout
    return done.returncode, json.loads(done.stdout), done.stdout


def checks(data: dict[str, object]) -> list[tuple[str, str]]:
    return [(f["check"], f["level"]) for f in data["findings"]]  # type: ignore[attr-defined, index]


def test_healthy_is_exit_0(live: tuple[MoneyEnv, RedisServer]) -> None:
    money, _server = live
    code, data, _ = status(money)
    assert (code, data["level"], checks(data)) == (0, "ok", [])
    [node] = data["workers"]  # type: ignore[misc]
    assert (node["name"], node["queues"]) == ("health@test", ["maintenance", "payments"])
    [redis] = data["redis"]  # type: ignore[misc]
    assert redis["up"] and redis["policy"] == "noeviction" and redis["version"].startswith("7")
    assert data["outbox"] == {"pending": 0, "oldest_seconds": None}
    assert data["reconciliation"]["discrepancies"] == 0  # type: ignore[index]

    people = invoke(money.env, "status")
    assert people.returncode == 0 and people.stdout.startswith("status: OK")
    assert "workers   1 online: health@test" in people.stdout


def test_an_evicting_broker_is_exit_1(live: tuple[MoneyEnv, RedisServer]) -> None:
    money, server = live
    server.client().config_set("maxmemory-policy", "allkeys-lru")
    try:
        code, data, _ = status(money)
    finally:
        server.client().config_set("maxmemory-policy", "noeviction")
    assert code == 1
    assert [c for c in checks(data) if c[1] != "ok"] == [
        (
            f"redis redis://:********@127.0.0.1:{server.port}/0 "
            "(broker, cache, sessions, ratelimit, locks) policy",
            "warn",
        )
    ]


def test_failures_warn_and_a_ledger_discrepancy_is_critical(
    live: tuple[MoneyEnv, RedisServer],
) -> None:
    money, _server = live
    app = money.container
    read = workers_reader(make_app(app.settings), timeout=1.0)
    fail_a_task(app, "t1")
    try:
        found = collect(app, read)
        assert (found.level, found.failed_24h) == ("warn", 1)
    finally:
        failed_tasks.flush(app.uow)

    with app.uow() as uow:
        uow.session.execute(
            update(Account)
            .where(Account.code == "platform:clearing")
            .values(balance=Account.balance + 1)
        )
        uow.commit()
    try:
        assert not settlement.reconcile(app).balanced
        found = collect(app, read)
        assert found.level == "critical"
        assert [f.check for f in found.findings] == ["reconciliation"]
    finally:
        with app.uow() as uow:
            uow.session.execute(
                update(Account)
                .where(Account.code == "platform:clearing")
                .values(balance=Account.balance - 1)
            )
            uow.commit()
        assert settlement.reconcile(app).balanced


def test_redis_stopped_is_exit_2(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", password=PASSWORD)
    env = {
        "REDIS_URL": server.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
        "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
        "MAQSAFY_ENV_FILE": str(tmp_path / "no.env"),
    }
    server.stop()
    done = invoke(env, "status")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "DOWN" in done.stdout and "connection refused" in done.stdout
    assert "workers   not checked" in done.stdout
    assert "database  sqlite" in done.stdout  # the other sections are still read
    assert PASSWORD not in done.stdout and not done.stderr


def test_workers_on_two_releases_warn(live: tuple[MoneyEnv, RedisServer], tmp_path: Path) -> None:
    money, _server = live
    other = start_worker(
        "other@test",
        tmp_path / "other.log",
        queues="maintenance",
        concurrency=1,
        env={**money.env, "MAQSAFY_RELEASE": "20261128T000000Z-abc1234"},
    )
    try:
        other.wait_ready()
        found = collect(money.container, workers_reader(make_app(money.container.settings)))
    finally:
        other.kill()
    assert found.level == "warn"
    [finding] = found.findings
    assert finding.message.startswith("workers run different releases: ")
    assert "20261128T000000Z-abc1234" in finding.message
    assert {w["name"]: w["release"] for w in found.workers or []}["other@test"] == (
        "20261128T000000Z-abc1234"
    )


@pytest.mark.embedded
def test_workers_on_ops_only_are_critical_and_an_unknown_queue_is_refused(tmp_path: Path) -> None:
    """The embedded default (no REDIS_*): its Redis passes status without a password, so the
    only critical finding is the one the operator caused: no worker consumes payments."""
    env = {
        **dict.fromkeys(REDIS_VARIABLES, ""),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
        "MAQSAFY_VAR_DIR": str(tmp_path / "var"),
        "MAQSAFY_ENV_FILE": str(tmp_path / "no.env"),
    }
    run = tmp_path / "var" / "run"
    try:
        refused = invoke(env, "workers.start", "--queues", "payments,nosuch")
        assert (refused.returncode, refused.stdout, refused.stderr.strip()) == (
            2,
            "",
            "error: --queues: unknown queue 'nosuch'; the known queues are "
            "payments, maintenance, ops",
        )
        assert not list(run.glob("*.pid"))  # refused before any worker started

        assert invoke(env, "db.migrate").returncode == 0
        started = invoke(env, "workers.start", "--queues", "ops")
        assert started.returncode == 0, started.stdout + started.stderr
        done = invoke(env, "status", "--json")
        assert done.returncode == 2, done.stdout + done.stderr
        data = json.loads(done.stdout)
        assert [(f["check"], f["message"]) for f in data["findings"] if f["level"] != "ok"] == [
            ("workers", "no worker consumes the payments queue"),
            ("reconciliation", "the ledger was never reconciled"),
        ]
        assert [w["queues"] for w in data["workers"]] == [["ops"]]
    finally:
        invoke(env, "workers.stop", "--timeout", "20")
        kill_pidfiles([run])
        invoke(env, "stop")
