"""Rate limits and login protection against a real redis-server, under concurrent clients."""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from celery_app.errors import ConfigError, InvalidRequest, RateLimited
from celery_app.infra.keyspace import Keyspace
from celery_app.stores import ratelimit
from celery_app.stores.login import LoginGuard, LoginPolicy
from celery_app.stores.ratelimit import Quota, RateLimiter, TopUpThrottle, check_top_up
from tests.support.redis_app import app_env, build_app, history_names, invoke, migrated_app
from tests.support.services import RedisServer, wait_for

KS = Keyspace("maqsafy")
HOUR = 3600.0


def guard(
    server: RedisServer, account: LoginPolicy, address: LoginPolicy | None = None
) -> LoginGuard:
    return LoginGuard(
        server.client(), KS, account, address or LoginPolicy(1000, HOUR, HOUR), asvs=False
    )


def wait_until(deadline_in: float) -> None:
    """Sleep until a deadline the limiter itself reported (not a guess)."""
    time.sleep(max(0.0, deadline_in))


def test_burst_then_refusal_with_time_left_and_remaining(redis_server: RedisServer) -> None:
    limiter = RateLimiter(redis_server.client(), KS, "api", Quota(5, HOUR))
    decisions = [limiter.hit("p1") for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
    refused = decisions[-1]
    assert 0 < refused.retry_after <= HOUR / 5
    assert limiter.hit("p2").allowed  # subjects are independent


def test_peek_spends_nothing_and_reset_restores_the_allowance(redis_server: RedisServer) -> None:
    client = redis_server.client()
    limiter = RateLimiter(client, KS, "api", Quota(2, HOUR))
    assert limiter.peek("p1").remaining == 2
    assert client.dbsize() == 0
    limiter.hit("p1")
    limiter.hit("p1")
    assert not limiter.peek("p1").allowed
    assert limiter.reset("p1") is True
    assert limiter.peek("p1").allowed and limiter.hit("p1").remaining == 1


def test_a_refused_subject_is_allowed_again_when_the_limiter_said(
    redis_server: RedisServer,
) -> None:
    limiter = RateLimiter(redis_server.client(), KS, "api", Quota(2, 0.5))
    limiter.hit("p1")
    limiter.hit("p1")
    refused = limiter.hit("p1")
    assert not refused.allowed
    wait_until(refused.retry_after)
    wait_for(lambda: limiter.hit("p1").allowed, 5, "the limiter to admit again")
    wait_for(lambda: not redis_server.client().exists(limiter.key("p1")), 5, "the key to expire")


def _hammer(port: int, hits: int) -> int:
    limiter = RateLimiter(redis.Redis(port=port), KS, "topup", Quota(100, HOUR))
    return sum(limiter.hit("parent-1").allowed for _ in range(hits))


def test_threads_never_over_admit(redis_server: RedisServer) -> None:
    with ThreadPoolExecutor(8) as pool:
        admitted = sum(pool.map(_hammer, [redis_server.port] * 8, [40] * 8))
    assert admitted == 100


def test_processes_never_over_admit(redis_server: RedisServer) -> None:
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=spawn) as pool:
        admitted = sum(pool.map(_hammer, [redis_server.port] * 4, [60] * 4))
    assert admitted == 100


def test_top_up_throttle_raises_with_retry_after(redis_server: RedisServer, tmp_path: Path) -> None:
    app = build_app(app_env(tmp_path, redis_server.url))
    throttle = TopUpThrottle.from_container(app, Quota(2, HOUR))
    throttle.enforce(42)
    assert throttle.enforce("42").remaining == 0  # int and str ids name the same parent
    with pytest.raises(RateLimited, match="too many top-ups for parent 42") as refused:
        throttle.enforce(42)
    assert 0 < refused.value.retry_after <= HOUR / 2
    assert check_top_up(7, app).allowed
    with pytest.raises(InvalidRequest, match="subject must be"):
        check_top_up("7; DEL *", app)


def test_lockout_starts_at_the_threshold_attempt(redis_server: RedisServer) -> None:
    logins = guard(redis_server, LoginPolicy(3, HOUR, HOUR))
    attempts = [logins.attempt("alice", "10.0.0.1") for _ in range(3)]
    assert all(a.allowed for a in attempts)
    assert [a.account_failures for a in attempts] == [1, 2, 3]
    refused = logins.attempt("alice", "10.0.0.1")
    assert not refused.allowed and refused.account_failures == 3  # refusals are not counted
    assert HOUR - 60 < refused.retry_after <= HOUR
    assert logins.status("account", "alice")["locked"] is True
    assert logins.attempt("bob", "10.0.0.1").allowed  # the lock is per account


