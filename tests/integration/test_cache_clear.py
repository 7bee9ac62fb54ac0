"""A cache clear over a real production-shaped keyspace touches cache keys and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from kombu import Connection

from celery_app.errors import InvalidRequest, Refused
from celery_app.infra.keyspace import Keyspace
from celery_app.settings import load_settings
from celery_app.stores import cache
from tests.support.broker import dump_all, hold_unacked, producer, seed_other_roles, send
from tests.support.services import RedisServer

KS = Keyspace("maqsafy")
NO_DOTENV = Path("/nonexistent/.env")


@dataclass
class Seeded:
    client: redis.Redis
    cache: cache.Cache
    consumer: Connection
    cache_keys: int


@pytest.fixture
def seeded(redis_server: RedisServer) -> Iterator[Seeded]:
    """Queues with waiting and unacked messages, sessions, locks, rate limits and cache keys."""
    client = redis_server.client()
    app = producer(redis_server.url)
    for n in range(5):
        send(app, "purchase.post", [n], "payments")
        send(app, "maintenance.memory", [], "maintenance", priority=6)
        send(app, "runbook.run", [f"book{n}"], "ops")
    consumer = hold_unacked(redis_server.url, "payments", 2)
    seed_other_roles(client, KS)
    store = cache.Cache(client, KS, default_ttl=600)
    for n in range(300):
        store.set("users", f"u{n}", {"n": n})
        store.set("menus", f"m{n}", [n, n])
    store.bump("menus")  # a generation counter: kept by every clear
    store.set("menus", "fresh", 1)
    yield Seeded(client, store, consumer, cache_keys=601)
    consumer.release()


def non_cache(dumps: dict[bytes, bytes | None]) -> dict[bytes, bytes | None]:
    return {k: v for k, v in dumps.items() if not k.startswith(b"maqsafy:cache:")}


def test_seed_holds_every_role(seeded: Seeded) -> None:
    roles = {KS.role_of(k.decode()) for k in seeded.client.scan_iter()}
    assert {"broker", "cache", "sessions", "ratelimit", "locks"} <= roles
    assert seeded.client.hlen("unacked") == 2
    assert seeded.client.zcard("unacked_index") == 2


def test_clear_leaves_every_non_cache_key_as_it_was(seeded: Seeded) -> None:
    before = dump_all(seeded.client)

    report = cache.clear(seeded.client, KS, batch=50)

    after = dump_all(seeded.client)
    assert report.deleted == seeded.cache_keys
    assert report.method == "scan-unlink"
    assert non_cache(after) == non_cache(before)
    left = [k for k in after if k.startswith(b"maqsafy:cache:")]
    assert left == [b"maqsafy:cache:_gen:menus"]
    assert seeded.cache.get("users", "u1") is None


def test_check_changes_nothing_and_counts(seeded: Seeded) -> None:
    before = dump_all(seeded.client)

    report = cache.clear(seeded.client, KS, check=True, batch=50)

    assert dump_all(seeded.client) == before
    assert (report.matched, report.deleted, report.method) == (seeded.cache_keys, 0, "check")


def test_namespace_clear_only_touches_that_namespace(seeded: Seeded) -> None:
    report = cache.clear(seeded.client, KS, namespace="users")

    assert report.deleted == 300
    assert seeded.cache.get("menus", "fresh") == 1
    assert seeded.cache.get("users", "u7") is None


def test_cache_pattern_is_allowed(seeded: Seeded) -> None:
    report = cache.clear(seeded.client, KS, pattern="maqsafy:cache:users:*:u1*")
    assert report.deleted == 111  # u1, u10-u19, u100-u199
    assert seeded.cache.get("users", "u2") == {"n": 2}


@pytest.mark.parametrize(
    "pattern",
    [
        "*",
        "maqsafy:*",
        "maqsafy:c*",
        "maqsafy:cache*",
        "unacked*",
        "payments*",
        "_kombu.*",
        "maqsafy:session:*",
        "maqsafy:lock:*",
        "maqsafy:rl:*",
        "maqsafy:fence:*",
        "[m]aqsafy:cache:*",
    ],
)
def test_patterns_reaching_other_roles_are_refused(seeded: Seeded, pattern: str) -> None:
    before = dump_all(seeded.client)
    with pytest.raises(Refused, match="maqsafy:cache:"):
        cache.clear(seeded.client, KS, pattern=pattern)
    assert dump_all(seeded.client) == before


def test_bad_namespace_is_an_error(seeded: Seeded) -> None:
    with pytest.raises(InvalidRequest):
        cache.clear(seeded.client, KS, namespace="*")


def test_progress_is_reported_for_a_large_clear(seeded: Seeded) -> None:
    seen: list[int] = []
    cache.clear(seeded.client, KS, batch=100, progress=seen.append, progress_every=100)
    assert seen and seen == sorted(seen) and seen[-1] <= seeded.cache_keys


def test_generation_bump_hides_old_values(seeded: Seeded) -> None:
    assert seeded.cache.get("users", "u3") == {"n": 3}
    seeded.cache.bump("users")
    assert seeded.cache.get("users", "u3") is None
    assert seeded.cache.remember("users", "u3", lambda: {"n": 33}) == {"n": 33}
    assert seeded.cache.get("users", "u3") == {"n": 33}


def test_cache_api_sets_ttls(redis_server: RedisServer) -> None:
    client = redis_server.client()
    store = cache.Cache(client, KS, default_ttl=600)
    store.set("ns", "k", {"a": 1})
    store.set("ns", "short", 1, ttl=5)
    assert 0 < client.ttl(store.key("ns", "k")) <= 600
    assert 0 < client.ttl(store.key("ns", "short")) <= 5
    assert store.delete("ns", "k") and not store.delete("ns", "k")
    with pytest.raises(InvalidRequest):
        store.set("ns", "k", 1, ttl=0)


def test_flushdb_only_on_a_database_proven_to_hold_only_cache(redis_server: RedisServer) -> None:
    settings = load_settings(
        environ={
            "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
            "REDIS_CACHE_URL": f"redis://127.0.0.1:{redis_server.port}/1",
        },
        dotenv=NO_DOTENV,
    )
    assert cache.dedicated_cache_db(settings)
    shared = redis_server.client(db=0)
    seed_other_roles(shared, KS)
    before = dump_all(shared)
    own = redis_server.client(db=1)
    store = cache.Cache(own, KS)
    for n in range(100):
        store.set("users", str(n), n)
    own.set("maqsafy:session:stray", "x")  # a non-cache key in the cache's database

    report = cache.clear(own, KS, dedicated=True)
    assert report.method == "scan-unlink"
    assert own.get("maqsafy:session:stray") == b"x"

    own.delete("maqsafy:session:stray")
    store.set("users", "again", 1)
    report = cache.clear(own, KS, dedicated=True)
    assert report.method == "flushdb-async"
    assert own.dbsize() == 0
    assert dump_all(shared) == before


def test_shared_database_is_never_flushed(redis_server: RedisServer) -> None:
    settings = load_settings(
        environ={"REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0"}, dotenv=NO_DOTENV
    )
    assert not cache.dedicated_cache_db(settings)


def test_clear_without_scripting_uses_plain_commands(
    seeded: Seeded, redis_server: RedisServer
) -> None:
    seeded.client.acl_setuser(
        "cacheop", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-@scripting"]
    )
    restricted = redis.Redis(port=redis_server.port, username="cacheop", password="")
    with pytest.raises(redis.exceptions.NoPermissionError):
        restricted.eval("return 1", 0)
    before = dump_all(seeded.client)

    check = cache.clear(restricted, KS, check=True, batch=50)
    assert dump_all(seeded.client) == before
    report = cache.clear(restricted, KS, batch=50)

    assert check.matched == report.deleted == seeded.cache_keys
    assert non_cache(dump_all(seeded.client)) == non_cache(before)


def test_dedicated_db_without_flushdb_permission_scans_instead(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    admin.acl_setuser(
        "app", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-@dangerous"]
    )
    own = redis.Redis(port=redis_server.port, db=1, username="app", password="")
    store = cache.Cache(own, KS)
    for n in range(50):
        store.set("users", str(n), n)
    assert cache.only_cache_keys(own, KS) == 50  # proven cache-only: FLUSHDB would be tried
    with pytest.raises(redis.exceptions.NoPermissionError):
        own.flushdb(asynchronous=True)

    report = cache.clear(own, KS, dedicated=True)

    assert (report.method, report.deleted) == ("scan-unlink", 50)
    assert own.dbsize() == 0
