"""One Redis ACL user per role, least privilege each, and a check-then-act apply.

A process knows its role by the user in its Redis URL
(``redis://maqsafy-worker:<password>@<redis-host>:6379/0``):

* ``maqsafy-producer``, the web app: enqueues money and maintenance tasks (LPUSH only, on the
  ``payments`` and ``maintenance`` lists), and owns the cache, sessions and rate limits;
* ``maqsafy-worker``, the payment workers and beat: consume ``payments`` and ``maintenance``,
  kombu's ``unacked`` hash, index and mutex, the account locks and the fence counter; answer
  remote control (PSUBSCRIBE to the pidbox fanout, LPUSH to ``*.reply.celery.pidbox``);
* ``maqsafy-ops``, the ops runner: consumes ``ops`` alone with its own ``ops.unacked*`` keys
  (set by celery.py for a worker on ``ops`` only), and answers remote control;
* ``maqsafy-admin``, the operator's tool: publishes on the control channel (ping, inspect,
  shutdown), reads queue depths and unacked messages, purges and re-sends to every queue, the
  deploy lock and each store's keys.

Rules are exact: a queue is its list per priority step (``payments``, ``payments\\x06\\x163``,
...; kombu's ``_q_for_pri``), never ``payments*``. Where a role needs some commands on a key but
not others (the producer may LPUSH ``payments`` but not DEL it), the key lives in a selector
``(~key -@all +lpush ...)`` with only those commands; Lua (EVAL) is checked command by command
against the same rules. No role may run ``@dangerous`` commands (FLUSHALL, CONFIG, ACL, DEBUG,
MODULE, SHUTDOWN, KEYS, ...; INFO is given back to the two that read it), FUNCTION, SCRIPT FLUSH,
MOVE or COPY, or SELECT a database other than the configured ones (``+select|N``; none on 0).

Passwords come from environment variables on apply and are never shown; they are compared by
their SHA-256, which is how Redis keeps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from celery_app.errors import InvalidRequest, ServiceUnavailable
from celery_app.infra.boundary import redis_errors
from celery_app.ops.redis_acl_rules import (
    BY_NAME,
    BY_ROLE,
    PROBE_USER,
    ROLE_USERS,
    RoleUser,
    Scope,
    as_redis_cli,
    render,
    rules,
    scope_for,
    unacked_keys,
)

# The rules are redis_acl_rules'; this module reads and applies them (both used from here).
__all__ = [
    "BY_NAME",
    "BY_ROLE",
    "PROBE_USER",
    "ROLE_USERS",
    "AclResult",
    "AclState",
    "RoleUser",
    "Scope",
    "apply",
    "as_redis_cli",
    "intended_state",
    "password_hash",
    "passwords",
    "pick",
    "probe_user",
    "render",
    "rules",
    "scope_for",
    "state",
    "unacked_keys",
]


@dataclass(frozen=True)
class AclState:
    """A user's permissions as ACL GETUSER reports them (passwords as SHA-256 hex)."""

    flags: tuple[str, ...]
    commands: str
    keys: tuple[str, ...]
    channels: tuple[str, ...]
    selectors: tuple[str, ...]
    passwords: tuple[str, ...]

    @property
    def enabled(self) -> bool:
        return "on" in self.flags

    def permissions(self) -> tuple[Any, ...]:
        """Everything but on/off and passwords."""
        flags = tuple(f for f in self.flags if f not in ("on", "off"))
        return (flags, self.commands, self.keys, self.channels, self.selectors)


def _text(value: Any) -> str:
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)


def _field(get: Mapping[str, Any], name: str) -> Any:
    return get.get(name, "")


