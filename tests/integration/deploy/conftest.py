"""Fixtures for deploy tests: sshd hosts (the session's fleet), a repo with v1 and v2, money."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.deploy import Fleet, make_fleet, make_repo
from tests.support.money import MoneyEnv, money_env
from tests.support.services import RedisServer, create_pg_database
from tests.support.sshd import SSHHost, sshd_fleet, sshd_hosts

__all__ = ["sshd_fleet", "sshd_hosts"]


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="session")
def deps_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where deploys keep the dependency layer's tarball: built once for the whole session."""
    return tmp_path_factory.mktemp("deps-cache")


@pytest.fixture
def money(tmp_path: Path, redis_server: RedisServer) -> Iterator[MoneyEnv]:
    """Money on PostgreSQL (workers on several hosts write at once) and the test's Redis."""
    url, drop = create_pg_database()
    env = money_env(tmp_path, redis_server.url, url)
    yield env
    env.close()
    drop()


@pytest.fixture
def fleets(
    tmp_path: Path,
    sshd_hosts: list[SSHHost],
    redis_server: RedisServer,
    money: MoneyEnv,
    deps_cache: Path,
) -> Iterator[Callable[[int], Fleet]]:
    """`fleets(n)`: the session's first n sshd hosts as the `test` environment's workers."""
    made: list[Fleet] = []

    def make(count: int) -> Fleet:
        made.append(
            make_fleet(
                tmp_path / "inventory",
                sshd_hosts[:count],
                redis_server.url,
                money.env["DATABASE_URL"],
                deps_cache=deps_cache,
            )
        )
        return made[-1]

    yield make
    for fleet in made:
        fleet.kill_workers()


@pytest.fixture
def fleet(fleets: Callable[[int], Fleet]) -> Fleet:
    """Three of the session's sshd hosts as the `test` environment's workers."""
    return fleets(3)
