"""Each Redis user's ACL held against what it should be: a role user against the rules
redis.acl --apply sets (ACL DRYRUN of every command the server has, on a disabled scratch user
holding the intended rules), any other user against the commands no one may run, and, without
an ACL-capable connection, the connected user by queuing dangerous commands it then discards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from celery_app.ops.findings import Finding
from celery_app.ops.redis_acl import (
    BY_NAME,
    PROBE_USER,
    ROLE_USERS,
    RoleUser,
    Scope,
    probe_user,
    state,
)
from celery_app.ops.redis_facts import Endpoint, owner_only_socket

# Command families no role user may ever run: they rewrite ACLs or the config, wipe or move the
# data, stop or re-point the server, or watch every command (and its secrets) go by.
NEVER = frozenset(
    {
        "acl", "config", "flushall", "flushdb", "shutdown", "debug", "module", "monitor",
        "replicaof", "slaveof", "failover", "cluster", "swapdb", "migrate", "restore",
        "restore-asking", "sync", "psync", "save", "bgsave", "bgrewriteaof", "keys",
        "pfdebug", "pfselftest", "script|flush", "script|kill", "function|flush",
        "function|delete", "function|load", "function|restore", "function|kill",
        "client|kill", "client|pause", "client|unblock",
    }
)  # fmt: skip
HEADLINE = ("acl", "config", "flushall", "flushdb", "shutdown", "debug", "module")
DUMMY = "maqsafy-audit-probe"
APPLY_NEXT = "invoke redis.acl --apply (as the Redis superuser)"
SUPERUSER_NEXT = (
    "set MAQSAFY_REDIS_SUPERUSER_URL to a user allowed ACL (or redis_superuser_url in the "
    "inventory) and run invoke audit.security again"
)


def never(command: str) -> bool:
    """Whether `command` ('config|get', 'flushall') is one no role user may ever run."""
    return command in NEVER or command.split("|")[0] in NEVER


@dataclass(frozen=True)
class Probe:
    """One command (or subcommand) with dummy arguments enough for its arity, for ACL DRYRUN."""

    name: str
    words: tuple[str, ...]


def probes(client: redis.Redis, databases: int = 16) -> list[Probe]:
    """Every command and subcommand this server has, and SELECT of each database."""
    found: list[Probe] = []

    def add(name: Any, arity: Any) -> None:
        words = _text(name).lower().split("|")
        extra = max(abs(int(arity)) - len(words), 0)
        found.append(Probe("|".join(words), (*words, *[DUMMY] * extra)))

    raw = client.execute_command("COMMAND")  # redis-py parses it into a dict by name
    entries = raw.values() if isinstance(raw, dict) else raw
    for entry in entries:
        if isinstance(entry, dict):
            name, arity, subcommands = entry["name"], entry["arity"], entry.get("subcommands")
        else:
            name, arity, subcommands = entry[0], entry[1], entry[9] if len(entry) > 9 else None
        add(name, arity)
        for sub in subcommands or ():
            add(sub[0], sub[1])
    found.extend(Probe(f"select {db}", ("select", str(db))) for db in range(databases))
    return found


def may_run(client: redis.Redis, user: str, commands: list[Probe]) -> set[str]:
    """The probes `user` may run, as ACL DRYRUN says (a refusal of only the dummy key or
    channel still means the command is allowed)."""
    pipe = client.pipeline(transaction=False)
    for probe in commands:
        pipe.execute_command("ACL", "DRYRUN", user, *probe.words)
    allowed = set()
    for probe, reply in zip(commands, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(reply, Exception):
            continue  # arity or syntax DRYRUN could not judge: neither way
        if "no permissions to run" not in _text(reply):
            allowed.add(probe.name)
    return allowed


def _families(commands: set[str], limit: int = 8) -> str:
    """The commands' families, the never-allowed ones first: 'acl, config, ... (+12 more)'."""
    names = {c if c.startswith("select ") else c.split("|")[0] for c in commands}
    ordered = sorted(names, key=lambda n: (n not in HEADLINE, not never(n), n))
    shown = ", ".join(ordered[:limit])
    return f"{shown} (+{len(ordered) - limit} more)" if len(ordered) > limit else shown


