"""The role users' rules, as data: exact keys, exact channels, and kombu's unacked keys per role."""

from __future__ import annotations

from pathlib import Path

import pytest

from celery_app.celery import transport_options
from celery_app.errors import InvalidRequest
from celery_app.ops import redis_acl
from celery_app.settings import load_settings

SCOPE = redis_acl.Scope()


def keys_of(rules: list[str]) -> list[str]:
    """Every key pattern a user's rules name, at the root and in its selectors."""
    words = [w.strip("()") for rule in rules for w in rule.split()]
    return [w.split("~", 1)[1] for w in words if "~" in w]


@pytest.mark.parametrize("role", [u.role for u in redis_acl.ROLE_USERS])
def test_no_role_names_a_queue_by_prefix(role: str) -> None:
    for key in keys_of(redis_acl.rules(role, SCOPE)):
        base = key.split("\x06\x16", 1)[0]
        assert base not in ("payments*", "maintenance*", "ops*", "*"), (role, key)
        if base in ("payments", "maintenance", "ops"):
            assert key == base or key[len(base) :] in ("\x06\x163", "\x06\x166", "\x06\x169")


def test_who_may_write_what() -> None:
    rules = {u.role: " ".join(redis_acl.rules(u.role, SCOPE)) for u in redis_acl.ROLE_USERS}
    assert "~ops " not in rules["producer"] + rules["worker"]
    assert "&" not in rules["producer"] and "+publish" not in rules["worker"] + rules["ops"]
    assert rules["admin"].count("&/0.celery.pidbox") == 1 and "+publish" in rules["admin"]
    assert "maqsafy:lock:deploy" not in rules["worker"]  # it locks accounts, reads other locks
    assert "~maqsafy:lock:account:*" in rules["worker"] and "%R~maqsafy:lock:*" in rules["worker"]
    assert "(~unacked " in rules["worker"] and "(~unacked " not in rules["ops"] + rules["admin"]
    assert "(~ops.unacked " in rules["ops"] and "%R~ops.unacked " in rules["admin"]
    for role, text in rules.items():
        assert "-@dangerous" in text or role == "ops", role
        assert "+@all" not in text and "allkeys" not in text and "allchannels" not in text


def test_select_is_allowed_only_for_the_configured_databases() -> None:
    urls = {"broker": "redis://h:6379/0", "cache": "redis://h:6379/2", "locks": "redis://h/0"}
    scope = redis_acl.scope_for(urls, "maqsafy")
    assert (scope.broker_db, scope.dbs) == (0, (0, 2))
    assert [r for r in redis_acl.rules("producer", scope) if "select" in r] == ["+select|2"]
    other = redis_acl.scope_for({"broker": "redis://h:6379/3"}, "maqsafy")
    assert other.control_channel == "/3.celery.pidbox"


def test_shown_rules_quote_what_redis_cli_would_split_or_mangle() -> None:
    assert redis_acl.as_redis_cli("~payments") == "~payments"
    assert redis_acl.as_redis_cli("~payments\x06\x163") == '"~payments\\x06\\x163"'
    assert redis_acl.as_redis_cli("(~a -@all +lpush)") == '"(~a -@all +lpush)"'


def test_roles_and_passwords_are_checked_before_anything() -> None:
    with pytest.raises(InvalidRequest, match="--role: unknown role 'x'; expected one of"):
        redis_acl.pick("x")
    users = redis_acl.pick("")
    with pytest.raises(InvalidRequest, match="MAQSAFY_REDIS_WORKER_PASSWORD, MAQSAFY_REDIS_OPS"):
        redis_acl.passwords(users, {"MAQSAFY_REDIS_PRODUCER_PASSWORD": "p"})


@pytest.mark.parametrize(
    ("user", "keys"),
    [
        ("", None),
        ("maqsafy-producer", None),
        ("maqsafy-worker", None),
        ("maqsafy-ops", ("ops.unacked", "ops.unacked_index", "ops.unacked_mutex")),
        ("maqsafy-admin", ("admin.unacked", "admin.unacked_index", "admin.unacked_mutex")),
    ],
)
def test_kombu_unacked_keys_follow_the_redis_user(
    tmp_path: Path, user: str, keys: tuple[str, ...] | None
) -> None:
    auth = f"{user}:pw@" if user else ""
    settings = load_settings(
        {"MAQSAFY_VAR_DIR": str(tmp_path), "REDIS_URL": f"redis://{auth}h:6379/0"},
        dotenv=tmp_path / "none",
    )
    options = transport_options(settings)
    assert options["visibility_timeout"] == settings.visibility_timeout
    names = ("unacked_key", "unacked_index_key", "unacked_mutex_key")
    assert tuple(options.get(k) for k in names) == (keys or (None, None, None))
