"""Protect logins: cap attempts per account and per client address, with a lockout window.

Every attempt is counted as a failure *before* the password is checked, atomically with the
decision, so concurrent guesses cannot slip past the limit; a success un-counts it::

    decision = guard.attempt(account, address)      # one EVALSHA
    if not decision.allowed:
        refuse(retry_after=decision.retry_after)    # do not check the password
    elif password_ok:
        guard.succeeded(decision)                   # clears the account's failures and lock

A subject (``account`` or ``address``) is refused while it has `max_failures` failures within
the last `window` seconds, or while its lock lives: the lock is set for `lockout` seconds by the
attempt that reaches `max_failures`. So no subject ever gets more than `max_failures` attempts
in any `window`; the account policy is held to OWASP ASVS 2.2.1 (at most 100 failed attempts an
hour). Success clears the account's lock but never the address's: one valid account must not
unlock an address that is stuffing credentials.

Keys (role ``ratelimit``): ``<prefix>:rl:login:<kind>:<subject>:failures`` (ZSET of attempts
scored by time, microseconds) and ``...:lock`` (a string with a TTL).
"""

from __future__ import annotations

import ipaddress
import math
import secrets
from dataclasses import asdict, dataclass
from typing import Any

import redis

from celery_app.errors import ConfigError, InvalidRequest
from celery_app.infra.boundary import identifier, redis_errors
from celery_app.infra.keyspace import Keyspace
from celery_app.inputs import shown

US = 1_000_000
ASVS_FAILURES_PER_HOUR = 100
KINDS = ("account", "address")

# Shared Lua: the state of one subject without writing: failures in the window and how long
# until it may try again (us).
_STATE = """
local function state(failures, lock, max, window, now)
  local since = string.format('(%d', now - window)
  local count = redis.call('ZCOUNT', failures, since, '+inf')
  local wait = 0
  local ttl = redis.call('PTTL', lock)
  if ttl > 0 then wait = ttl * 1000 end
  if count >= max then
    local oldest = redis.call('ZRANGEBYSCORE', failures, since, '+inf', 'WITHSCORES',
      'LIMIT', count - max, 1)
    local free = tonumber(oldest[2]) + window - now
    if free > wait then wait = free end
  end
  return count, wait
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# KEYS: account failures, account lock, address failures, address lock.
# ARGV: account max, window (us), lockout (ms), then the same for the address, then a member.
# Returns allowed, account failures, address failures, wait (us).
_ATTEMPT = (
    _STATE
    + """
local a_count, a_wait = state(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), now)
local d_count, d_wait = state(KEYS[3], KEYS[4], tonumber(ARGV[4]), tonumber(ARGV[5]), now)
local wait = math.max(a_wait, d_wait)
if wait > 0 then return {0, a_count, d_count, wait} end
local counts = {a_count + 1, d_count + 1}
for i = 0, 1 do
  local failures, lock = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local max, window, lockout = tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i]),
    tonumber(ARGV[3 + 3 * i])
  redis.call('ZREMRANGEBYSCORE', failures, '-inf', string.format('%d', now - window))
  redis.call('ZADD', failures, string.format('%d', now), ARGV[7])
  redis.call('PEXPIRE', failures, math.ceil(window / 1000))
  if counts[i + 1] >= max then redis.call('SET', lock, '1', 'PX', lockout) end
end
return {1, counts[1], counts[2], 0}
"""
)

# KEYS: failures, lock. ARGV: max, window (us). Returns failures, wait (us), lock ttl (ms).
_PEEK = (
    _STATE
    + """
local count, wait = state(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), now)
return {count, wait, redis.call('PTTL', KEYS[2])}
"""
)

# KEYS: account failures, account lock, address failures. ARGV: member.
_SUCCEEDED = """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class LoginPolicy:
    """Refuse after `max_failures` within `window` seconds; lock for `lockout` seconds."""

    max_failures: int
    window: float
    lockout: float

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window <= 0 or self.lockout <= 0:
            raise ConfigError(
                "login policy: need max_failures >= 1, window > 0, lockout > 0, got "
                f"{self.max_failures}, {self.window}, {self.lockout}"
            )

    @property
    def failures_per_hour(self) -> int:
        """The most attempts any one hour can hold under this policy."""
        return self.max_failures * math.ceil(3600 / self.window)


ACCOUNT_POLICY = LoginPolicy(max_failures=10, window=15 * 60, lockout=15 * 60)
ADDRESS_POLICY = LoginPolicy(max_failures=50, window=15 * 60, lockout=15 * 60)


