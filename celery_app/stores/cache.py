"""The app's cache on the cache Redis role, and a clear that cannot reach any other role's keys.

Keys are ``{prefix}:cache:{namespace}:{generation}:{key}`` (built by :class:`Keyspace`); values are
JSON with a TTL, always, so keys orphaned by a generation bump expire on their own. Each
namespace's generation counter lives at ``{prefix}:cache:_gen:{namespace}`` and survives clears.

Clearing (``invoke cache.clear``), cheapest safe way first:

* a namespace generation bump: O(1), the old generation's keys are never read again;
* SCAN + UNLINK over the cache prefix only, in batches of 1,000 that Redis runs as one short
  script call each (keys never cross the network; plain SCAN then UNLINK where an ACL denies
  scripts); a pattern whose literal prefix :meth:`Keyspace.role_of` does not give to the cache
  is refused up front, and every key found is checked against the cache prefix before UNLINK;
* FLUSHDB ASYNC only when the settings give the cache role a database of its own *and* a scan
  just proved that database holds cache keys only (their count equals DBSIZE).

Never FLUSHDB or FLUSHALL on a Redis the broker, sessions, rate limits or locks share: that is how
Laravel's ``cache:clear`` wipes queues.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis
from redis.connection import parse_url

from celery_app.errors import InvalidRequest, Refused
from celery_app.infra.boundary import identifier, redis_errors
from celery_app.infra.keyspace import Keyspace
from celery_app.inputs import shown
from celery_app.settings import ROLES, Settings

if TYPE_CHECKING:
    from celery_app.bootstrap import Container

T = TypeVar("T")
GENERATIONS = "_gen"  # namespace segment of the generation counters; not a valid user namespace
GLOB = "*?[\\"
BATCH = 1000
PROGRESS_EVERY = 50_000

Progress = Callable[[int], None]


def _escape(text: str) -> str:
    """Escape glob characters so SCAN MATCH treats `text` literally."""
    return "".join("\\" + ch if ch in GLOB or ch == "]" else ch for ch in text)


def literal_prefix(pattern: str) -> str:
    """Return the part of a glob `pattern` before its first wildcard, unescaped."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(next(chars, ""))
        elif ch in "*?[":
            break
        else:
            out.append(ch)
    return "".join(out)


class Cache:
    """`get`/`set`/`delete`/`remember` JSON values under a namespace, each with a TTL."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace, default_ttl: int = 3600) -> None:
        self.client = client
        self.keyspace = keyspace
        self.default_ttl = default_ttl

    @classmethod
    def of(cls, container: Container, default_ttl: int = 3600) -> Cache:
        """The cache on the container's cache role."""
        return cls(container.redis("cache"), container.keyspace, default_ttl)

    def _generation_key(self, namespace: str) -> str:
        return self.keyspace.cache(GENERATIONS, identifier(namespace, "cache namespace"))

    def generation(self, namespace: str) -> int:
        with redis_errors("cache"):
            raw = self.client.get(self._generation_key(namespace))
        return int(raw or 0)

    def bump(self, namespace: str) -> int:
        """Invalidate every key of `namespace` in O(1); return the new generation."""
        with redis_errors("cache"):
            return int(self.client.incr(self._generation_key(namespace)))

    def key(self, namespace: str, key: str) -> str:
        """Return the Redis key that holds `key` of `namespace` in its current generation."""
        if not isinstance(key, str) or not key or len(key) > 512 or not key.isprintable():
            raise InvalidRequest(f"cache key must be 1-512 printable characters, got {key!r:.60}")
        namespace = identifier(namespace, "cache namespace")
        return self.keyspace.cache(namespace, f"{self.generation(namespace)}:{key}")

    def get(self, namespace: str, key: str, default: Any = None) -> Any:
        with redis_errors("cache"):
            raw = self.client.get(self.key(namespace, key))
        return default if raw is None else json.loads(raw)

    def set(self, namespace: str, key: str, value: Any, ttl: int | None = None) -> None:
        ttl = self.default_ttl if ttl is None else ttl
        if ttl <= 0:
            raise InvalidRequest(f"cache TTL must be a positive number of seconds, got {ttl}")
        data = json.dumps(value, separators=(",", ":"))
        with redis_errors("cache"):
            self.client.set(self.key(namespace, key), data, ex=ttl)

    def delete(self, namespace: str, key: str) -> bool:
        with redis_errors("cache"):
            return bool(self.client.unlink(self.key(namespace, key)))

    def remember(
        self, namespace: str, key: str, compute: Callable[[], T], ttl: int | None = None
    ) -> T:
        """Return the cached value, or compute, store and return it (like Laravel's remember)."""
        full = self.key(namespace, key)
        with redis_errors("cache"):
            raw = self.client.get(full)
        if raw is not None:
            value: T = json.loads(raw)
            return value
        value = compute()
        self.set(namespace, key, value, ttl)
        return value


