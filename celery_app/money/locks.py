"""Per-account Redis locks whose grants carry a fencing token.

A lock keeps workers from contending for the same wallet; it is an efficiency measure, not the
guarantee. The guarantee is the fencing token: every grant takes the next value of a counter,
and the SQL transaction commits only if its token is above the highest one already committed on
that account (see :mod:`celery_app.money.posting`). A holder that stalled past its lock's expiry
carries a token lower than its successor's and is refused.

A grant costs one Redis round trip (one script: SET NX PX and INCR of the counter) and its
release none of its own. A grant may take other resources' locks in the same call, best effort
(:meth:`FencedLocks.hold` with `also`): each that is free is set to the same owner value and
shares the grant's token. Sharing is safe for fencing: every later grant on any of those
resources draws a higher token from the same counter. The release sends one script for all of
them: :meth:`FencedLocks.hold` sends the release script without waiting for
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

# KEYS: counter, the lock, then other locks to take if free. ARGV: owner, ttl_ms, how many of
# the others to take at most (the first free ones in order).
# Returns {1, token, i...} granted (i: 1-based positions among the other locks also taken),
# {0, pttl} held by another, {-1, 0} counter missing (seed it first).
# Tokens stay below 2**53 (Lua numbers are doubles): microseconds since 1970 do until 2255.
_ACQUIRE = """
if redis.call('exists', KEYS[1]) == 0 then return {-1, 0} end
if not redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('pttl', KEYS[2])}
end
local out = {1, redis.call('incr', KEYS[1])}
local most = tonumber(ARGV[3]) + 2
for i = 3, #KEYS do
  if #out == most then break end
  if redis.call('set', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then out[#out + 1] = i - 2 end
end
return out
"""
# KEYS: the grant's locks. ARGV: owner. Deletes those still ours; returns how many.
_RELEASE = """
local n = 0
for i = 1, #KEYS do
  if redis.call('get', KEYS[i]) == ARGV[1] then n = n + redis.call('del', KEYS[i]) end
end
return n
"""


@dataclass(frozen=True)
class Grant:
    """A held lock: its key, fencing token and the value that proves ownership.

    `also` are the other resources whose locks the same call took (same token, same value).
    """

    key: str
    token: int
    value: str
    also: tuple[str, ...] = ()


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

    def _run_acquire(self, keys: list[str], owner: str, most: int) -> Any:
        args = (len(keys) + 1, self._counter, *keys, owner, self.ttl_ms, most)
        try:
            return self._line().call("EVALSHA", self._acquire.sha, *args)
        except redis.exceptions.NoScriptError:
            return self._line().call("EVAL", _ACQUIRE, *args)

    def seed(self) -> int:
        """Seed a missing counter so it stays above every token ever issued; return the seed."""
        seed = max(self._sql_floor(), time.time_ns() // 1000)
        self._client.set(self._counter, seed, nx=True)
        return seed

    def try_acquire(
        self, resource: str, also: tuple[str, ...] = (), most: int | None = None
    ) -> Grant | None:
        """Take the lock once; None when another holds it.

        With it, the first `most` (default: all) of `also` whose locks are free.
        """
        key = self._lock_key(resource)
        owner = uuid.uuid4().hex
        keys = [key, *(self._lock_key(r) for r in also)]
        try:
            for _ in range(3):
                status, value, *taken = self._run_acquire(
                    keys, owner, len(also) if most is None else most
                )
                if status == -1:
                    self.seed()
                    continue
                if status == 1:
                    held = tuple(also[int(i) - 1] for i in taken)
                    return Grant(key=key, token=int(value), value=owner, also=held)
                return None
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"lock service (Redis) failed: {exc}") from exc
        raise LockError(f"could not seed the fencing counter {self._counter}")

    def acquire(
        self,
        resource: str,
        wait: float = 10.0,
        also: tuple[str, ...] = (),
        most: int | None = None,
    ) -> Grant:
        """Take the lock, waiting up to `wait` seconds with backoff; raise LockError after.

        The first `most` (default: all) of `also` whose locks are free are taken with it,
        never waited for.
        """
        deadline = time.monotonic() + wait
        pause = 0.002
        while True:
            grant = self.try_acquire(resource, also, most)
            if grant is not None:
                return grant
            if time.monotonic() >= deadline:
                raise LockError(f"lock on {resource} still held by another after {wait:.0f}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def release(self, grant: Grant) -> bool:
        """Release the lock if it is still ours; return whether it was."""
        try:
            return bool(self._line().call("EVAL", _RELEASE, *self._release_args(grant)))
        except redis.RedisError:
            return False  # it expires by itself; SQL's fence check is the guarantee

    def release_unanswered(self, grant: Grant) -> None:
        """Release the lock if it is still ours, without waiting for Redis to answer."""
        self._line().send("EVAL", _RELEASE, *self._release_args(grant))

    def _release_args(self, grant: Grant) -> tuple[Any, ...]:
        keys = (grant.key, *(self._lock_key(r) for r in grant.also))
        return (len(keys), *keys, grant.value)

    @contextmanager
    def hold(
        self,
        resource: str,
        wait: float = 10.0,
        also: tuple[str, ...] = (),
        most: int | None = None,
    ) -> Iterator[Grant]:
        """Hold the lock (and those of `also` it got) for the block; the release costs no wait."""
        grant = self.acquire(resource, wait, also, most)
        try:
            yield grant
        finally:
            self.release_unanswered(grant)
