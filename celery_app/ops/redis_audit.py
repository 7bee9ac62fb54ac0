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

import redis

from celery_app.ops.findings import Finding
from celery_app.ops.redis_acl import (
    Scope,
)
from celery_app.ops.redis_acl_audit import (
    SUPERUSER_NEXT,
    acl_findings,
    identity_finding,
    self_findings,
)
from celery_app.ops.redis_facts import Endpoint, client_for, owner_only_socket, read_config

WILDCARDS = {"*", "0.0.0.0", "::", "::*"}


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
        found.append(identity_finding(endpoint, user, client if acl is not None else None))
        if acl is not None:
            found.extend(acl)
        elif user != "default":
            own = client if admin_url == url else client_for(url, timeout)
            try:
                found.extend(self_findings(own, user))
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