@dataclass(frozen=True)
class ClearReport:
    """What a clear did (or, with check, would do)."""

    pattern: str
    method: str  # scan-unlink | flushdb-async | check
    matched: int  # cache keys found (SCAN may report a key twice while Redis rehashes)
    deleted: int
    skipped: int  # keys the pattern matched that are not cache keys: never deleted
    seconds: float
    check: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def clear_pattern(
    keyspace: Keyspace, namespace: str | None = None, pattern: str | None = None
) -> str:
    """Return the SCAN pattern for a clear, refusing one that could reach non-cache keys."""
    base = f"{keyspace.prefix}:cache:"
    if namespace is not None and pattern is not None:
        raise InvalidRequest("give --namespace or --pattern, not both")
    if namespace is not None:
        return _escape(base + identifier(namespace, "cache namespace") + ":") + "*"
    if pattern is None:
        return _escape(base) + "*"
    literal = literal_prefix(pattern)
    role = keyspace.role_of(literal)
    if role != "cache" or not literal.startswith(base):
        reach = f"{role} keys" if role not in ("cache", "unknown") else "keys outside the cache"
        raise Refused(
            f"pattern {shown(pattern)} could reach {reach}: a cache pattern must start with "
            f"{base!r} before any wildcard"
        )
    return pattern


# One batch, run by Redis: SCAN, keep the keys under the cache prefix (never a generation
# counter), UNLINK them unless dry. The keys never cross the network, so a clear costs one small
# round trip per batch and almost no client CPU. Returns {cursor, matched, deleted, skipped}.
_BATCH_LUA = """
local reply = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local base, generations = ARGV[4], ARGV[5]
local doomed, skipped = {}, 0
for _, key in ipairs(reply[2]) do
  if string.sub(key, 1, #base) ~= base then
    skipped = skipped + 1
  elseif string.sub(key, 1, #generations) ~= generations then
    doomed[#doomed + 1] = key
  end
end
local deleted = 0
if ARGV[6] ~= '1' and #doomed > 0 then deleted = redis.call('UNLINK', unpack(doomed)) end
return {reply[1], #doomed, deleted, skipped}
"""

Step = Callable[[Any], tuple[Any, int, int, int]]


def _script_step(client: redis.Redis, args: list[Any]) -> Step:
    script = client.register_script(_BATCH_LUA)

    def step(cursor: Any) -> tuple[Any, int, int, int]:
        next_cursor, matched, deleted, skipped = script(args=[cursor, *args])
        return next_cursor, int(matched), int(deleted), int(skipped)

    return step


def _command_step(client: redis.Redis, args: list[Any]) -> Step:
    """The same batch as plain SCAN then UNLINK, for an ACL that denies scripts."""
    pattern, batch, base, generations, dry = args
    cache_b, generations_b = base.encode(), generations.encode()

    def step(cursor: Any) -> tuple[Any, int, int, int]:
        next_cursor, found = client.scan(cursor, match=pattern, count=batch)
        keys = cast(list[bytes], found)  # the client does not decode responses
        doomed = [k for k in keys if k.startswith(cache_b) and not k.startswith(generations_b)]
        skipped = sum(1 for k in keys if not k.startswith(cache_b))
        deleted = int(client.unlink(*doomed)) if doomed and dry != "1" else 0
        return next_cursor, len(doomed), deleted, skipped

    return step