def test_lockout_ends_when_its_window_does(redis_server: RedisServer) -> None:
    logins = guard(redis_server, LoginPolicy(3, 1.5, 2.0))
    for _ in range(3):
        assert logins.attempt("alice", "10.0.0.1").allowed
    refused = logins.attempt("alice", "10.0.0.1")
    assert not refused.allowed
    assert 0 < refused.retry_after <= 2.0
    status = logins.status("account", "alice")
    assert status["locked"] and status["lockout_left"] <= 2.0

    wait_until(refused.retry_after)
    wait_for(lambda: not logins.status("account", "alice")["locked"], 5, "the lockout to end")
    after = logins.attempt("alice", "10.0.0.1")
    assert after.allowed and after.account_failures == 1  # old failures aged out of the window


def test_success_forgets_account_failures_but_not_the_address(redis_server: RedisServer) -> None:
    logins = guard(redis_server, LoginPolicy(3, HOUR, HOUR), LoginPolicy(4, HOUR, HOUR))
    logins.attempt("alice", "10.0.0.1")
    logins.attempt("alice", "10.0.0.1")
    ok = logins.attempt("alice", "10.0.0.1")
    logins.succeeded(ok)  # the third attempt had locked alice; success unlocks her
    assert logins.status("account", "alice") | {"window": 0} == {
        "kind": "account",
        "subject": "alice",
        "failures": 0,
        "max_failures": 3,
        "window": 0,
        "locked": False,
        "lockout_left": 0.0,
        "retry_after": 0.0,
    }
    assert logins.status("address", "10.0.0.1")["failures"] == 2  # only the success un-counted
    logins.attempt("a", "10.0.0.1")
    logins.attempt("b", "10.0.0.1")  # the address reaches 4 failures: locked
    refused = logins.attempt("c", "10.0.0.1")
    assert not refused.allowed
    with pytest.raises(InvalidRequest, match="only an allowed attempt"):
        logins.succeeded(refused)


def test_an_address_is_locked_across_accounts(redis_server: RedisServer) -> None:
    logins = guard(redis_server, LoginPolicy(10, HOUR, HOUR), LoginPolicy(3, HOUR, HOUR))
    for account in ("a1", "a2", "a3"):
        assert logins.attempt(account, "192.0.2.7").allowed
    refused = logins.attempt("a4", "192.0.2.7")
    assert not refused.allowed and refused.account_failures == 0
    assert logins.attempt("a4", "192.0.2.8").allowed


def test_concurrent_guesses_never_exceed_the_account_limit(redis_server: RedisServer) -> None:
    def guesses(n: int) -> int:
        logins = guard(redis_server, LoginPolicy(20, HOUR, HOUR))
        return sum(logins.attempt("victim", f"10.1.0.{n}").allowed for _ in range(10))

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(guesses, range(8))) == 20


def test_reset_unlocks_by_operator_key(redis_server: RedisServer, tmp_path: Path) -> None:
    app = build_app(app_env(tmp_path, redis_server.url))
    logins = LoginGuard.from_container(app)
    while logins.attempt("alice", "10.0.0.1").allowed:
        pass
    assert ratelimit.show(app, "login:account:alice")["locked"] is True
    assert ratelimit.reset(app, "login:account:alice")["cleared"] is True
    assert logins.attempt("alice", "10.0.0.1").allowed
    assert ratelimit.reset(app, "login:account:nobody")["cleared"] is False


def test_account_policy_beyond_asvs_is_refused(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigError, match=r"ASVS 2\.2\.1"):
        LoginGuard(redis_server.client(), KS, LoginPolicy(101, HOUR, HOUR))
    with pytest.raises(ConfigError, match=r"ASVS 2\.2\.1"):
        LoginGuard(redis_server.client(), KS, LoginPolicy(30, 900, 900))


def test_commands_show_reset_record_it_and_refuse_bad_keys(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = app_env(tmp_path, redis_server.url)
    app = migrated_app(env)
    limiter = TopUpThrottle.from_container(app)
    limiter.check(9)

    shown = invoke(env, "ratelimit.show", "topup:9", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["remaining"] == limiter.limiter.quota.limit - 1

    reset = invoke(env, "ratelimit.reset", "maqsafy:rl:topup:9")
    assert (reset.returncode, reset.stdout.strip()) == (0, "topup 9: cleared")
    assert redis_server.client().dbsize() == 0

    for bad, why in [("session:x", "unknown rate-limit key"), ("login:address:1.2.3", "IP")]:
        refused = invoke(env, "ratelimit.reset", bad)
        assert refused.returncode == 2
        assert refused.stderr.startswith("error: ") and why in refused.stderr
        assert refused.stderr.strip().count("\n") == 0
    assert history_names(app) == [("ratelimit.reset", "ok", {"key": "topup:9"})]
