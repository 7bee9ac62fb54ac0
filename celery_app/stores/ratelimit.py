"""Rate limits in one atomic Redis round trip per decision (GCRA), and the top-up throttle.

GCRA (the generic cell rate algorithm) keeps one number per subject, its theoretical arrival
time (TAT), in ``<prefix>:rl:<limiter>:<subject>`` (role ``ratelimit``). A :class:`Quota` of
`limit` per `period` admits a burst of `limit` and then one request every `period / limit`;
the key expires when the subject is back to a full allowance. The decision is a Lua script run
by EVALSHA on the Redis clock, so concurrent clients on any host never over-admit.

The payment path throttles top-ups per parent with :class:`TopUpThrottle`::

    throttle = TopUpThrottle.from_container(bootstrap.get())
    throttle.enforce(parent_id)     # raises RateLimited(retry_after=...) before anything is written

Operators inspect and clear any limiter or login lock by name with :func:`show` and
:func:`reset` (``invoke ratelimit.show KEY``): ``topup:<parent>``, ``login:account:<account>``,
``login:address:<ip>``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import redis

from celery_app.errors import InvalidRequest, RateLimited
from celery_app.infra.boundary import identifier, redis_errors
from celery_app.infra.keyspace import Keyspace
from celery_app.inputs import shown

US = 1_000_000

# KEYS: the TAT key. ARGV: emission interval (us), tolerance (us), cost, commit (1) or peek (0).
# Returns allowed (0/1), remaining, retry after (us), reset after (us). A peek writes nothing.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[3])
local allow_at = new_tat - tolerance
if allow_at > now or ARGV[4] == '0' then
  local remaining = math.floor((tolerance - (tat - now)) / interval)
  return {allow_at <= now and 1 or 0, remaining, math.max(0, allow_at - now), tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now}
"""


@dataclass(frozen=True)
class Quota:
    """Admit at most `limit` requests per `period` seconds (a burst of `limit`, then smoothly)."""

    limit: int
    period: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0:
            raise InvalidRequest(
                f"quota: need limit >= 1 and period > 0, got {self.limit}/{self.period}s"
            )

    @property
    def interval_us(self) -> int:
        """Microseconds between requests, rounded up so the limit is never exceeded."""
        return math.ceil(self.period * US / self.limit)

    @property
    def tolerance_us(self) -> int:
        return self.interval_us * self.limit


@dataclass(frozen=True)
class Decision:
    """One limiter decision; times in seconds."""

    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float
    limit: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RateLimiter:
    """A named GCRA limiter: one key per subject, one EVALSHA per decision."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace, name: str, quota: Quota) -> None:
        self.client = client
        self.keyspace = keyspace
        self.name = name
        self.quota = quota
        self._script = client.register_script(_GCRA)

    def key(self, subject: object) -> str:
        return self.keyspace.ratelimit(f"{self.name}:{identifier(subject, 'subject')}")

    def hit(self, subject: object, cost: int = 1) -> Decision:
        """Spend `cost` of `subject`'s allowance if it has that much; say what is left."""
        if cost < 1:
            raise InvalidRequest(f"cost must be at least 1, got {cost}")
        return self._decide(self.key(subject), cost, commit=True)

    def peek(self, subject: object) -> Decision:
        """Say whether `subject` could make a request now, and what it has left; spend nothing."""
        return self._decide(self.key(subject), 1, commit=False)

    def reset(self, subject: object) -> bool:
        """Give `subject` its full allowance back; return whether it had spent any."""
        with redis_errors("rate limiter"):
            return bool(self.client.delete(self.key(subject)))

    def _decide(self, key: str, cost: int, commit: bool) -> Decision:
        args = [self.quota.interval_us, self.quota.tolerance_us, cost, int(commit)]
        with redis_errors("rate limiter"):
            allowed, remaining, retry_us, reset_us = self._script(keys=[key], args=args)
        return Decision(
            allowed=bool(allowed),
            remaining=max(0, int(remaining)),
            retry_after=int(retry_us) / US,
            reset_after=int(reset_us) / US,
            limit=self.quota.limit,
        )