@dataclass(frozen=True)
class LoginDecision:
    """Whether an attempt may check the password, and the counts after it; seconds."""

    allowed: bool
    account: str
    address: str
    account_failures: int
    address_failures: int
    retry_after: float
    token: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("token")
        return data


def subject(kind: str, value: object) -> str:
    """Return the key-safe form of an account id or a client address (normalised IP)."""
    if kind == "address":
        try:
            return ipaddress.ip_address(str(value).strip()).compressed
        except ValueError:
            raise InvalidRequest(
                f"client address must be an IP address, got {shown(value)}"
            ) from None
    if kind == "account":
        return identifier(value, "account")
    raise InvalidRequest(f"login subject kind must be one of {', '.join(KINDS)}, got {shown(kind)}")


class LoginGuard:
    """Count login attempts per account and per client address, and lock out on too many."""

    def __init__(
        self,
        client: redis.Redis,
        keyspace: Keyspace,
        account: LoginPolicy = ACCOUNT_POLICY,
        address: LoginPolicy = ADDRESS_POLICY,
        asvs: bool = True,
    ) -> None:
        """Guard logins; `asvs=False` lifts the hourly cap check, for drills with short windows."""
        if asvs and account.failures_per_hour > ASVS_FAILURES_PER_HOUR:
            raise ConfigError(
                f"login policy allows {account.failures_per_hour} failed attempts an hour per "
                f"account; OWASP ASVS 2.2.1 allows at most {ASVS_FAILURES_PER_HOUR}"
            )
        self.client = client
        self.keyspace = keyspace
        self.policies = {"account": account, "address": address}
        self._attempt = client.register_script(_ATTEMPT)
        self._peek = client.register_script(_PEEK)
        self._succeeded = client.register_script(_SUCCEEDED)

    @classmethod
    def from_container(
        cls, app: Any, account: LoginPolicy = ACCOUNT_POLICY, address: LoginPolicy = ADDRESS_POLICY
    ) -> LoginGuard:
        """Build the guard on the container's ``ratelimit`` client and keyspace."""
        return cls(app.redis("ratelimit"), app.keyspace, account, address)

    def keys(self, kind: str, value: object) -> tuple[str, str]:
        """Return the (failures, lock) keys of one subject."""
        base = self.keyspace.ratelimit(f"login:{kind}:{subject(kind, value)}")
        return f"{base}:failures", f"{base}:lock"

    def attempt(self, account: object, address: object) -> LoginDecision:
        """Decide whether this attempt may check the password; count it as failed if so."""
        account, address = subject("account", account), subject("address", address)
        token = secrets.token_hex(8)
        args: list[int | str] = []
        for kind in KINDS:
            policy = self.policies[kind]
            args += [policy.max_failures, round(policy.window * US), round(policy.lockout * 1000)]
        keys = [*self.keys("account", account), *self.keys("address", address)]
        with redis_errors("login guard"):
            allowed, a_count, d_count, wait = self._attempt(keys=keys, args=[*args, token])
        return LoginDecision(
            allowed=bool(allowed),
            account=account,
            address=address,
            account_failures=int(a_count),
            address_failures=int(d_count),
            retry_after=int(wait) / US,
            token=token if allowed else "",
        )

    def succeeded(self, decision: LoginDecision) -> None:
        """Record that the attempt `decision` allowed logged in: forget the account's failures."""
        if not decision.token:
            raise InvalidRequest("only an allowed attempt can succeed")
        keys = [*self.keys("account", decision.account), self.keys("address", decision.address)[0]]
        with redis_errors("login guard"):
            self._succeeded(keys=keys, args=[decision.token])

    def status(self, kind: str, value: object) -> dict[str, Any]:
        """Show one subject: failures in the window, whether locked, seconds until allowed."""
        failures_key, lock_key = self.keys(kind, value)  # checks the kind and the subject
        policy = self.policies[kind]
        with redis_errors("login guard"):
            count, wait, lock_ms = self._peek(
                keys=[failures_key, lock_key], args=[policy.max_failures, round(policy.window * US)]
            )
        return {
            "kind": kind,
            "subject": subject(kind, value),
            "failures": int(count),
            "max_failures": policy.max_failures,
            "window": policy.window,
            "locked": int(wait) > 0,
            "lockout_left": max(0, int(lock_ms)) / 1000,
            "retry_after": int(wait) / US,
        }

    def reset(self, kind: str, value: object) -> bool:
        """Unlock one subject and forget its failures; return whether there was anything."""
        with redis_errors("login guard"):
            return bool(self.client.delete(*self.keys(kind, value)))
