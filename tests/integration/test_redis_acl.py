"""`redis.acl`: one least-privilege user per role, applied once (then a no-op), and proven on a
real redis-server: the producer is refused what it must never do, even from Lua; a real worker
posts money and answers the admin's ping; the ops runner consumes `ops` and nothing else."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from celery_app.celery import make_app
from celery_app.dev.worker_process import start_worker
from celery_app.money import submit
from celery_app.ops import queue_samples, queues, redis_acl, workers
from celery_app.settings import load_settings
from celery_app.stores.cache import Cache
from celery_app.stores.login import LoginGuard
from celery_app.stores.ratelimit import TopUpThrottle
from celery_app.stores.sessions import SessionStore
from tests.integration.test_money_exactly_once import assert_exactly_once
from tests.support.money import MoneyEnv, money_env
from tests.support.redis_app import app_env, history_names, invoke, migrated_app
from tests.support.services import RedisServer, require_system_redis, start_redis, wait_for

SUPER_PW = "acl-super-pw-4e1b"
PASSWORDS = {u.name: f"acl-{u.role}-pw-0c9d" for u in redis_acl.ROLE_USERS}
PASSWORD_ENV = {u.password_env: PASSWORDS[u.name] for u in redis_acl.ROLE_USERS}
SCOPE = redis_acl.Scope()
# Valkey (and Redis 7.2+) has CLIENT SETINFO, which redis-py sends on connect; the role users
# may not run it, so ACL LOG records a refusal per connection (Redis 7.0 has no such command).
SETINFO = "logs every connection's CLIENT SETINFO as an ACL denial"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    found = start_redis(tmp_path / "redis", password=SUPER_PW)
    yield found
    found.stop()


@pytest.fixture
def applied(server: RedisServer) -> RedisServer:
    redis_acl.apply(server.client(), redis_acl.ROLE_USERS, PASSWORDS, SCOPE)
    server.client().acl_log_reset()
    return server


def url(server: RedisServer, role: str, db: int = 0) -> str:
    user = redis_acl.BY_ROLE[role]
    return f"redis://{user.name}:{PASSWORDS[user.name]}@127.0.0.1:{server.port}/{db}"


def as_role(server: RedisServer, role: str) -> redis.Redis:
    return redis.Redis.from_url(url(server, role))


def denials(server: RedisServer) -> list[tuple[str, str, str]]:
    """(user, reason, object) of every command Redis refused since the log was reset."""
    found = []
    for entry in server.client().acl_log():
        found.append((entry["username"], entry["reason"], entry["object"]))
    return found


def test_apply_is_idempotent_and_check_changes_nothing(server: RedisServer) -> None:
    admin = server.client()
    first = redis_acl.apply(admin, redis_acl.ROLE_USERS, PASSWORDS, SCOPE)
    again = redis_acl.apply(admin, redis_acl.ROLE_USERS, PASSWORDS, SCOPE)
    assert [r.changed for r in first] == [True] * 4 and [r.changed for r in again] == [False] * 4
    rotated = {**PASSWORDS, "maqsafy-worker": "rotated"}
    checked = redis_acl.apply(admin, redis_acl.ROLE_USERS, rotated, SCOPE, check=True)
    assert [r.changed for r in checked] == [False, True, False, False]
    assert as_role(server, "worker").ping()  # check mode changed nothing

    ops = redis_acl.state(admin, "maqsafy-ops")
    assert ops is not None and ops.keys == ()  # the ops runner's root may touch no key
    ops_lists = next(s for s in ops.selectors if "~ops " in f"{s} ")
    assert ops_lists.split(" | ")[1].split() == [
        "~ops",
        "~ops\x06\x163",
        "~ops\x06\x166",
        "~ops\x06\x169",
    ]
    assert ops.channels == ("&/0.celery.pidbox",)
    assert redis_acl.state(admin, "maqsafy-producer").channels == ()  # type: ignore[union-attr]
    narrow = redis_acl.Scope(dbs=(0, 2))
    assert "+select|2" in redis_acl.rules("producer", narrow)
    assert not any("select" in r for r in redis_acl.rules("producer", SCOPE))


def test_the_command_shows_rules_without_passwords_and_applies(
    server: RedisServer, tmp_path: Path
) -> None:
    env = app_env(tmp_path, url(server, "admin"), MAQSAFY_REDIS_SUPERUSER_URL=server.url)
    app = migrated_app(env)  # --apply is recorded in the run history
    shown = invoke(env, "redis.acl")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[0::3]] == [u.name for u in redis_acl.ROLE_USERS]
    assert lines[1] == "  password: from $MAQSAFY_REDIS_PRODUCER_PASSWORD by --apply (never shown)"
    assert lines[2].startswith("  rules: reset on ~maqsafy:cache:* ")
    assert '"(~payments ~payments\\x06\\x163 ' in lines[2]
    assert not any(" >" in line or "${" in line for line in lines)  # nothing to paste as a password
    assert SUPER_PW not in shown.stdout

    missing = invoke(
        {**env, **PASSWORD_ENV, "MAQSAFY_REDIS_OPS_PASSWORD": ""}, "redis.acl", "--apply"
    )
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "error: MAQSAFY_REDIS_OPS_PASSWORD not set: each role user's password comes from the "
        "environment, never the command line",
    )
    assert server.client().acl_users() == ["default"]  # nothing was written

    with_pw = {**env, **PASSWORD_ENV}
    applied = invoke(with_pw, "redis.acl", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        f"ACL user {u.name} set to its role's rules" for u in redis_acl.ROLE_USERS
    ]
    again = invoke(with_pw, "redis.acl", "--apply", "--role", "worker")
    assert (
        again.stdout.strip()
        == "ACL user maqsafy-worker already has its role's rules; nothing changed"
    )
    runs = history_names(app)
    assert [(name, status) for name, status, _ in runs] == [("redis.acl", "ok")] * 2
    assert runs[1][2] == {
        "users": ["maqsafy-worker"],
        "password_envs": ["MAQSAFY_REDIS_WORKER_PASSWORD"],
    }
    everything = applied.stdout + applied.stderr + again.stdout + json.dumps(runs)
    assert not any(pw in everything for pw in [SUPER_PW, *PASSWORDS.values()])

    # As a role user (no superuser named): one line, nothing changed, recorded as failed.
    no_super = {**with_pw, "MAQSAFY_REDIS_SUPERUSER_URL": ""}
    refused = invoke(no_super, "redis.acl", "--apply")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "may not run ACL: set MAQSAFY_REDIS_SUPERUSER_URL" in refused.stderr
    for args in (["--role", "nope"], ["--check"]):
        bad = invoke(with_pw, "redis.acl", *args)
        assert (
            bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
        )
    assert [status for _name, status, _ in history_names(app)] == ["ok", "ok", "failed"]
    app.engine.dispose()


def refused(client: redis.Redis, *command: Any) -> bool:
    try:
        client.execute_command(*command)
    except redis.exceptions.NoPermissionError:
        return True
    except redis.ResponseError as exc:  # inside Lua the refusal is the script's error
        text = str(exc).lower()  # (CONFIG and ACL Redis refuses in any script, whoever runs it)
        return any(
            words in text
            for words in (
                "the user executing the script can't",  # Redis 7.0
                "acl failure in script",  # Redis 7.2+, Valkey
                "not allowed from script",
            )
        )
    return False


def test_the_producer_is_refused_everything_outside_its_role(applied: RedisServer) -> None:
    producer = as_role(applied, "producer")
    never = [
        ("LPUSH", "ops", "x"),
        ("LPUSH", "ops\x06\x163", "x"),
        ("PUBLISH", "/0.celery.pidbox", "shutdown"),
        ("DEL", "payments"),
        ("RPOP", "payments"),
        ("DEL", "unacked"),
        ("HSET", "unacked", "tag", "x"),
        ("SADD", "_kombu.binding.ops", "x"),
        ("DEL", "maqsafy:lock:deploy:production"),
        ("SET", "maqsafy:fence:seq", "1"),
        ("SELECT", "1"),
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "maxmemory"),
        ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
        ("ACL", "SETUSER", "maqsafy-producer", "+@all"),
        ("KEYS", "*"),
        ("SHUTDOWN", "NOSAVE"),
        ("FUNCTION", "FLUSH"),
        ("EVAL", "return redis.call('DEL', 'payments')", "0"),
        ("EVAL", "return redis.call('LPUSH', KEYS[1], 'x')", "1", "ops"),
        ("EVAL", "return redis.call('PUBLISH', '/0.celery.pidbox', 'x')", "0"),
        ("EVAL", "return redis.call('FLUSHALL')", "0"),
        ("EVAL", "return redis.call('CONFIG', 'GET', 'maxmemory')", "0"),
        ("EVAL", "return redis.call('ACL', 'SETUSER', 'x', 'on')", "0"),
    ]
    allowed = [c for c in never if not refused(producer, *c)]
    assert allowed == []
    assert applied.client().llen("ops") == 0 and applied.client().acl_users() == [
        "default",
        *sorted(PASSWORDS),
    ]
    # What a role's key patterns do not name stays shut: `~ops*` would have let these through.
    ops = as_role(applied, "ops")
    assert refused(ops, "LPUSH", "opsanything", "x") and refused(ops, "LPUSH", "payments", "x")
    assert refused(ops, "HSET", "unacked", "tag", "x")  # only its own ops.unacked*
    assert refused(as_role(applied, "worker"), "HSET", "ops.unacked", "tag", "x")
    assert refused(as_role(applied, "worker"), "LPUSH", "ops", "x")
    assert refused(as_role(applied, "worker"), "PUBLISH", "/0.celery.pidbox", "x")
    assert refused(as_role(applied, "admin"), "FLUSHDB")
    for role in ("producer", "worker", "ops"):  # the queue samples are the console's (admin)
        assert refused(as_role(applied, role), "ZADD", SCOPE.keyspace.queue_samples, "1", "x")


def test_runs_live_events_are_written_by_who_runs_books_and_read_by_the_console(
    applied: RedisServer,
) -> None:
    """The ops runner and the operator's tool (local runs, the console) write a run's events;
    the console (the admin user) reads them; no other role touches them."""
    from celery_app.infra.keyspace import Keyspace
    from runbooks.engine.run_events import RunEvents

    keyspace = Keyspace()
    for role, run_id in (("ops", 1), ("admin", 2)):
        writer = RunEvents(as_role(applied, role), keyspace)
        writer.append(run_id, {"kind": "end", "status": "ok"})
        assert writer._down_until == 0.0, role  # nothing was refused
    console = RunEvents(as_role(applied, "admin"), keyspace)
    assert [e.data["status"] for r in (1, 2) for e in console.read(r)] == ["ok", "ok"]
    assert 0 < applied.client().ttl(keyspace.run_events(1)) <= 6 * 3600
    for role in ("producer", "worker"):
        assert refused(as_role(applied, role), "XADD", keyspace.run_events(3), "*", "e", "x")
        assert refused(as_role(applied, role), "XRANGE", keyspace.run_events(1), "-", "+")
    assert refused(as_role(applied, "ops"), "XADD", "maqsafy:cache:x", "*", "e", "x")


def test_the_producer_uses_its_stores(applied: RedisServer, tmp_path: Path) -> None:
    require_system_redis(SETINFO)
    app = migrated_app(app_env(tmp_path, url(applied, "producer")))
    cache = Cache.of(app)
    cache.set("menus", "today", "rice")
    assert cache.get("menus", "today") == "rice"
    sessions = SessionStore.from_container(app)
    session = sessions.create("parent-7")
    assert sessions.read(session.id) is not None
    assert sessions.count("parent-7") == {"sessions": 1, "users": 1}
    assert sessions.revoke_user("parent-7") == 1
    assert TopUpThrottle.from_container(app).enforce("parent-7").allowed
    login = LoginGuard.from_container(app)
    assert login.attempt("parent-7", "10.0.0.7").allowed
    assert denials(applied) == []
    app.engine.dispose()


def test_money_runs_under_the_role_users(applied: RedisServer, tmp_path: Path) -> None:
    require_system_redis(SETINFO)
    money: MoneyEnv = money_env(
        tmp_path, url(applied, "producer"), f"sqlite:///{tmp_path / 'm.db'}"
    )
    try:
        money.open_wallets(2)
        worker = start_worker(
            "acl@test", tmp_path / "w.log", env={**money.env, "REDIS_URL": url(applied, "worker")}
        )
        money.workers.append(worker)
        worker.wait_ready()
        for i in range(4):  # the real payment API and its real Celery producer, as the producer
            submit.submit_top_up(
                money.container, f"top-{i}", f"wallet:{i % 2}", 5000, money.enqueue
            )
        money.wait_settled(timeout=60)
        assert_exactly_once(money, requests=4)

        ops = start_worker(
            "ops@test",
            tmp_path / "o.log",
            queues="ops",
            env={**money.env, "REDIS_URL": url(applied, "ops")},
            extra=("-I", "runbooks.ops_queue.runner"),
        )
        money.workers.append(ops)
        ops.wait_ready()
        admin = make_app(load_settings({**money.env, "REDIS_URL": url(applied, "admin")}))
        assert workers.ping(admin, timeout=2.0) == ["acl@test", "ops@test"]
        nodes = {s.name: s.queues for s in workers.status(admin, timeout=2.0)}
        assert nodes == {"acl@test": ["maintenance", "payments"], "ops@test": ["ops"]}

        admin.send_task("health.noop", queue="ops")
        broker = as_role(applied, "admin")
        wait_for(
            lambda: "health.noop" in ops.log_text() and "succeeded" in ops.log_text(),
            30,
            "the ops runner to run the task the admin sent to `ops`",
        )
        stats = {s.name: (s.waiting, s.unacked) for s in queues.queue_stats(broker)}
        assert stats == {"payments": (0, 0), "maintenance": (0, 0), "ops": (0, 0)}
        at = queue_samples.sample(broker, SCOPE.keyspace)  # the console's sampler, as admin
        assert [s.at for s in queue_samples.read(broker, SCOPE.keyspace, 0)] == [at]
        for log in (worker.log_text(), ops.log_text()):
            assert "NOPERM" not in log and "no permissions" not in log
        assert denials(applied) == []  # nothing any role did for real was refused
    finally:
        money.close()


def test_a_message_planted_in_unacked_never_reaches_ops(
    applied: RedisServer, tmp_path: Path
) -> None:
    """kombu restores an overdue unacked message into the queue it names: one a payment worker
    plants, routed to `ops`, must not become a runbook run. Only the ops runner restores into
    `ops`, and it reads its own ops.unacked, which no other role may write."""
    superuser = applied.client()
    superuser.sadd("_kombu.binding.ops", "ops\x06\x16\x06\x16ops")
    message = {"body": "", "headers": {}, "properties": {"delivery_tag": "t1", "priority": 0}}
    superuser.hset("unacked", "t1", json.dumps([message, "ops", "ops"]))  # as a worker could
    superuser.zadd("unacked_index", {"t1": time.time() - 7200})
    money = money_env(tmp_path, url(applied, "producer"), f"sqlite:///{tmp_path / 'm.db'}")
    try:
        worker = start_worker(
            "acl@test", tmp_path / "w.log", env={**money.env, "REDIS_URL": url(applied, "worker")}
        )
        money.workers.append(worker)
        worker.wait_ready()
        wait_for(lambda: superuser.hlen("unacked") == 0, 20, "the worker's restore attempt")
        assert superuser.llen("ops") == 0
        assert "Could not restore message" in worker.log_text()
    finally:
        money.close()