TOPUP_QUOTA = Quota(limit=10, period=3600)


class TopUpThrottle:
    """Throttle wallet top-ups per parent: by default 10 an hour, a burst of 10 allowed."""

    NAME = "topup"

    def __init__(self, client: redis.Redis, keyspace: Keyspace, quota: Quota = TOPUP_QUOTA) -> None:
        self.limiter = RateLimiter(client, keyspace, self.NAME, quota)

    @classmethod
    def from_container(cls, app: Any, quota: Quota = TOPUP_QUOTA) -> TopUpThrottle:
        """Build the throttle on the container's ``ratelimit`` client and keyspace."""
        return cls(app.redis("ratelimit"), app.keyspace, quota)

    def check(self, parent_id: object) -> Decision:
        """Count one top-up by `parent_id` if allowed; return the decision either way."""
        return self.limiter.hit(parent_id)

    def enforce(self, parent_id: object) -> Decision:
        """Count one top-up by `parent_id`, or raise RateLimited saying when to retry."""
        decision = self.check(parent_id)
        if not decision.allowed:
            raise RateLimited(
                f"too many top-ups for parent {parent_id}: at most {decision.limit} per "
                f"{self.limiter.quota.period:g}s; retry in {decision.retry_after:.0f}s",
                decision.retry_after,
            )
        return decision


def check_top_up(parent_id: object, app: Any = None) -> Decision:
    """Throttle one top-up by `parent_id` on `app` (default: this process's container).

    Returns the decision when allowed; raises RateLimited (nothing counted) when not,
    InvalidRequest for a malformed id, ServiceUnavailable when Redis does not answer.
    """
    if app is None:
        from celery_app import bootstrap

        app = bootstrap.get()
    return TopUpThrottle.from_container(app).enforce(parent_id)


def parse_key(app: Any, key: str) -> tuple[str, str]:
    """Split an operator's KEY into (kind, checked subject); accept the full Redis key too."""
    from celery_app.stores.login import subject as login_subject

    name = key.strip()
    full_prefix = app.keyspace.ratelimit("")
    if name.startswith(full_prefix):
        name = name[len(full_prefix) :]
    if name.startswith("login:"):
        name = name.removesuffix(":failures").removesuffix(":lock")
    for kind in ("login:account:", "login:address:", f"{TopUpThrottle.NAME}:"):
        if name.startswith(kind) and len(name) > len(kind):
            value = name[len(kind) :]
            if kind.startswith("login:"):
                return kind.rstrip(":"), login_subject(kind.split(":")[1], value)
            return kind.rstrip(":"), identifier(value, "parent id")
    raise InvalidRequest(
        f"unknown rate-limit key {shown(key)}; expected topup:PARENT, login:account:ACCOUNT "
        "or login:address:IP"
    )


def show(app: Any, key: str) -> dict[str, Any]:
    """Describe the limiter or login lock named `key` on `app`; write nothing."""
    from celery_app.stores.login import LoginGuard

    kind, subject = parse_key(app, key)
    if kind.startswith("login:"):
        return LoginGuard.from_container(app).status(kind.split(":")[1], subject)
    decision = TopUpThrottle.from_container(app).limiter.peek(subject)
    return {"kind": kind, "subject": subject, **decision.as_dict()}


def reset(app: Any, key: str) -> dict[str, Any]:
    """Clear the limiter or login lock named `key` on `app`; say whether it held anything."""
    from celery_app.stores.login import LoginGuard

    kind, subject = parse_key(app, key)
    if kind.startswith("login:"):
        cleared = LoginGuard.from_container(app).reset(kind.split(":")[1], subject)
    else:
        cleared = TopUpThrottle.from_container(app).limiter.reset(subject)
    return {"kind": kind, "subject": subject, "cleared": cleared}