def _text(value: object) -> str:
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)


def _role_finding(
    client: redis.Redis, user: RoleUser, scope: Scope, commands: list[Probe], private: bool
) -> Finding | None:
    check = f"acl {user.name}"
    actual = state(client, user.name)
    if actual is None:
        if private:  # one owner's socket (the embedded default): no role users needed
            return None
        return Finding(
            check, "warn", f"no ACL user {user.name!r} ({user.role} role)", (), APPLY_NEXT
        )
    with probe_user(client, user.role, scope) as probe:
        intended = state(client, probe)
        wanted = may_run(client, probe, commands)
    assert intended is not None
    allowed = may_run(client, user.name, commands)
    wider = (allowed - wanted) | {c for c in allowed if never(c) and c not in wanted}
    extra = [
        *sorted(set(actual.keys) - set(intended.keys)),
        *sorted(set(actual.channels) - set(intended.channels)),
        *(
            f"({s.split(' | ')[1]})"
            for s in sorted(set(actual.selectors) - set(intended.selectors))
        ),
    ]
    if "nopass" in actual.flags:
        extra.insert(0, "nopass (any password logs in)")
    if wider or extra:
        parts = ([f"may run {_families(wider)}"] if wider else []) + (
            [f"has {', '.join(extra[:6])}"] if extra else []
        )
        return Finding(
            check,
            "critical",
            f"ACL user {user.name!r} is wider than the {user.role} role: {'; '.join(parts)}",
            ("its rules were set by hand or by an older redis.acl",),
            APPLY_NEXT,
        )
    if not actual.enabled:
        return Finding(check, "warn", f"ACL user {user.name!r} is off", (), APPLY_NEXT)
    if actual.permissions() != intended.permissions():
        return Finding(
            check,
            "warn",
            f"ACL user {user.name!r} is narrower than the {user.role} role (its processes may "
            "get NOPERM)",
            (),
            APPLY_NEXT,
        )
    return Finding(check, "ok", f"ACL user {user.name!r} has exactly the {user.role} role's rules")


def _other_finding(client: redis.Redis, name: str, commands: list[Probe]) -> Finding | None:
    actual = state(client, name)
    if actual is None or not actual.enabled:
        return None
    dangerous = {c for c in may_run(client, name, commands) if never(c)}
    roles = ", ".join(u.name for u in ROLE_USERS)
    if dangerous:
        return Finding(
            f"acl {name}",
            "critical",
            f"ACL user {name!r} may run {_families(dangerous)}",
            ("not one of the role users, and not least-privilege",),
            f"move its clients to a role user ({roles}), then ACL DELUSER {name}",
        )
    return Finding(
        f"acl {name}",
        "warn",
        f"ACL user {name!r} is not one of the role users",
        (),
        f"if a process of this project uses it, move it to its role's user ({roles})",
    )


def acl_findings(
    client: redis.Redis, scope: Scope, skip: str = "", private: bool = False
) -> list[Finding]:
    """Every ACL user against its role's intended rules, as a user allowed ACL (ACL GETUSER,
    ACL DRYRUN of every command the server has); `skip` is the auditing user itself; a
    `private` server (a socket only its owner may open) needs no role users."""
    commands = probes(client)
    found = [
        f
        for user in ROLE_USERS
        if (f := _role_finding(client, user, scope, commands, private)) is not None
    ]
    for raw in client.execute_command("ACL", "USERS"):
        name = _text(raw)
        if name in BY_NAME or name in ("default", PROBE_USER, skip):
            continue
        other = _other_finding(client, name, commands)
        if other is not None:
            found.append(other)
    return found


