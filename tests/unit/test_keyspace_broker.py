"""Every key a real kombu worker writes belongs to the broker role (seen under redis.acl's test)."""

from __future__ import annotations

import pytest

from celery_app.infra.keyspace import Keyspace


@pytest.mark.parametrize(
    "key",
    [
        "payments",
        "payments\x06\x163",
        "_kombu.binding.payments",
        "_kombu.binding_permanent.payments",
        "_kombu.binding_deadlines",
        "unacked",
        "unacked_index",
        "unacked_mutex",
        "ops.unacked",
        "ops.unacked_index",
        "admin.unacked_mutex",
        "w1@host.celery.pidbox",
        "w1@host.celery.pidbox\x06\x163",
        "9f1c2e7a-8a3b-4c1d-b7a2-3c4d5e6f7a8b.reply.celery.pidbox",
    ],
)
def test_broker_keys(key: str) -> None:
    assert Keyspace().role_of(key) == "broker"


def test_other_keys_stay_unknown() -> None:
    assert Keyspace().role_of("pidbox") == "unknown"
    assert Keyspace().role_of("someone:else") == "unknown"
