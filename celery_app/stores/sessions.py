"""Store login sessions in Redis, with a per-user index so a user's sessions can be revoked at once.

Keys (see :mod:`celery_app.infra.keyspace`, role ``sessions``):

- ``<prefix>:session:<id>``: a HASH (``user``, ``created``, ``absolute``, ``data`` as JSON) whose
  Redis TTL is the session's expiry: the idle timeout, renewed by :meth:`SessionStore.touch`,
  never past the absolute lifetime.
- ``<prefix>:sessions:user:<user>``: a ZSET of that user's session ids scored by expiry (epoch
  ms). Every write prunes scores in the past, and the index itself expires with its newest
  session, so expired sessions leave the index without a sweeper.

Each write is one Lua script (atomic, one round trip) timed by the Redis clock, so app hosts with
skewed clocks agree on expiry. Scripts name every key they touch in KEYS.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import redis

from celery_app.errors import InvalidRequest
from celery_app.infra.boundary import identifier, redis_errors
from celery_app.infra.keyspace import Keyspace

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32,128}")
MAX_DATA_BYTES = 64 * 1024

# Shared Lua: the Redis clock in ms, and "prune the index, expire it with its newest member".
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(n)
  return string.format('%d', n)
end
local function tidy_index(index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', int(now))
  local newest = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if newest[2] then redis.call('PEXPIREAT', index, newest[2]) end
end
"""

# KEYS: session, index. ARGV: user, data, idle_ms, absolute_ms, session id.
_CREATE = (
    _PRELUDE
    + """
local now = now_ms()
local absolute = now + tonumber(ARGV[4])
local expires = math.min(now + tonumber(ARGV[3]), absolute)
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'created', int(now), 'absolute', int(absolute),
  'data', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], int(expires))
redis.call('ZADD', KEYS[2], int(expires), ARGV[5])
tidy_index(KEYS[2], now)
return {now, expires, absolute}
"""
)

# KEYS: session. Returns user, created, absolute, data, expires (ms), or {} when gone.
_READ = """
local f = redis.call('HMGET', KEYS[1], 'user', 'created', 'absolute', 'data')
local ttl = redis.call('PTTL', KEYS[1])
if not f[1] or ttl < 0 then return {} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {f[1], f[2], f[3], f[4], now + ttl}
"""

# KEYS: session, index. ARGV: user, idle_ms, session id. Returns the new expiry, or 0 when gone.
_TOUCH = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[1] then return 0 end
local now = now_ms()
local expires = math.min(now + tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[1], 'absolute')))
if expires <= now then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[3])
  return 0
end
redis.call('PEXPIREAT', KEYS[1], int(expires))
redis.call('ZADD', KEYS[2], int(expires), ARGV[3])
tidy_index(KEYS[2], now)
return expires
"""
)

# KEYS: index, then session keys. ARGV: user, then the matching session ids.
# Deletes the sessions that still belong to `user`; returns how many existed.
_REVOKE = (
    _PRELUDE
    + """
local removed = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'user') == ARGV[1] then
    removed = removed + redis.call('DEL', KEYS[i])
  end
  redis.call('ZREM', KEYS[1], ARGV[i])
end
tidy_index(KEYS[1], now_ms())
return removed
"""
)

# KEYS: index. Prunes expired ids, returns how many live sessions the user has.
_COUNT = (
    _PRELUDE
    + """
tidy_index(KEYS[1], now_ms())
return redis.call('ZCARD', KEYS[1])
"""
)


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lives: `idle` seconds without a touch, never beyond `absolute`."""

    idle: float = 30 * 60
    absolute: float = 12 * 60 * 60

    def __post_init__(self) -> None:
        if not 0 < self.idle <= self.absolute:
            raise InvalidRequest(
                f"session policy: need 0 < idle <= absolute, got idle={self.idle} "
                f"absolute={self.absolute}"
            )

    @property
    def idle_ms(self) -> int:
        return max(1, round(self.idle * 1000))

    @property
    def absolute_ms(self) -> int:
        return max(1, round(self.absolute * 1000))


@dataclass(frozen=True)
class Session:
    """One session; times are epoch milliseconds on the Redis clock."""

    id: str
    user_id: str
    created_at: int
    expires_at: int
    absolute_at: int
    data: dict[str, Any]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def session_id(value: object) -> str:
    """Return `value` if it is a well-formed session id, else raise InvalidRequest."""
    text = value if isinstance(value, str) else ""
    if not SESSION_ID.fullmatch(text):
        raise InvalidRequest(f"session id must be 32-128 URL-safe characters, got {value!r:.40}")
    return text


