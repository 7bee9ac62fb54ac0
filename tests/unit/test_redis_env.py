"""Which Redis an inventory environment names (`--env`): pure rules, no service."""

from __future__ import annotations

import pytest

from runbooks.errors import NotFound
from runbooks.reach.redis import REDIS_VARIABLES, redis_environ


def test_a_url_wins() -> None:
    assert redis_environ("x", {"redis_url": "redis://r:6379/2", "redis_host": "h"}) == {
        "REDIS_URL": "redis://r:6379/2"
    }


def test_host_port_and_password() -> None:
    assert redis_environ("x", {"redis_host": "h", "redis_port": 6380, "redis_password": "p"}) == {
        "REDIS_HOST": "h",
        "REDIS_PORT": "6380",
        "REDIS_PASSWORD": "p",
    }
    assert redis_environ("x", {"redis_host": "h", "redis_password": ""}) == {
        "REDIS_HOST": "h",
        "REDIS_PORT": "6379",
    }


def test_an_environment_without_redis_is_refused() -> None:
    with pytest.raises(NotFound, match="environment 'x' names no Redis"):
        redis_environ("x", {"celery_queues": "ops"})


def test_the_environments_superuser_replaces_this_machines() -> None:
    vars = {"redis_url": "redis://maqsafy-admin:a@r:6379/0", "redis_superuser_url": "redis://:s@r"}
    assert redis_environ("x", vars) == {
        "REDIS_URL": "redis://maqsafy-admin:a@r:6379/0",
        "MAQSAFY_REDIS_SUPERUSER_URL": "redis://:s@r",
    }
    assert "MAQSAFY_REDIS_SUPERUSER_URL" in REDIS_VARIABLES  # never kept from this machine
