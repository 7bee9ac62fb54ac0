"""Typed facts about a Redis server: where it is (from a URL) and what INFO and CONFIG say.

Facts only read. :func:`read_facts` needs INFO; CONFIG GET is optional because a least-privilege
ACL user may not run it (the facts then say ``config=None`` and the checks that need it say so).
No fact ever holds a password: :attr:`Endpoint.display` is the URL without its credentials.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from celery_app.inputs import natural

CONFIG_KEYS = (
    "save", "appendonly", "protected-mode", "bind", "port", "maxmemory-policy", "tls-port",
)  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    """A Redis location parsed from a redis://, rediss:// or unix:// URL."""

    scheme: str
    host: str  # empty for a unix socket
    port: int
    path: str  # the unix socket path; empty for TCP
    db: int
    username: str
    has_password: bool
    query: str = ""  # TLS options such as ssl_cert_reqs; never a secret

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        if parts.scheme == "unix":
            db = natural(query.get("db", ["0"])[0] or "0") or 0
            return cls("unix", "", 0, parts.path, db, parts.username or "", bool(parts.password))
        db_text = parts.path.strip("/") or query.get("db", ["0"])[0] or "0"
        return cls(
            parts.scheme,
            parts.hostname or "localhost",
            parts.port or 6379,
            "",
            natural(db_text) or 0,
            parts.username or "",
            bool(parts.password),
            parts.query,
        )

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def instance(self) -> str:
        """The server (not the database): roles on one instance share its memory and policy."""
        return f"unix://{self.path}" if self.scheme == "unix" else f"{self.host}:{self.port}"

    @property
    def anonymous_url(self) -> str:
        """The same server and database with no user and no password (as a stranger connects)."""
        if self.scheme == "unix":
            return f"unix://{self.path}?db={self.db}"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.host}:{self.port}/{self.db}{query}"

    @property
    def address(self) -> str:
        """host:port, or the unix socket's path."""
        return self.path if self.scheme == "unix" else f"{self.host}:{self.port}"

    @property
    def display(self) -> str:
        """The URL as it is safe to show: no password (a user name is kept)."""
        auth = f"{self.username}:********@" if self.has_password else ""
        if self.username and not self.has_password:
            auth = f"{self.username}@"
        if self.scheme == "unix":
            return f"unix://{auth}{self.path}?db={self.db}"
        return f"{self.scheme}://{auth}{self.host}:{self.port}/{self.db}"


def owner_only_socket(path: str) -> int | None:
    """The socket file's mode when only its owner may open it (the embedded default's
    ``--unixsocketperm 700``), else None (group or others may, or it cannot be read)."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return None
    return None if mode & 0o077 else mode


def client_for(url: str, timeout: float = 2.0) -> redis.Redis:
    """A client that fails fast: short timeouts, no retries (a diagnosis wants the first error)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def _number(info: dict[str, Any], key: str, default: float = 0) -> float:
    value = info.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class RedisFacts:
    """What one Redis server reports about itself."""

    version: str
    mode: str
    role: str  # master | slave
    uptime_seconds: int
    connected_clients: int
    blocked_clients: int
    rejected_connections: int
    used_memory: int
    maxmemory: int  # 0: no limit
    maxmemory_policy: str
    fragmentation_ratio: float
    evicted_keys: int
    aof_enabled: bool
    rdb_last_bgsave_ok: bool
    aof_last_write_ok: bool
    loading: bool
    config: dict[str, str] | None  # None: CONFIG GET was denied to this user
    used_memory_peak: int = 0  # the most used_memory has been since the server started

    @property
    def memory_ratio(self) -> float | None:
        """used_memory / maxmemory, or None when there is no limit."""
        return self.used_memory / self.maxmemory if self.maxmemory else None

    @property
    def rdb_saves(self) -> bool | None:
        """Whether RDB snapshots are configured (`save` not empty); None when CONFIG is denied."""
        if self.config is None or "save" not in self.config:
            return None
        return bool(self.config["save"].strip())

    @property
    def persistent(self) -> bool | None:
        """AOF on or RDB snapshots configured; None when unknowable and AOF is off."""
        if self.aof_enabled:
            return True
        return self.rdb_saves

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_config(client: redis.Redis) -> dict[str, str] | None:
    """CONFIG GET the settings the checks need; None when this user may not run CONFIG."""
    try:
        found: dict[str, str] = {}
        for key in CONFIG_KEYS:
            for name, value in client.config_get(key).items():
                found[_text(name)] = _text(value)
        return found
    except redis.exceptions.NoPermissionError:
        return None
    except redis.ResponseError as exc:  # renamed CONFIG command (rename-command CONFIG "")
        if "unknown command" in str(exc).lower():
            return None
        raise


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_info(info: dict[str, Any], config: dict[str, str] | None) -> RedisFacts:
    """Build facts from an INFO dict (redis-py's parsed form) and optional CONFIG values."""
    return RedisFacts(
        version=str(info.get("redis_version", "?")),
        mode=str(info.get("redis_mode", "standalone")),
        role=str(info.get("role", "master")),
        uptime_seconds=int(_number(info, "uptime_in_seconds")),
        connected_clients=int(_number(info, "connected_clients")),
        blocked_clients=int(_number(info, "blocked_clients")),
        rejected_connections=int(_number(info, "rejected_connections")),
        used_memory=int(_number(info, "used_memory")),
        maxmemory=int(_number(info, "maxmemory")),
        maxmemory_policy=str(info.get("maxmemory_policy", "noeviction")),
        fragmentation_ratio=_number(info, "mem_fragmentation_ratio", 1.0),
        evicted_keys=int(_number(info, "evicted_keys")),
        aof_enabled=bool(int(_number(info, "aof_enabled"))),
        rdb_last_bgsave_ok=str(info.get("rdb_last_bgsave_status", "ok")) == "ok",
        aof_last_write_ok=str(info.get("aof_last_write_status", "ok")) == "ok",
        loading=bool(int(_number(info, "loading"))),
        config=config,
        used_memory_peak=int(_number(info, "used_memory_peak")),
    )


def read_facts(client: redis.Redis) -> RedisFacts:
    """Read INFO (required) and CONFIG (when allowed); redis errors propagate to the caller."""
    return parse_info(client.info(), read_config(client))
