"""`redis.acl`: the least-privilege user is applied once (then a no-op), refuses what the app must
never run, and the money path runs under it with a real worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from celery_app import queues, redis_acl, submit, workers
from celery_app.cache import Cache
from celery_app.celery import make_app
from tests.integration.test_money_exactly_once import assert_exactly_once, submit_purchases
from tests.support.money import MoneyEnv, money_env
from tests.support.redis_app import app_env, history_names, invoke, migrated_app
from tests.support.services import RedisServer, start_redis

ADMIN_PW = "acl-admin-pw-4e1b"
APP_PW = "acl-app-pw-0c9d"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    found = start_redis(tmp_path / "redis", password=ADMIN_PW)
    yield found
    found.stop()


def app_url(server: RedisServer) -> str:
    return f"redis://{redis_acl.APP_USER}:{APP_PW}@127.0.0.1:{server.port}/0"


def test_apply_is_idempotent_and_denies_the_dangerous(server: RedisServer) -> None:
    admin = server.client()
    first = redis_acl.apply(admin, redis_acl.APP_USER, "maqsafy", APP_PW)
    again = redis_acl.apply(admin, redis_acl.APP_USER, "maqsafy", APP_PW)
    assert (first.changed, again.changed) == (True, False)
    assert redis_acl.apply(admin, redis_acl.APP_USER, "maqsafy", "rotated", check=True).changed
    assert redis.Redis.from_url(app_url(server)).ping()  # check mode changed nothing
    for command in redis_acl.FORBIDDEN:
        reply = admin.execute_command("ACL", "DRYRUN", redis_acl.APP_USER, *command.split())
        assert b"no permissions" in reply, command
    assert admin.execute_command("ACL", "DRYRUN", redis_acl.APP_USER, "GET", "other:key") != b"OK"
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis.Redis.from_url(app_url(server)).config_get("maxmemory")


def test_the_command_prints_without_a_password_and_applies(
    server: RedisServer, tmp_path: Path
) -> None:
    env = {**app_env(tmp_path, server.url), "MAQSAFY_REDIS_APP_PASSWORD": APP_PW}
    app = migrated_app(env)  # --apply is recorded in the run history
    shown = invoke(env, "redis.acl")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("ACL SETUSER maqsafy-app reset on ~maqsafy:* ")
    assert "${MAQSAFY_REDIS_APP_PASSWORD}" in shown.stdout
    assert APP_PW not in shown.stdout and ADMIN_PW not in shown.stdout

    applied = invoke(env, "redis.acl", "--apply")
    assert applied.stdout.strip() == "ACL user maqsafy-app set to the least-privilege rules"
    again = invoke(env, "redis.acl", "--apply")
    assert "nothing changed" in again.stdout
    assert [(name, status) for name, status, _ in history_names(app)] == [("redis.acl", "ok")] * 2
    app.engine.dispose()

    missing = invoke(app_env(tmp_path, server.url), "redis.acl", "--apply")
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "error: MAQSAFY_REDIS_APP_PASSWORD is not set: the app user's password comes from the "
        "environment, never the command line",
    )


def test_money_runs_under_the_least_privilege_user(server: RedisServer, tmp_path: Path) -> None:
    redis_acl.apply(server.client(), redis_acl.APP_USER, "maqsafy", APP_PW)
    money: MoneyEnv = money_env(tmp_path, app_url(server), f"sqlite:///{tmp_path / 'm.db'}")
    try:
        money.open_wallets(4)
        worker = money.start_worker("acl@test", concurrency=2)
        for i in range(4):
            submit.submit_top_up(money.container, f"top-{i}", f"wallet:{i}", 5000, money.enqueue)
        submit_purchases(money, 30, wallets=4)
        money.wait_settled(timeout=60)
        assert_exactly_once(money, requests=34)

        app = money.container
        assert workers.ping(make_app(app.settings), timeout=1.0) == ["acl@test"]
        assert {s.name for s in queues.queue_stats(app.redis("broker"))} == {
            "payments",
            "maintenance",
            "ops",
        }
        cache = Cache.of(app)
        cache.set("menus", "today", "rice")
        assert cache.get("menus", "today") == "rice"
        assert "NOPERM" not in worker.log_text() and "no permissions" not in worker.log_text()
    finally:
        money.close()
