"""Sessions against a real redis-server: lifecycle, expiry, per-user revocation, bad input."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry

from celery_app.errors import InvalidRequest, ServiceUnavailable
from celery_app.infra.keyspace import Keyspace
from celery_app.stores.sessions import SessionPolicy, SessionStore
from tests.support.redis_app import app_env, history_names, invoke, migrated_app
from tests.support.services import RedisServer, wait_for

KS = Keyspace("maqsafy")


def store(server: RedisServer, **policy: float) -> SessionStore:
    return SessionStore(server.client(), KS, SessionPolicy(**policy) if policy else None)


def test_create_read_touch_destroy(redis_server: RedisServer) -> None:
    sessions = store(redis_server)
    made = sessions.create("parent-7", {"role": "parent", "school": 3})
    read = sessions.read(made.id)
    assert read == made
    assert made.created_at < made.expires_at <= made.absolute_at

    touched = sessions.touch(made)
    assert touched is not None and touched.expires_at >= made.expires_at

    assert sessions.destroy(made.id) is True
    assert sessions.read(made.id) is None
    assert sessions.destroy(made.id) is False
    assert sessions.count("parent-7") == {"sessions": 0, "users": 0}
    assert redis_server.client().dbsize() == 0  # the index went with its last session


def test_revoke_removes_every_session_of_that_user_and_no_other(
    redis_server: RedisServer,
) -> None:
    sessions = store(redis_server)
    leaked = [sessions.create("u-leaked") for _ in range(600)]  # more than one revoke batch
    others = [sessions.create(user) for user in ("u-other", "u-other", "u-leaked2")]

    assert sessions.revoke_user("u-leaked") == 600

    assert all(sessions.read(s.id) is None for s in leaked)
    for session in others:  # untouched; the expiry is re-read as TIME + PTTL (a 1 ms rounding)
        found = sessions.read(session.id)
        assert found is not None and abs(found.expires_at - session.expires_at) <= 1
        assert replace(found, expires_at=session.expires_at) == session
    assert sessions.count("u-leaked") == {"sessions": 0, "users": 0}
    assert sessions.count() == {"sessions": 3, "users": 2}
    assert not redis_server.client().exists(KS.session_index("u-leaked"))
    assert sessions.revoke_user("u-leaked") == 0


def test_expired_sessions_disappear_from_reads_counts_and_the_index(
    redis_server: RedisServer,
) -> None:
    sessions = store(redis_server, idle=0.2, absolute=60)
    client = redis_server.client()
    short = sessions.create("u1")
    wait_for(lambda: sessions.read(short.id) is None, 5, "the idle session to expire")

    kept = SessionStore(client, KS).create("u1")  # a long-lived one prunes the index on write
    assert client.zrange(KS.session_index("u1"), 0, -1) == [kept.id.encode()]
    assert sessions.count("u1") == {"sessions": 1, "users": 1}

    SessionStore(client, KS).destroy(kept.id)
    gone = sessions.create("u2")
    wait_for(lambda: client.dbsize() == 0, 5, "the session and its index to expire together")
    assert sessions.touch(gone) is None


def test_touch_never_extends_past_the_absolute_lifetime(redis_server: RedisServer) -> None:
    sessions = store(redis_server, idle=0.2, absolute=0.6)
    made = sessions.create("u1")
    renewed: list[int] = []

    def touched_until_gone() -> bool:
        touched = sessions.touch(made)
        if touched is not None:
            renewed.append(touched.expires_at)
        return touched is None

    wait_for(touched_until_gone, 5, "the absolute lifetime to end despite touches", every=0.02)
    assert all(expiry <= made.absolute_at for expiry in renewed)
    assert sessions.read(made.id) is None
    assert sessions.count("u1")["sessions"] == 0


@pytest.mark.parametrize("bad", ["", "a b", "a:b", "*", "x" * 129, None])
def test_bad_user_ids_are_refused_and_nothing_is_written(
    redis_server: RedisServer, bad: object
) -> None:
    sessions = store(redis_server)
    for call in (sessions.create, sessions.revoke_user, sessions.count):
        if bad is None and call == sessions.count:
            continue  # count(None) means "everyone"
        with pytest.raises(InvalidRequest, match="user id must be"):
            call(bad)
    with pytest.raises(InvalidRequest, match="JSON"):
        sessions.create("u1", {"when": time})
    with pytest.raises(InvalidRequest, match="session id"):
        sessions.read("../../etc")
    assert redis_server.client().dbsize() == 0


def test_a_dead_redis_is_reported_as_unavailable(redis_server: RedisServer) -> None:
    sessions = SessionStore(redis_server.client(retry=Retry(NoBackoff(), 0)), KS)
    redis_server.stop()
    with pytest.raises(ServiceUnavailable, match="session store"):
        sessions.create("u1")


def test_commands_count_revoke_record_it_and_refuse_bad_ids(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    sessions = store(redis_server)
    for user in ("u1", "u1", "u2"):
        sessions.create(user)
    env = app_env(tmp_path, redis_server.url)
    app = migrated_app(env)

    counted = invoke(env, "sessions.count", "--json")
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout) == {"user": None, "sessions": 3, "users": 2}

    revoked = invoke(env, "sessions.revoke", "--user", "u1", "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout) == {"user": "u1", "revoked": 2}
    assert sessions.count() == {"sessions": 1, "users": 1}

    before = redis_server.client().dbsize()
    refused = invoke(env, "sessions.revoke", "--user", "u1 OR 1=1")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0
    assert refused.stderr.startswith("error: user id must be")
    assert redis_server.client().dbsize() == before
    assert history_names(app) == [("sessions.revoke", "ok", {"user": "u1"})]
