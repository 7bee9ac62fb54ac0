"""One deploy at a time per environment: a lock in the environment's Redis, with a heartbeat.

Why Redis and not SQL: every operator's laptop reaches the environment's Redis (the deploy
already needs it for the health gate), while the SQL database the laptop records history in is
its own; and Redis expires a key by itself, so a deploy whose laptop died leaves no lock past
its TTL without any sweeper. The key is ``<prefix>:lock:deploy:<env>`` (the locks role), its
value names the owner, the host they deploy from, since when, and a random token. A running
deploy renews the TTL every third of it (only while the token is still its own); Ctrl-C or a
failure releases it; a kill -9 or a dead laptop leaves it to expire. ``deploy.unlock`` deletes
it whoever holds it (and the command is recorded).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Any

import redis

from runbooks.errors import RunbookError

DEFAULT_TTL = 60.0

# Renew or delete only while the value is still ours (another deploy may hold it by now).
_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call({}) end return 0"
_RENEW = _OURS.format("'pexpire', KEYS[1], ARGV[2]")
_RELEASE = _OURS.format("'del', KEYS[1]")


class DeployLocked(RunbookError):
    """Another deploy holds the environment's lock."""


@dataclass(frozen=True)
class Holder:
    """Who holds a deploy lock."""

    owner: str
    host: str
    since: str
    release: str
    token: str

    def describe(self, environment: str) -> str:
        return (
            f"{environment} is being deployed by {self.owner} (from {self.host}) since "
            f"{self.since}, release {self.release or '?'}"
        )

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if k != "token"}


def _decode(raw: Any) -> Holder | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return Holder(
            str(data["owner"]),
            str(data["host"]),
            str(data["since"]),
            str(data.get("release", "")),
            str(data["token"]),
        )
    except (ValueError, KeyError, TypeError):
        return Holder("unknown", "unknown", "unknown", "", "")


class DeployLock:
    """`acquire()` or raise DeployLocked naming the holder; a heartbeat keeps it while running."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        environment: str,
        owner: str,
        release: str = "",
        ttl: float = DEFAULT_TTL,
    ) -> None:
        self.client = client
        self.key = key
        self.environment = environment
        self.ttl_ms = max(1000, int(ttl * 1000))
        self.holder = Holder(
            owner,
            socket.gethostname(),
            dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            release,
            secrets.token_hex(16),
        )
        self._value = json.dumps(self.holder.__dict__)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def current(self) -> Holder | None:
        return _decode(self.client.get(self.key))

    def acquire(self) -> None:
        if not self.client.set(self.key, self._value, nx=True, px=self.ttl_ms):
            holder = self.current()
            if holder is None:  # expired between SET and GET: try once more
                if self.client.set(self.key, self._value, nx=True, px=self.ttl_ms):
                    return self._start()
                holder = self.current()
            assert holder is not None
            raise DeployLocked(
                f"{holder.describe(self.environment)}; wait for it, or if it died run "
                f"`invoke deploy.unlock --env {self.environment}`"
            )
        self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="deploy-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.client.eval(_RENEW, 1, self.key, self._value, self.ttl_ms):
                    self.lost = True  # unlocked by force, or expired: do not take it back
                    return
            except redis.RedisError:
                continue  # a blip: the next beat retries before the TTL runs out

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(redis.RedisError):  # else it expires by itself
            self.client.eval(_RELEASE, 1, self.key, self._value)

    def __enter__(self) -> DeployLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def force_unlock(client: redis.Redis, key: str) -> Holder | None:
    """Delete the lock whoever holds it; return who held it (None: it was free)."""
    holder = _decode(client.get(key))
    client.delete(key)
    return holder
