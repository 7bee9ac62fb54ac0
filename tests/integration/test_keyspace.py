"""The keyspace report against a real redis-server: every key the services write, per role."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from celery_app.infra.keyspace import Keyspace
from celery_app.ops.keyspace_report import report, scan_keyspace
from celery_app.stores.login import LoginGuard
from celery_app.stores.ratelimit import check_top_up
from celery_app.stores.sessions import SessionStore
from tests.support.redis_app import app_env, build_app, invoke
from tests.support.services import RedisServer

KS = Keyspace("maqsafy")


def fill(server: RedisServer) -> None:
    """Write keys of every role the way the project does, and one stranger."""
    client = server.client()
    for user in ("u1", "u1", "u2"):
        SessionStore(client, KS).create(user)  # 3 sessions + 2 indexes
    LoginGuard(client, KS).attempt("alice", "10.0.0.1")  # 2 failure logs
    client.lpush("payments", "{}")  # broker
    client.set("_kombu.binding.payments", "x")  # broker
    client.set(KS.cache("menu", "today"), "x" * 2000)  # cache
    client.set(KS.lock("account:1"), "token", px=60_000)  # locks
    client.incr(KS.fence_counter)  # locks
    client.set("someone-elses-key", "x")  # unknown


def counts(data: dict[str, Any]) -> dict[str, int]:
    return {row["role"]: row["keys"] for row in data["roles"]}


def test_every_key_is_counted_under_its_role(redis_server: RedisServer) -> None:
    fill(redis_server)
    found = scan_keyspace([redis_server.client()], KS).as_dict()
    assert counts(found) == {
        "broker": 2,
        "cache": 1,
        "sessions": 5,
        "ratelimit": 2,
        "locks": 2,
        "unknown": 1,
    }
    assert found["scanned"] == 13 and found["estimated"] is False
    memory = {row["role"]: row["memory_bytes"] for row in found["roles"]}
    assert memory["cache"] > 2000 and all(memory[role] > 0 for role in memory)


def test_a_capped_scan_scales_counts_to_dbsize(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.mset({KS.cache("n", str(i)): "v" for i in range(300)})
    capped = scan_keyspace([client], KS, sample=10, max_keys=100)
    assert capped.estimated is True
    assert capped.scanned < 300
    assert counts(capped.as_dict())["cache"] == 300


def test_roles_on_their_own_database_are_each_scanned_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    sessions_url = redis_server.url.rsplit("/", 1)[0] + "/1"
    app = build_app(app_env(tmp_path, redis_server.url, REDIS_SESSIONS_URL=sessions_url))
    SessionStore.from_container(app).create("u1")
    check_top_up(5, app)
    found = report(app).as_dict()
    assert counts(found)["sessions"] == 2 and counts(found)["ratelimit"] == 1
    assert found["scanned"] == 3
    assert redis_server.client(db=1).dbsize() == 2


def test_command_prints_the_report(redis_server: RedisServer, tmp_path: Path) -> None:
    fill(redis_server)
    before = redis_server.client().dbsize()
    done = invoke(app_env(tmp_path, redis_server.url), "redis.keyspace", "--json")
    assert done.returncode == 0, done.stderr
    assert counts(json.loads(done.stdout))["sessions"] == 5
    assert redis_server.client().dbsize() == before  # a report writes nothing
