"""Pure rules of sessions, rate limits and login protection: no Redis needed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from celery_app.errors import ConfigError, InvalidRequest
from celery_app.infra.boundary import identifier
from celery_app.infra.keyspace import Keyspace
from celery_app.stores.login import ACCOUNT_POLICY, ASVS_FAILURES_PER_HOUR, LoginPolicy, subject
from celery_app.stores.ratelimit import TOPUP_QUOTA, Quota, parse_key
from celery_app.stores.sessions import SessionPolicy, session_id

KS = Keyspace("maqsafy")


@pytest.mark.parametrize(
    ("limit", "period"), [(1, 1), (3, 1), (7, 3600), (100, 3600), (10**6, 0.5), (10, 1e-3)]
)
def test_quota_interval_never_admits_more_than_the_limit_per_period(
    limit: int, period: float
) -> None:
    quota = Quota(limit, period)
    assert quota.interval_us * limit >= period * 1_000_000  # the long-run rate never exceeds it
    assert quota.tolerance_us == quota.interval_us * limit  # the burst is exactly `limit`


@pytest.mark.parametrize(("limit", "period"), [(0, 1), (-1, 1), (1, 0), (1, -5)])
def test_quota_rejects_nonsense(limit: int, period: float) -> None:
    with pytest.raises(InvalidRequest, match="quota"):
        Quota(limit, period)


@pytest.mark.parametrize(
    ("policy", "per_hour"),
    [
        (LoginPolicy(100, 3600, 60), 100),
        (LoginPolicy(10, 900, 900), 40),
        (LoginPolicy(10, 1000, 900), 40),
        (LoginPolicy(5, 7200, 60), 5),
        (LoginPolicy(3, 1, 1), 10_800),
    ],
)
def test_failures_per_hour_bound(policy: LoginPolicy, per_hour: int) -> None:
    assert policy.failures_per_hour == per_hour


def test_default_account_policy_meets_owasp_asvs_2_2_1() -> None:
    assert ACCOUNT_POLICY.failures_per_hour <= ASVS_FAILURES_PER_HOUR
    assert ACCOUNT_POLICY.lockout >= ACCOUNT_POLICY.window  # the lockout is the window that rules
    assert TOPUP_QUOTA.limit >= 1


@pytest.mark.parametrize("args", [(0, 60, 60), (1, 0, 60), (1, 60, 0)])
def test_login_policy_rejects_nonsense(args: tuple[int, float, float]) -> None:
    with pytest.raises(ConfigError, match="login policy"):
        LoginPolicy(*args)


@pytest.mark.parametrize("good", ["u1", "42", 42, "parent.7@school", "a-b_c+d", "x" * 128])
def test_identifier_accepts_key_safe_ids(good: object) -> None:
    assert identifier(good, "user id") == str(good)


@pytest.mark.parametrize(
    "bad", ["", " ", "a b", "a:b", "a*", "-lead", "x" * 129, None, True, 1.5, "é", "a\nb"]
)
def test_identifier_rejects_anything_that_could_bend_a_key(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="user id must be"):
        identifier(bad, "user id")


def test_session_ids_and_policy_are_checked() -> None:
    assert session_id("A" * 43) == "A" * 43
    for bad in ["short", "A" * 42 + "*", "A" * 129, 12345]:
        with pytest.raises(InvalidRequest, match="session id"):
            session_id(bad)
    with pytest.raises(InvalidRequest, match="idle <= absolute"):
        SessionPolicy(idle=10, absolute=5)


def test_addresses_are_normalised_and_checked() -> None:
    assert subject("address", "2001:0db8:0:0:0:0:0:1") == "2001:db8::1"
    assert subject("address", " 10.0.0.1 ") == "10.0.0.1"
    with pytest.raises(InvalidRequest, match="IP address"):
        subject("address", "10.0.0.256")
    with pytest.raises(InvalidRequest, match="kind"):
        subject("device", "x")


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("topup:42", ("topup", "42")),
        ("maqsafy:rl:topup:42", ("topup", "42")),
        ("login:account:alice", ("login:account", "alice")),
        ("maqsafy:rl:login:account:alice:lock", ("login:account", "alice")),
        ("login:address:2001:db8::1:failures", ("login:address", "2001:db8::1")),
        ("login:address:2001:0db8::0001", ("login:address", "2001:db8::1")),
    ],
)
def test_operator_keys_parse(key: str, parsed: tuple[str, str]) -> None:
    assert parse_key(SimpleNamespace(keyspace=KS), key) == parsed


@pytest.mark.parametrize("key", ["", "topup:", "login:user:x", "cache:x", "maqsafy:lock:x"])
def test_unknown_operator_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidRequest, match="unknown rate-limit key"):
        parse_key(SimpleNamespace(keyspace=KS), key)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("topup:a b", "parent id must be"),
        ("login:address:1.2.3", "IP address"),
        ("login:account:*", "account must be"),
    ],
)
def test_operator_keys_with_bad_subjects_are_refused(key: str, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        parse_key(SimpleNamespace(keyspace=KS), key)


def test_every_key_these_services_write_has_its_documented_role() -> None:
    assert KS.role_of(KS.session("abc")) == "sessions"
    assert KS.role_of(KS.run_events(7)) == "broker"  # a run's live events, beside the queues
    assert KS.role_of(KS.session_index("u1")) == "sessions"
    assert KS.role_of(KS.ratelimit("topup:42")) == "ratelimit"
    assert KS.role_of(KS.ratelimit("login:account:alice:failures")) == "ratelimit"
    assert KS.role_of(KS.ratelimit("login:address:::1:lock")) == "ratelimit"