class SessionStore:
    """Create, read, touch, destroy and revoke sessions on the ``sessions`` Redis role."""

    def __init__(
        self, client: redis.Redis, keyspace: Keyspace, policy: SessionPolicy | None = None
    ) -> None:
        self.client = client
        self.keyspace = keyspace
        self.policy = policy or SessionPolicy()
        self._create = client.register_script(_CREATE)
        self._read = client.register_script(_READ)
        self._touch = client.register_script(_TOUCH)
        self._revoke = client.register_script(_REVOKE)
        self._count = client.register_script(_COUNT)

    @classmethod
    def from_container(cls, app: Any, policy: SessionPolicy | None = None) -> SessionStore:
        """Build the store on the container's ``sessions`` client and keyspace."""
        return cls(app.redis("sessions"), app.keyspace, policy)

    def create(self, user_id: object, data: dict[str, Any] | None = None) -> Session:
        """Start a session for `user_id` carrying `data` (a JSON object); return it."""
        user = identifier(user_id, "user id")
        try:
            payload = json.dumps(data or {}, separators=(",", ":"), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"session data must be JSON-serialisable: {exc}") from None
        if len(payload) > MAX_DATA_BYTES:
            raise InvalidRequest(f"session data is {len(payload)} bytes; at most {MAX_DATA_BYTES}")
        sid = secrets.token_urlsafe(32)
        keys = [self.keyspace.session(sid), self.keyspace.session_index(user)]
        args: list[str | int] = [user, payload, self.policy.idle_ms, self.policy.absolute_ms, sid]
        with redis_errors("session store"):
            created, expires, absolute = self._create(keys=keys, args=args)
        return Session(sid, user, int(created), int(expires), int(absolute), dict(data or {}))

    def read(self, sid: object) -> Session | None:
        """Return the live session `sid`, or None when it expired or never existed."""
        sid = session_id(sid)
        with redis_errors("session store"):
            found = self._read(keys=[self.keyspace.session(sid)])
        if not found:
            return None
        user, created, absolute, data, expires = found
        return Session(
            sid, _text(user), int(created), int(expires), int(absolute), json.loads(data)
        )

    def touch(self, session: Session) -> Session | None:
        """Renew `session`'s idle timeout (capped by its absolute lifetime); None when gone."""
        keys = [self.keyspace.session(session.id), self.keyspace.session_index(session.user_id)]
        with redis_errors("session store"):
            expires = int(
                self._touch(keys=keys, args=[session.user_id, self.policy.idle_ms, session.id])
            )
        if not expires:
            return None
        return Session(
            session.id,
            session.user_id,
            session.created_at,
            expires,
            session.absolute_at,
            session.data,
        )

    def destroy(self, sid: object) -> bool:
        """End session `sid` (logout); return whether it existed."""
        sid = session_id(sid)
        with redis_errors("session store"):
            user = self.client.hget(self.keyspace.session(sid), "user")
            if user is None:
                return False
            return self._remove(_text(user), [sid]) > 0

    def revoke_user(self, user_id: object) -> int:
        """End every session of `user_id` (forced logout); return how many were live.

        Loops until the index is empty, so no session created before the call survives it.
        """
        user = identifier(user_id, "user id")
        index = self.keyspace.session_index(user)
        removed = 0
        with redis_errors("session store"):
            while ids := [_text(i) for i in self.client.zrange(index, 0, 499)]:
                removed += self._remove(user, ids)
        return removed

    def count(self, user_id: object | None = None) -> dict[str, int]:
        """Count live sessions: of one user (pruning the index), or all of them (by SCAN)."""
        if user_id is not None:
            user = identifier(user_id, "user id")
            with redis_errors("session store"):
                live = int(self._count(keys=[self.keyspace.session_index(user)]))
            return {"sessions": live, "users": 1 if live else 0}
        with redis_errors("session store"):
            sessions = sum(
                1 for _ in self.client.scan_iter(match=self.keyspace.session("*"), count=1000)
            )
            users = sum(
                1 for _ in self.client.scan_iter(match=self.keyspace.session_index("*"), count=1000)
            )
        return {"sessions": sessions, "users": users}

    def _remove(self, user: str, ids: list[str]) -> int:
        keys = [self.keyspace.session_index(user), *(self.keyspace.session(i) for i in ids)]
        return int(self._revoke(keys=keys, args=[user, *ids]))


def check_user(user_id: object) -> str:
    """Return `user_id` if it can name a user's sessions, else raise InvalidRequest."""
    return identifier(user_id, "user id")


def count_sessions(app: Any, user_id: object | None = None) -> dict[str, Any]:
    """Count live sessions on `app` (the id is checked before Redis is touched)."""
    user = None if user_id is None else check_user(user_id)
    return {"user": user, **SessionStore.from_container(app).count(user)}


def revoke_sessions(app: Any, user_id: object) -> dict[str, Any]:
    """Log `user_id` out everywhere on `app` (the id is checked before Redis is touched)."""
    user = check_user(user_id)
    return {"user": user, "revoked": SessionStore.from_container(app).revoke_user(user)}
