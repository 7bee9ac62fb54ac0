"""The least-privilege Redis ACL for the app's user, and a check-then-act apply.

What the app needs, and why:

* keys: its own roles (``PREFIX:*``: cache, sessions, rate limits, locks, the fence counter) and
  kombu's broker keys: the queue lists and their priority lists (``payments\\x06\\x163``),
  the ``_kombu.binding.*`` sets, the ``unacked`` hash, ``unacked_index`` zset and
  ``unacked_mutex`` lock, and the remote-control reply queues ``*.reply.celery.pidbox``;
* channels: the remote-control fanout ``/<db>.celery.pidbox`` (ping, restart, inspect);
* commands: reads and writes of strings, lists, hashes, sets and sorted sets, blocking pops,
  MULTI/EXEC, pub/sub, EVALSHA/EVAL/SCRIPT LOAD (locks, rate limits, cache clear, kombu's mutex)
  and INFO (the doctor and the status screen); never ``@dangerous`` (FLUSHALL, FLUSHDB, CONFIG,
  DEBUG, MODULE, KEYS, SHUTDOWN, ACL, MONITOR, ...) and never FUNCTION or SCRIPT FLUSH.

The password is never part of the rules shown: it is set from an environment variable on apply,
and compared by its SHA-256, which is how Redis stores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from celery_app.boundary import redis_errors
from celery_app.errors import InvalidRequest
from celery_app.inputs import shown
from celery_app.keyspace import BROKER_EXACT, QUEUES

APP_USER = "maqsafy-app"
PROBE_USER = "maqsafy-acl-probe"
CATEGORIES = (
    "-@all",
    "+@connection",
    "+@read",
    "+@write",
    "+@keyspace",
    "+@string",
    "+@list",
    "+@hash",
    "+@set",
    "+@sortedset",
    "+@blocking",
    "+@transaction",
    "+@pubsub",
    "+@scripting",
    "-@dangerous",
    "-function",
    "-script|flush",
    "+info",
    "+time",  # kombu's binding scripts read the server clock
)
FORBIDDEN = ("FLUSHALL", "FLUSHDB", "CONFIG GET maxmemory", "DEBUG HELP", "MODULE LIST", "KEYS *")


def key_patterns(prefix: str) -> list[str]:
    exact = [k for k in BROKER_EXACT if k not in QUEUES]
    return [
        f"~{prefix}:*",
        *(f"~{q}*" for q in QUEUES),
        "~_kombu.*",  # binding sets, binding_permanent.*, binding_deadlines
        *(f"~{k}" for k in exact),
        "~*.celery.pidbox*",  # each node's control queue and the reply queues
    ]


def channel_patterns(db: int) -> list[str]:
    # kombu PSUBSCRIBEs to the fanout as a pattern, and Redis lets a user PSUBSCRIBE only to a
    # pattern it lists literally; PUBLISH is matched against the glob.
    return [f"&/{db}.celery.pidbox", "&/*.celery.pidbox*"]


def rules(prefix: str, db: int = 0) -> list[str]:
    """The ACL rules (without the password) for the app's user on broker database `db`."""
    return ["reset", "on", *key_patterns(prefix), *channel_patterns(db), *CATEGORIES]


def render(user: str, prefix: str, password_env: str, db: int = 0) -> str:
    """The ACL SETUSER line to paste into redis-cli (or users.acl), password as a reference."""
    return f"ACL SETUSER {user} {' '.join(rules(prefix, db))} >${{{password_env}}}"


@dataclass(frozen=True)
class AclState:
    """A user's permissions as ACL GETUSER reports them (passwords as SHA-256 hex)."""

    flags: tuple[str, ...]
    commands: str
    keys: str
    channels: str
    passwords: tuple[str, ...]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _state(client: redis.Redis, user: str) -> AclState | None:
    raw = client.acl_getuser(user)
    if not raw:
        return None
    get: dict[str, Any] = {_text(k): v for k, v in raw.items()}

    def joined(value: Any) -> str:
        if isinstance(value, list | tuple):
            return " ".join(_text(v) for v in value)
        return _text(value)

    return AclState(
        flags=tuple(sorted(_text(f) for f in get.get("flags", []))),
        commands=joined(get.get("commands", "")),
        keys=joined(get.get("keys", "")),
        channels=joined(get.get("channels", "")),
        passwords=tuple(sorted(_text(p) for p in get.get("passwords", []))),
    )


def _setuser(client: redis.Redis, user: str, prefix: str, password: str, db: int) -> None:
    client.execute_command("ACL", "SETUSER", user, *rules(prefix, db), f">{password}")


@dataclass(frozen=True)
class AclResult:
    user: str
    changed: bool
    check: bool

    def message(self) -> str:
        if not self.changed:
            return f"ACL user {self.user} already has the least-privilege rules; nothing changed"
        if self.check:
            return f"ACL user {self.user} would be set to the least-privilege rules"
        return f"ACL user {self.user} set to the least-privilege rules"


def check_user(user: str) -> str:
    """Return `user` if it is a valid ACL user name; InvalidRequest otherwise."""
    if not user.replace("-", "").replace("_", "").isalnum():
        raise InvalidRequest(f"ACL user name must be letters, digits, - or _, got {shown(user)}")
    return user


def apply(
    admin: redis.Redis, user: str, prefix: str, password: str, check: bool = False, db: int = 0
) -> AclResult:
    """Give `user` exactly the app's rules and `password`; change nothing if it already has them.

    The wanted state is read back from a scratch user set with the same rules (and deleted at
    once, in check mode too), so the comparison uses Redis's own normalised form.
    """
    if not password:
        raise InvalidRequest("the app user's password is empty: set it in the environment first")
    check_user(user)
    with redis_errors("Redis ACL"):
        _setuser(admin, PROBE_USER, prefix, password, db)
        try:
            wanted = _state(admin, PROBE_USER)
        finally:
            admin.execute_command("ACL", "DELUSER", PROBE_USER)
        current = _state(admin, user)
        if current is not None and current == wanted:  # passwords compared as SHA-256 too
            return AclResult(user, False, check)
        if not check:
            _setuser(admin, user, prefix, password, db)
    return AclResult(user, True, check)
