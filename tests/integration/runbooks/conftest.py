"""Fixtures for the runbook tests: real sshd hosts, an inventory for them, a wired app."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celery_app import bootstrap
from celery_app.infra import migrate
from celery_app.settings import load_settings
from tests.support.services import RedisServer, start_redis
from tests.support.sshd import SSHHost, sshd_fleet, sshd_hosts, write_inventory

__all__ = ["sshd_fleet", "sshd_hosts"]


@pytest.fixture
def inventory_dir(tmp_path: Path, sshd_hosts: list[SSHHost]) -> Path:
    """inventory/test.yml listing the sshd hosts (group `all`)."""
    directory = tmp_path / "inventory"
    write_inventory(directory, "test", sshd_hosts)
    return directory


def make_app(database_url: str, var_dir: Path, **environ: str) -> Any:
    """A wired container on `database_url`, migrated."""
    settings = load_settings(
        {"MAQSAFY_VAR_DIR": str(var_dir), "DATABASE_URL": database_url, **environ},
        dotenv=var_dir / "absent.env",
    )
    app = bootstrap.build(settings)
    migrate.upgrade(app.engine)
    return app


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """The app on SQLite and on PostgreSQL (the `database_url` fixture's params)."""
    container = make_app(database_url, tmp_path / "var")
    yield container
    container.engine.dispose()


@pytest.fixture
def redis_server_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server that requires a generated password."""
    server = start_redis(tmp_path / "redis", password="rb-" + secrets.token_hex(12))
    yield server
    server.stop()
