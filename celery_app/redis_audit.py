"""Audit a Redis against the platform's security rules: never exposed, never open to anyone.

* authentication is demanded (a client with no password gets NOAUTH, not PONG);
* protected mode is on and Redis binds no public or wildcard address (CONFIG GET, as an admin);
* the app's ACL user cannot run FLUSHALL, FLUSHDB, CONFIG, DEBUG, MODULE or KEYS (ACL DRYRUN,
  as an admin; as the app user itself, the harmless forms are tried and FLUSHALL cannot be);
* TLS is used where the server offers it.

Nothing here changes the server. Checks that need an admin say so when run as a lesser user.
"""

from __future__ import annotations

import ipaddress

import redis

from celery_app.findings import Finding
from celery_app.inputs import shown
from celery_app.redis_acl import APP_USER, FORBIDDEN
from celery_app.redis_facts import Endpoint, client_for, owner_only_socket, read_config

WILDCARDS = {"*", "0.0.0.0", "::", "::*"}
ADMIN_NEXT = "run invoke audit.security with an admin's REDIS_URL (or --env with admin vars)"


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
                ADMIN_NEXT,
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


def _denied(reply: object) -> bool:
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return "no permissions" in text


def _user_findings(client: redis.Redis, user: str) -> list[Finding]:
    """What `user` may run: by ACL DRYRUN as an admin, else by harmless tries as that user."""
    found: list[Finding] = []
    try:
        replies = {c: client.execute_command("ACL", "DRYRUN", user, *c.split()) for c in FORBIDDEN}
    except redis.exceptions.NoPermissionError:
        return _self_findings(client, user)
    except redis.ResponseError as exc:
        if "user" in str(exc).lower() and "not" in str(exc).lower():
            return [
                Finding(
                    "app user",
                    "warn",
                    f"no ACL user {shown(user)}: the app can only run as a user allowed everything",
                    (),
                    "invoke redis.acl --apply; then put the user in REDIS_URL",
                )
            ]
        raise
    allowed = [c.split()[0] for c, reply in replies.items() if not _denied(reply)]
    if allowed:
        found.append(
            Finding(
                "app user",
                "critical",
                f"ACL user {shown(user)} may run {', '.join(dict.fromkeys(allowed))}",
                ("the app's user is not least-privilege",),
                "invoke redis.acl --apply",
            )
        )
    else:
        denied = ", ".join(dict.fromkeys(c.split()[0] for c in FORBIDDEN))
        found.append(Finding("app user", "ok", f"ACL user {shown(user)} may not run {denied}"))
    return found


def _self_findings(client: redis.Redis, user: str) -> list[Finding]:
    allowed = []
    for command in ("CONFIG GET maxmemory", "DEBUG HELP", "MODULE LIST"):
        try:
            client.execute_command(*command.split())
            allowed.append(command.split()[0])
        except redis.exceptions.NoPermissionError:
            pass
        except redis.ResponseError as exc:
            if "command not allowed" not in str(exc):  # DEBUG/MODULE disabled server-wide: fine
                allowed.append(command.split()[0])  # it ran far enough to fail on its own terms
    if allowed:
        return [
            Finding(
                "app user",
                "critical",
                f"this user may run {', '.join(allowed)}",
                (),
                "invoke redis.acl --apply",
            )
        ]
    return [
        Finding("app user", "ok", "this user may not run CONFIG, DEBUG or MODULE"),
        Finding(
            "app user flush",
            "warn",
            "FLUSHALL/FLUSHDB not verifiable as this user (only ACL DRYRUN proves it safely)",
            (),
            ADMIN_NEXT,
        ),
    ]


def audit(url: str, app_user: str = "", timeout: float = 2.0) -> list[Finding]:
    """Audit the Redis at `url` and the app's ACL user (default: the URL's user, else
    maqsafy-app)."""
    endpoint = Endpoint.parse(url)
    found = [_auth(endpoint, timeout)]
    client = client_for(url, timeout)
    try:
        client.ping()
        found.extend(_config_findings(read_config(client), endpoint))
        user = app_user or (endpoint.username if endpoint.username != "default" else "")
        found.extend(_user_findings(client, user or APP_USER))
    except redis.RedisError as exc:
        found.append(
            Finding("connect", "critical", f"{endpoint.display}: {exc}", (), "invoke redis.doctor")
        )
    finally:
        client.close()
    return found