def scan_unlink(
    client: redis.Redis,
    keyspace: Keyspace,
    pattern: str,
    *,
    check: bool = False,
    batch: int = BATCH,
    progress: Progress | None = None,
    progress_every: int = PROGRESS_EVERY,
) -> tuple[int, int, int]:
    """SCAN `pattern` and UNLINK the cache keys found; return (matched, deleted, skipped).

    Each batch is one short script call (SCAN COUNT `batch`, then UNLINK of what it found), so
    Redis is never blocked for more than one batch: other clients run between batches.
    """
    base = f"{keyspace.prefix}:cache:"
    if keyspace.role_of(base + "x") != "cache" or keyspace.role_of(base + GENERATIONS) != "cache":
        raise Refused(f"the keyspace map no longer gives {base!r} to the cache; nothing deleted")
    # Every key under `base` is a cache key by the keyspace map (checked above), so each key is
    # tested by its prefix, inside Redis.
    args = [pattern, batch, base, f"{base}{GENERATIONS}:", "1" if check else "0"]
    matched = deleted = skipped = reported = 0
    with redis_errors("cache"):
        step = _script_step(client, args)
        try:
            cursor, m, d, s = step(0)
        except redis.ResponseError:  # scripting denied (ACL) or disabled: plain commands
            step = _command_step(client, args)
            cursor, m, d, s = step(0)
        while True:
            matched, deleted, skipped = matched + m, deleted + d, skipped + s
            if progress is not None and matched - reported >= progress_every:
                reported = matched
                progress(matched)
            if int(cursor) == 0:
                break
            cursor, m, d, s = step(cursor)
    return matched, deleted, skipped


def _location(url: str) -> tuple[object, ...]:
    parts = parse_url(url)
    return (parts.get("path") or (parts.get("host"), parts.get("port")), parts.get("db", 0))


def dedicated_cache_db(settings: Settings) -> bool:
    """Return whether the settings give the cache role a database no other role uses."""
    cache = _location(settings.redis_url("cache"))
    return all(_location(settings.redis_url(r)) != cache for r in ROLES if r != "cache")


def only_cache_keys(client: redis.Redis, keyspace: Keyspace, batch: int = BATCH) -> int | None:
    """Scan the whole database; return its key count if every key is a cache key, else None."""
    base = f"{keyspace.prefix}:cache:"
    if keyspace.role_of(base + "x") != "cache":
        return None
    cache_b = base.encode()
    seen = 0
    cursor = 0
    with redis_errors("cache"):
        while True:
            cursor, found = client.scan(cursor, count=batch)
            keys = cast(list[bytes], found)  # the client does not decode responses
            if not all(k.startswith(cache_b) for k in keys):
                return None
            seen += len(keys)
            if int(cursor) == 0:
                break
        if int(client.dbsize()) > seen:
            return None  # keys arrived while scanning: not proven
    return seen


def _flushdb_async(client: redis.Redis) -> bool:
    """FLUSHDB ASYNC; False where the ACL denies it (a least-privilege user has no @dangerous)."""
    with redis_errors("cache"):
        try:
            client.flushdb(asynchronous=True)
        except redis.exceptions.NoPermissionError:
            return False
    return True


def clear(
    client: redis.Redis,
    keyspace: Keyspace,
    *,
    namespace: str | None = None,
    pattern: str | None = None,
    check: bool = False,
    dedicated: bool = False,
    progress: Progress | None = None,
    batch: int = BATCH,
    progress_every: int = PROGRESS_EVERY,
) -> ClearReport:
    """Clear cache keys (all, one namespace, or a cache pattern); with `check` change nothing.

    `dedicated` says the settings give the cache its own database; only then, for a whole-cache
    clear, is FLUSHDB ASYNC considered, and only after :func:`only_cache_keys` proved it safe.
    """
    scan = clear_pattern(keyspace, namespace, pattern)
    started = time.perf_counter()
    if dedicated and namespace is None and pattern is None and not check:
        count = only_cache_keys(client, keyspace)
        if count is not None and _flushdb_async(client):
            return ClearReport(
                scan, "flushdb-async", count, count, 0, time.perf_counter() - started, False
            )
    matched, deleted, skipped = scan_unlink(
        client,
        keyspace,
        scan,
        check=check,
        batch=batch,
        progress=progress,
        progress_every=progress_every,
    )
    return ClearReport(
        pattern=scan,
        method="check" if check else "scan-unlink",
        matched=matched,
        deleted=deleted,
        skipped=skipped,
        seconds=time.perf_counter() - started,
        check=check,
    )


def clear_for(
    container: Container,
    *,
    namespace: str | None = None,
    pattern: str | None = None,
    check: bool = False,
    progress: Progress | None = None,
) -> ClearReport:
    """Clear the configured cache role (what ``invoke cache.clear`` runs)."""
    return clear(
        container.redis("cache"),
        container.keyspace,
        namespace=namespace,
        pattern=pattern,
        check=check,
        dedicated=dedicated_cache_db(container.settings),
        progress=progress,
    )