def identity_finding(endpoint: Endpoint, user: str, superuser: redis.Redis | None) -> Finding:
    """Whom the app connects as: a role user, never the default user (allowed everything)."""
    if user != "default":
        role = BY_NAME.get(user)
        if role is not None:
            return Finding("app user", "ok", f"the app connects as {user!r} ({role.role} role)")
        return Finding(
            "app user",
            "warn",
            f"the app connects as {user!r}, which is not one of the role users",
            (),
            "give each process its role's user in its Redis URL (invoke redis.acl)",
        )
    if endpoint.scheme == "unix" and owner_only_socket(endpoint.path) is not None:
        return Finding(
            "app user", "ok", "the default user on a unix socket only its owner may open"
        )
    unrestricted = True
    if superuser is not None:
        try:
            reply = superuser.execute_command("ACL", "DRYRUN", "default", "ACL", "SETUSER", DUMMY)
            unrestricted = "no permissions" not in _text(reply)
        except redis.ResponseError:
            pass
    if not unrestricted:
        return Finding(
            "app user",
            "warn",
            "the app connects as Redis's default user (restricted here, but shared by anyone "
            "who knows its password)",
            (),
            "give each process its role's user in its Redis URL (invoke redis.acl --apply)",
        )
    return Finding(
        "app user",
        "critical",
        "the app connects as Redis's default user, which may run anything (ACL, CONFIG, "
        "FLUSHALL, SHUTDOWN)",
        ("no user in REDIS_URL: only REDIS_PASSWORD (requirepass)",),
        "invoke redis.acl --apply; then redis://maqsafy-<role>:<password>@<redis-host>:6379/0 "
        "in each process's REDIS_URL",
    )


def self_findings(client: redis.Redis, user: str) -> list[Finding]:
    """As a user that may not read ACLs: what it may run itself, queued in MULTI and discarded
    (nothing runs; SHUTDOWN and MONITOR cannot be queued, so they stay unverified)."""
    allowed = queued(client, SELF_PROBES)
    if allowed is None:
        found = Finding(
            "app user acl", "warn", "not verifiable as this user (MULTI denied)", (), SUPERUSER_NEXT
        )
    elif allowed:
        found = Finding(
            "app user acl",
            "critical",
            f"this user ({user}) may run {', '.join(allowed)}",
            (),
            APPLY_NEXT,
        )
    else:
        names = ", ".join(dict.fromkeys(p[0].upper() for p in SELF_PROBES))
        found = Finding("app user acl", "ok", f"this user ({user}) may not run {names}")
    return [
        found,
        Finding(
            "acl users",
            "warn",
            "the role users' rules not compared: this user may not read ACLs",
            (),
            SUPERUSER_NEXT,
        ),
    ]


SELF_PROBES = (
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "SET", "maxmemory-policy", "noeviction"),
    ("ACL", "SETUSER", DUMMY),
    ("DEBUG", "SLEEP", "0"),
    ("MODULE", "LIST"),
    ("KEYS", DUMMY),
    ("SWAPDB", "0", "1"),
)


def queued(client: redis.Redis, commands: tuple[tuple[str, ...], ...]) -> list[str] | None:
    """Which of `commands` this user may run: each is sent inside MULTI and the transaction is
    discarded (EXEC is never sent). None when MULTI itself is denied."""
    conn = client.connection_pool.get_connection()
    try:
        conn.send_command("MULTI")
        try:
            conn.read_response()
        except redis.ResponseError:
            return None
        allowed = []
        try:
            for words in commands:
                conn.send_command(*words)
                try:
                    if _text(conn.read_response()) == "QUEUED":
                        allowed.append(
                            " ".join(words[:2]) if words[0] in ("CONFIG", "ACL") else words[0]
                        )
                except redis.ResponseError:
                    pass  # NOPERM
        finally:
            conn.send_command("DISCARD")
            conn.read_response()
        return allowed
    finally:
        client.connection_pool.release(conn)
