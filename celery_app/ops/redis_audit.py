"""Audit a Redis against the platform's security rules: never exposed, never open to anyone.

* authentication is demanded (a client with no password gets NOAUTH, not PONG);
* protected mode is on and Redis binds no public or wildcard address (CONFIG GET, as a superuser);
* the app connects as a role user, never as Redis's default user (allowed everything);
* each role user (redis_acl.ROLE_USERS) has its role's rules, compared with the same rules
  `redis.acl --apply` sets: a user whose commands (ACL DRYRUN of every command and subcommand the
  server has, SELECT of each database), keys, channels or selectors are wider than intended is
  critical, as is any other user that may run ACL, CONFIG, FLUSH*, SHUTDOWN, DEBUG, MODULE, ...;
* TLS is used where the server offers it.

Reading ACLs takes a user allowed ACL (MAQSAFY_REDIS_SUPERUSER_URL); the intended rules are
normalised by Redis on a scratch user that is disabled, has no password and is deleted at once,
and nothing else is changed. As a role user itself, what it may run is asked inside a MULTI
that is discarded.
"""

from __future__ import annotations

import ipaddress
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
from celery_app.ops.redis_facts import Endpoint, client_for, owner_only_socket, read_config

WILDCARDS = {"*", "0.0.0.0", "::", "::*"}
APPLY_NEXT = "invoke redis.acl --apply (as the Redis superuser)"


def public_binds(bind: str) -> list[str]:
    """The bind addresses that are wildcards or not private ("" binds every interface)."""
    addresses = [a.lstrip("-") for a in bind.split()]
    if not addresses:
        return ["(every interface)"]
    found = []
    for address in addresses:
        if address in WILDCARDS:
            found.append(address)
            continue
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            continue  # a host name: resolved by Redis at start; not judged here
        if not (ip.is_private or ip.is_loopback or ip.is_link_local):
            found.append(address)
    return found


def _auth(endpoint: Endpoint, timeout: float) -> Finding:
    if endpoint.scheme == "unix":
        mode = owner_only_socket(endpoint.path)
        if mode is not None:  # the embedded default's --unixsocketperm 700
            return Finding(
                "auth", "ok", f"unix socket only its owner may open (mode {mode:o}): no password"
            )
    url = endpoint.anonymous_url
    anonymous = client_for(url, timeout)
    try:
        anonymous.ping()
    except redis.AuthenticationError:
        return Finding("auth", "ok", "Redis demands authentication (NOAUTH without a password)")
    except redis.RedisError as exc:
        return Finding("auth", "warn", f"could not test anonymous access: {exc}")
    finally:
        anonymous.close()
    return Finding(
        "auth",
        "critical",
        "Redis answers a client that sends no password",
        ("no requirepass and the default user is on with nopass",),
        "set requirepass (or ACL users with passwords) and the app's REDIS_PASSWORD",
    )


def _config_findings(config: dict[str, str] | None, endpoint: Endpoint) -> list[Finding]:
    if config is None:
        return [
            Finding(
                "bind",
                "warn",
                "bind and protected-mode not verifiable: CONFIG is denied to this user",
                (),
                SUPERUSER_NEXT,
            )
        ]
    found: list[Finding] = []
    exposed = public_binds(config.get("bind", ""))
    if config.get("port") == "0" and config.get("tls-port", "0") in ("", "0"):
        found.append(Finding("bind", "ok", "no TCP port (port 0): unix socket only"))
    elif exposed:
        found.append(
            Finding(
                "bind",
                "critical",
                f"Redis listens on {', '.join(exposed)}: reachable beyond the internal network",
                ("bind 0.0.0.0 / * in redis.conf, or a public address",),
                "bind only internal addresses (bind 127.0.0.1 10.x.y.z) and firewall the port",
            )
        )
    else:
        found.append(Finding("bind", "ok", f"bound to internal addresses ({config['bind']})"))
    if config.get("protected-mode", "yes") != "yes":
        found.append(
            Finding(
                "protected-mode",
                "warn",
                "protected-mode is off",
                ("protected-mode no in redis.conf",),
                "CONFIG SET protected-mode yes (and in redis.conf)",
            )
        )
    else:
        found.append(Finding("protected-mode", "ok", "protected-mode is on"))
    tls_port = config.get("tls-port", "0")
    if tls_port not in ("", "0") and not endpoint.tls:
        found.append(
            Finding(
                "tls",
                "warn",
                f"the server offers TLS on port {tls_port} but the app connects without it",
                (),
                f"use rediss://<redis-host>:{tls_port}/0 in REDIS_URL",
            )
        )
    else:
        found.append(
            Finding("tls", "ok", "TLS in use" if endpoint.tls else "TLS not configured on Redis")
        )
    return found


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


def _identity_finding(endpoint: Endpoint, user: str, superuser: redis.Redis | None) -> Finding:
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


def _self_findings(client: redis.Redis, user: str) -> list[Finding]:
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


def audit(
    url: str,
    app_user: str = "",
    timeout: float = 2.0,
    superuser_url: str | None = None,
    scope: Scope | None = None,
) -> list[Finding]:
    """Audit the Redis at `url` and the ACL users on it.

    The app's user is `app_user`, else the URL's (no user: Redis's default user). ACLs and
    CONFIG are read as `superuser_url`'s user where it names the same server, else as the URL's.
    """
    endpoint = Endpoint.parse(url)
    found = [_auth(endpoint, timeout)]
    admin_url = url
    if superuser_url and Endpoint.parse(superuser_url).instance == endpoint.instance:
        admin_url = superuser_url
    client = client_for(admin_url, timeout)
    try:
        client.ping()
        found.extend(_config_findings(read_config(client), endpoint))
        user = app_user or endpoint.username or "default"
        private = endpoint.scheme == "unix" and owner_only_socket(endpoint.path) is not None
        skip = Endpoint.parse(admin_url).username
        try:
            acl = acl_findings(client, scope or Scope(), skip, private)
        except redis.exceptions.NoPermissionError:
            acl = None
        found.append(_identity_finding(endpoint, user, client if acl is not None else None))
        if acl is not None:
            found.extend(acl)
        elif user != "default":
            own = client if admin_url == url else client_for(url, timeout)
            try:
                found.extend(_self_findings(own, user))
            finally:
                if own is not client:
                    own.close()
        else:
            found.append(
                Finding(
                    "acl users", "warn", "ACL users not verifiable as this user", (), SUPERUSER_NEXT
                )
            )
    except redis.RedisError as exc:
        found.append(
            Finding("connect", "critical", f"{endpoint.display}: {exc}", (), "invoke redis.doctor")
        )
    finally:
        client.close()
    return found
