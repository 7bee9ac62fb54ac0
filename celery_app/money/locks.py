"""Per-account Redis locks whose grants carry a fencing token.

A lock keeps workers from contending for the same wallet; it is an efficiency measure, not the
guarantee. The guarantee is the fencing token: every grant takes the next value of a counter,
and the SQL transaction commits only if its token is above the highest one already committed on
that account (see :mod:`celery_app.money.posting`). A holder that stalled past its lock's expiry
carries a token lower than its successor's and is refused.

A grant costs one Redis round trip (one script: SET NX PX and INCR of the counter) and its
release none of its own: :meth:`FencedLocks.hold` sends the release script without waiting for
its answer, on a connection this thread keeps, and the answer is read before that connection's
next command. Redis runs the release as soon as it arrives, so the lock is free at once; if the
answer says it was no longer ours, or the connection broke, nothing is lost: the lock expires
by itself and the fence is the guarantee.

The counter must stay monotonic when Redis loses its data. When the counter key is missing it is
re-seeded with max(highest token SQL has seen, microseconds since the epoch): tokens issued before
the loss stay below the new seed as long as fewer than one token per microsecond was issued on
average since the previous seed, which no Redis lock service comes near.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from celery_app.errors import LockError, ServiceUnavailable

# KEYS: lock, counter. ARGV: owner, ttl_ms. Returns {status, token_or_pttl}:
# status 1 granted, 0 held by another (pttl), -1 counter missing (seed it first).
# Tokens stay below 2**53 (Lua numbers are doubles): microseconds since 1970 do until 2255.
_ACQUIRE = """
if redis.call('exists', KEYS[2]) == 0 then return {-1, 0} end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('incr', KEYS[2])}
end
return {0, redis.call('pttl', KEYS[1])}
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Grant:
    """A held lock: its key, fencing token and the value that proves ownership."""

    key: str
    token: int
    value: str


class _Line:
    """One thread's own Redis connection, with the answers it has not read yet."""

    def __init__(self, client: redis.Redis) -> None:
        self.pid = os.getpid()
        self.conn = client.connection_pool.get_connection()
        self.unread = 0

    def settle(self) -> None:
        """Read (and drop) the answers of commands sent without waiting."""
        while self.unread:
            self.unread -= 1
            try:
                self.conn.read_response()
            except (redis.ConnectionError, redis.TimeoutError):
                self.conn.disconnect()
                self.unread = 0
            except redis.ResponseError:
                pass  # a release that failed: the lock expires by itself

    def call(self, *args: Any) -> Any:
        """Send one command and return its answer; once more on a fresh connection if broken."""
        self.settle()
        try:
            self.conn.send_command(*args)
            return self.conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            self.conn.disconnect()
        self.conn.send_command(*args)
        return self.conn.read_response()

    def send(self, *args: Any) -> None:
        """Send one command without waiting for its answer."""
        self.settle()
        try:
            self.conn.send_command(*args)
            self.unread += 1
        except (redis.ConnectionError, redis.TimeoutError):
            self.conn.disconnect()


class FencedLocks:
    """Acquire and release per-resource locks with monotonic fencing tokens."""

    def __init__(
        self,
        client: redis.Redis,
        lock_key: Callable[[str], str],
        counter_key: str,
        sql_floor: Callable[[], int],
        ttl_ms: int = 10_000,
    ) -> None:
        self._client = client
        self._lock_key = lock_key
        self._counter = counter_key
        self._sql_floor = sql_floor
        self.ttl_ms = ttl_ms
        self._acquire = client.register_script(_ACQUIRE)
        self._local = threading.local()

    def _line(self) -> _Line:
        line: _Line | None = getattr(self._local, "line", None)
        if line is None or line.pid != os.getpid():  # a forked child opens its own
            line = self._local.line = _Line(self._client)
        return line

    def _run_acquire(self, key: str, owner: str) -> Any:
        args = (2, key, self._counter, owner, self.ttl_ms)
        try:
            return self._line().call("EVALSHA", self._acquire.sha, *args)
        except redis.exceptions.NoScriptError:
            return self._line().call("EVAL", _ACQUIRE, *args)

    def seed(self) -> int:
        """Seed a missing counter so it stays above every token ever issued; return the seed."""
        seed = max(self._sql_floor(), time.time_ns() // 1000)
        self._client.set(self._counter, seed, nx=True)
        return seed

    def try_acquire(self, resource: str) -> Grant | None:
        """Take the lock once; return the grant, or None when another holds it."""
        key = self._lock_key(resource)
        owner = uuid.uuid4().hex
        try:
            for _ in range(3):
                status, value = self._run_acquire(key, owner)
                if status == -1:
                    self.seed()
                    continue
                if status == 1:
                    return Grant(key=key, token=int(value), value=owner)
                return None
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"lock service (Redis) failed: {exc}") from exc
        raise LockError(f"could not seed the fencing counter {self._counter}")

    def acquire(self, resource: str, wait: float = 10.0) -> Grant:
        """Take the lock, waiting up to `wait` seconds with backoff; raise LockError after."""
        deadline = time.monotonic() + wait
        pause = 0.002
        while True:
            grant = self.try_acquire(resource)
            if grant is not None:
                return grant
            if time.monotonic() >= deadline:
                raise LockError(f"lock on {resource} still held by another after {wait:.0f}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def release(self, grant: Grant) -> bool:
        """Release the lock if it is still ours; return whether it was."""
        try:
            return bool(self._line().call("EVAL", _RELEASE, 1, grant.key, grant.value))
        except redis.RedisError:
            return False  # it expires by itself; SQL's fence check is the guarantee

    def release_unanswered(self, grant: Grant) -> None:
        """Release the lock if it is still ours, without waiting for Redis to answer."""
        self._line().send("EVAL", _RELEASE, 1, grant.key, grant.value)

    @contextmanager
    def hold(self, resource: str, wait: float = 10.0) -> Iterator[Grant]:
        """Hold the lock for the block; its release costs no wait (see the module's text)."""
        grant = self.acquire(resource, wait)
        try:
            yield grant
        finally:
            self.release_unanswered(grant)