def _split(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        value = " ".join(_text(v) for v in value)
    return tuple(_text(value).split())


def _selector_text(raw: Any) -> str:
    if isinstance(raw, list | tuple):  # RESP2: [name, value, name, value, ...]
        raw = dict(zip(raw[0::2], raw[1::2], strict=True))
    get = {_text(k): v for k, v in dict(raw).items()}
    parts = (_text(get.get(n, "")) for n in ("commands", "keys", "channels"))
    return " | ".join(parts)


def state(client: redis.Redis, user: str) -> AclState | None:
    """`user`'s ACL as Redis normalised it, or None when there is no such user."""
    raw = client.execute_command("ACL", "GETUSER", user)
    if not raw:
        return None
    if isinstance(raw, list | tuple):
        raw = dict(zip(raw[0::2], raw[1::2], strict=True))
    get: dict[str, Any] = {_text(k): v for k, v in dict(raw).items()}
    return AclState(
        flags=tuple(sorted(_text(f) for f in _field(get, "flags") or [])),
        commands=_text(_field(get, "commands")),
        keys=_split(_field(get, "keys")),
        channels=_split(_field(get, "channels")),
        selectors=tuple(sorted(_selector_text(s) for s in _field(get, "selectors") or [])),
        passwords=tuple(sorted(_text(p) for p in _field(get, "passwords") or [])),
    )


@contextmanager
def probe_user(client: redis.Redis, role: str, scope: Scope) -> Iterator[str]:
    """A scratch user with `role`'s rules, disabled and without a password (no one can log in
    as it), so Redis normalises the intended rules and ACL DRYRUN can ask about them; deleted
    on leaving."""
    client.execute_command("ACL", "SETUSER", PROBE_USER, *rules(role, scope), "off")
    try:
        yield PROBE_USER
    finally:
        client.execute_command("ACL", "DELUSER", PROBE_USER)


def intended_state(client: redis.Redis, role: str, scope: Scope) -> AclState:
    """`role`'s rules as Redis normalises them."""
    with probe_user(client, role, scope) as name:
        found = state(client, name)
    assert found is not None
    return found


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


@dataclass(frozen=True)
class AclResult:
    user: str
    changed: bool
    check: bool

    def message(self) -> str:
        if not self.changed:
            return f"ACL user {self.user} already has its role's rules; nothing changed"
        if self.check:
            return f"ACL user {self.user} would be set to its role's rules"
        return f"ACL user {self.user} set to its role's rules"


def pick(role: str = "") -> list[RoleUser]:
    """Every role's user, or only `role`'s; InvalidRequest naming the roles otherwise."""
    if not role:
        return list(ROLE_USERS)
    if role not in BY_ROLE:
        raise InvalidRequest(
            f"--role: unknown role {role!r}; expected one of: {', '.join(BY_ROLE)}"
        )
    return [BY_ROLE[role]]


def passwords(users: Sequence[RoleUser], environ: Mapping[str, str]) -> dict[str, str]:
    """Each user's password from its variable; InvalidRequest naming every missing one."""
    missing = [u.password_env for u in users if not environ.get(u.password_env)]
    if missing:
        raise InvalidRequest(
            f"{', '.join(missing)} not set: each role user's password comes from the "
            "environment, never the command line"
        )
    return {u.name: environ[u.password_env] for u in users}


NOT_SUPERUSER = (
    "the Redis user --apply connects as may not run ACL: set MAQSAFY_REDIS_SUPERUSER_URL to a "
    "user allowed ACL (Redis's superuser), or redis_superuser_url in the inventory with --env"
)


def apply(
    admin: redis.Redis,
    users: Sequence[RoleUser],
    secrets: Mapping[str, str],
    scope: Scope,
    check: bool = False,
) -> list[AclResult]:
    """Give each user exactly its role's rules and its password; leave one that already has
    them alone. `admin` must be allowed ACL (the Redis superuser)."""
    results = []
    with redis_errors("Redis ACL"):
        try:
            for user in users:
                wanted = intended_state(admin, user.role, scope)
                current = state(admin, user.name)
                same = (
                    current is not None
                    and current.enabled
                    and current.permissions() == wanted.permissions()
                    and current.passwords == (password_hash(secrets[user.name]),)
                )
                if not same and not check:
                    admin.execute_command(
                        "ACL",
                        "SETUSER",
                        user.name,
                        *rules(user.role, scope),
                        f">{secrets[user.name]}",
                    )
                results.append(AclResult(user.name, not same, check))
        except redis.exceptions.NoPermissionError:
            raise ServiceUnavailable(NOT_SUPERUSER) from None
    return results
