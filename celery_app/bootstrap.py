"""Wire the app in one place: settings, SQL engine, Redis clients, built once per process.

Nothing deeper reads the environment. Worker processes call :func:`reset` after forking so no
connection is shared across processes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from celery_app.errors import ConfigError
from celery_app.infra.db import UnitOfWork, make_engine
from celery_app.infra.embedded import ensure_embedded_redis
from celery_app.infra.keyspace import Keyspace
from celery_app.infra.private import private_dir
from celery_app.settings import Settings, load_settings


@dataclass(eq=False)  # hashed by identity, so per-container helpers can be memoised
class Container:
    """The process's wired dependencies."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keyspace: Keyspace
    _redis: dict[str, redis.Redis] = field(default_factory=dict)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessions)

    def redis(self, role: str) -> redis.Redis:
        """Return the client for a Redis role (broker, cache, sessions, ratelimit, locks)."""
        client = self._redis.get(role)
        if client is None:
            if self.settings.embedded_redis:
                ensure_embedded_redis(self.settings.var_dir)
            client = redis.Redis.from_url(
                self.settings.redis_url(role),
                socket_timeout=10,
                socket_connect_timeout=5,
                health_check_interval=30,
            )
            self._redis[role] = client
        return client


def make_var_dir(settings: Settings) -> None:
    """Create MAQSAFY_VAR_DIR if missing (0700: its files are this user's alone); ConfigError
    naming the variable when it cannot be."""
    try:
        private_dir(settings.var_dir)
    except OSError as exc:
        raise ConfigError(
            f"MAQSAFY_VAR_DIR: cannot create {str(settings.var_dir)!r}: {exc.strerror or exc}"
        ) from None


def build(settings: Settings | None = None) -> Container:
    """Build a container from `settings` (default: the environment)."""
    settings = settings or load_settings()
    if settings.database_is_sqlite:
        make_var_dir(settings)
    engine = make_engine(settings.database_url)
    return Container(
        settings=settings,
        engine=engine,
        sessions=sessionmaker(engine, expire_on_commit=False),
        keyspace=Keyspace(settings.key_prefix),
    )


@functools.cache
def get() -> Container:
    """Return this process's container, building it on first use."""
    return build()


def reset() -> None:
    """Forget the container (after a fork, or when tests change the environment)."""
    if get.cache_info().currsize:
        container = get()
        container.engine.dispose(close=False)
        for client in container._redis.values():
            client.close()
    get.cache_clear()
