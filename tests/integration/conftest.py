"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.money import MoneyEnv, money_env
from tests.support.services import RedisServer


@pytest.fixture
def money(tmp_path: Path, redis_server: RedisServer, database_url: str) -> Iterator[MoneyEnv]:
    """A money environment on the test's Redis and `database_url` (SQLite and PostgreSQL)."""
    env = money_env(tmp_path, redis_server.url, database_url)
    yield env
    env.close()
