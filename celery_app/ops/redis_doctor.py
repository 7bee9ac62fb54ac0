"""Diagnose a Redis the way an operator would by hand, one layer at a time.

name resolution (getaddrinfo) -> TCP connect -> AUTH -> PING -> INFO -> a write probe -> the
platform's rules on what INFO says. The walk stops at the first layer that fails, and that
failure is reported with the causes the platform's Redis page lists and the next check to run.
Roles sharing one server are diagnosed once; the broker's rules (``noeviction``, persistence)
apply to the server that holds the broker.

Read-only apart from the probe: one ``SET`` of a cache key that expires in ten seconds, because
OOM, MISCONF and READONLY only show on a write. A password that worked is checked by one PING
without it: a Redis that answers both ways ignores the password (no requirepass). A reply that
is not Redis's protocol is read again raw, to name what answers instead (a web server...).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from celery_app.infra.keyspace import Keyspace
from celery_app.ops.findings import Finding, Level, exit_code, worst
from celery_app.ops.redis_causes import CAUSES, classify
from celery_app.ops.redis_facts import (
    Endpoint,
    RedisFacts,
    client_for,
    owner_only_socket,
    read_facts,
)
from celery_app.ops.redis_resources import (
    latency,
    latency_finding,
    memory_findings,
    persistence_findings,
)


@dataclass
class Diagnosis:
    """The findings for one Redis server and the roles it serves."""

    target: str
    roles: tuple[str, ...]
    findings: list[Finding] = field(default_factory=list)
    facts: RedisFacts | None = None
    latency_ms: float | None = None

    @property
    def level(self) -> Level:
        return worst(self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "roles": list(self.roles),
            "level": self.level,
            "latency_ms": self.latency_ms,
            "facts": None if self.facts is None else self.facts.as_dict(),
            "findings": [f.as_dict() for f in self.findings],
        }


def failure(check: str, kind: str, detail: str = "", **where: Any) -> Finding:
    """A critical finding for failure `kind`, its message filled with `where` (host, port...)."""
    cause = CAUSES[kind]
    message = cause.summary.format(**where) if where else cause.summary
    if detail:
        message = f"{message} ({detail})"
    return Finding(check, "critical", message, cause.causes, cause.next_check, {"kind": kind})


def _reach(endpoint: Endpoint, timeout: float) -> list[Finding]:
    """Resolve and connect; the last finding is critical when Redis cannot be reached."""
    if endpoint.scheme == "unix":
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(endpoint.path)
        except OSError as exc:
            return [failure("connect", "socket", exc.strerror or "", path=endpoint.path)]
        return [Finding("connect", "ok", f"unix socket {endpoint.path} accepts connections")]
    where = {"host": endpoint.host, "port": endpoint.port, "timeout": timeout}
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [failure("resolve", "resolve", exc.strerror or "", **where)]
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    found = [Finding("resolve", "ok", f"{endpoint.host} -> {', '.join(addresses)}")]
    last: Finding | None = None
    for family, kind, proto, _name, address in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
        except ConnectionRefusedError:
            last = failure("connect", "refused", f"at {address[0]}", **where)
        except TimeoutError:
            last = failure("connect", "timeout", f"at {address[0]}", **where)
        except OSError as exc:
            last = failure("connect", "unreachable", exc.strerror or str(exc), **where)
        else:
            found.append(Finding("connect", "ok", f"TCP {address[0]}:{endpoint.port} accepts"))
            return found
    assert last is not None
    return [*found, last]


def _what_answers(endpoint: Endpoint, timeout: float) -> str:
    """Who answers at `endpoint` instead of Redis, by its reply to an inline PING: e.g.
    "an HTTP (web) server: it replied '<!DOCTYPE HTML>'" ("" when nothing can be read)."""
    unix = endpoint.scheme == "unix"
    try:
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if unix
            else socket.create_connection((endpoint.host, endpoint.port), timeout)
        ) as sock:
            sock.settimeout(timeout)
            if unix:
                sock.connect(endpoint.path)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(512)
    except OSError:
        return ""
    lowered = reply.lower()
    if reply.startswith(b"HTTP/") or b"<html" in lowered or b"<!doctype" in lowered:
        what = "an HTTP (web) server"
    elif reply.startswith(b"SSH-"):
        what = "an SSH server"
    else:
        what = "a service that does not speak Redis's protocol"
    first = reply.decode("ascii", "replace").strip().splitlines()[:1] or [""]
    return f"{what}: it replied {first[0][:40]!r} to PING" if first[0] else what


def _error(check: str, exc: redis.RedisError, endpoint: Endpoint, timeout: float) -> Finding:
    detail = str(exc).splitlines()[0][:90] if str(exc) else type(exc).__name__
    where = {
        "host": endpoint.host,
        "port": endpoint.port,
        "timeout": timeout,
        "path": endpoint.path,
        "address": endpoint.address,
    }
    kind = classify(exc)
    if kind in ("noauth", "wrongpass", "noauth_set"):
        detail = ""  # the summary says it all; the server's text only adds HELLO/AUTH noise
    elif kind == "not_redis":
        detail = _what_answers(endpoint, timeout) or detail
    return failure(check, kind, detail, **where)


def _open_without_password(endpoint: Endpoint, timeout: float) -> Finding | None:
    """A warning when a client that sends a password finds the server answers without one."""
    anonymous = client_for(endpoint.anonymous_url, timeout)
    try:
        anonymous.ping()
    except redis.RedisError:
        return None  # NOAUTH (as it should be), or nothing to tell beyond what PING said
    finally:
        anonymous.close()
    kind = "password_ignored" if endpoint.username in ("", "default") else "default_open"
    cause = CAUSES[kind]
    return Finding("auth", "warn", cause.summary, cause.causes, cause.next_check, {"kind": kind})


def _auth_finding(endpoint: Endpoint, timeout: float) -> Finding:
    if endpoint.has_password:
        who = endpoint.username or "default"
        ignored = _open_without_password(endpoint, timeout)
        return ignored or Finding("auth", "ok", f"authenticated as ACL user {who!r}")
    if endpoint.scheme == "unix":
        mode = owner_only_socket(endpoint.path)
        if mode is not None:
            return Finding(
                "auth", "ok", f"no password: unix socket only its owner may open (mode {mode:o})"
            )
        return Finding(
            "auth",
            "warn",
            "Redis accepted a client that sent no password, on a unix socket others may open",
            ("the socket's mode lets the group or every local user connect (unixsocketperm)",),
            "set unixsocketperm 700 (or requirepass) on the server; invoke audit.security",
        )
    return Finding(
        "auth",
        "warn",
        "Redis accepted a client that sent no password",
        ("requirepass / ACL users are not configured, so anyone who reaches the port is in",),
        "invoke audit.security",
    )


def diagnose_url(
    url: str,
    roles: tuple[str, ...] = ("broker",),
    keyspace: Keyspace | None = None,
    timeout: float = 2.0,
) -> Diagnosis:
    """Walk every layer for the Redis at `url`, which serves `roles`."""
    endpoint = Endpoint.parse(url)
    result = Diagnosis(endpoint.display, roles)
    result.findings.extend(_reach(endpoint, timeout))
    if result.level == "critical":
        return result
    client = client_for(url, timeout)
    try:
        try:
            client.ping()
        except redis.RedisError as exc:
            result.findings.append(_error("ping", exc, endpoint, timeout))
            return result
        result.findings.append(_auth_finding(endpoint, timeout))
        result.latency_ms = latency(client)
        result.findings.append(Finding("ping", "ok", "PONG"))
        result.findings.append(latency_finding(result.latency_ms))
        try:
            result.facts = read_facts(client)
        except redis.RedisError as exc:
            result.findings.append(_error("info", exc, endpoint, timeout))
        probe = (keyspace or Keyspace()).cache("doctor", "probe")
        try:
            client.set(probe, "1", px=10_000)
            result.findings.append(Finding("write", "ok", "a probe write succeeded"))
        except redis.RedisError as exc:
            result.findings.append(_error("write", exc, endpoint, timeout))
    finally:
        client.close()
    if result.facts is not None:
        facts = result.facts
        broker = "broker" in roles
        result.findings.append(
            Finding(
                "server",
                "ok",
                f"Redis {facts.version} ({facts.role}), "
                f"{facts.connected_clients} clients, up {facts.uptime_seconds}s",
            )
        )
        result.findings.extend(memory_findings(facts, broker))
        result.findings.extend(persistence_findings(facts, broker))
    return result


def servers(urls: Mapping[str, str], only: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """Group roles by server: [(a URL for it, its roles)], in role order; `only` keeps one role."""
    grouped: dict[str, tuple[str, list[str]]] = {}
    for role, url in urls.items():
        if only is not None and role != only:
            continue
        _first, roles = grouped.setdefault(Endpoint.parse(url).instance, (url, []))
        roles.append(role)
    return [(url, tuple(roles)) for url, roles in grouped.values()]


def diagnose(
    urls: Mapping[str, str], keyspace: Keyspace, role: str | None = None, timeout: float = 2.0
) -> list[Diagnosis]:
    """Diagnose every server the roles in `urls` use (or only `role`'s)."""
    return [diagnose_url(url, roles, keyspace, timeout) for url, roles in servers(urls, role)]


def report_exit_code(diagnoses: list[Diagnosis]) -> int:
    return exit_code(f for d in diagnoses for f in d.findings)


def ping(url: str, timeout: float = 2.0) -> Finding:
    """PONG with its round trip (a warning when the password sent is ignored), or the first
    layer that failed (with causes)."""
    endpoint = Endpoint.parse(url)
    reached = _reach(endpoint, timeout)
    if reached[-1].level == "critical":
        return reached[-1]
    client = client_for(url, timeout)
    try:
        ms = latency(client, samples=1)
    except redis.RedisError as exc:
        return _error("ping", exc, endpoint, timeout)
    finally:
        client.close()
    pong = f"PONG from {endpoint.display} in {ms:.2f} ms"
    ignored = _open_without_password(endpoint, timeout) if endpoint.has_password else None
    if ignored is not None:
        return Finding(
            "ping",
            "warn",
            f"{pong}, but {ignored.message}",
            ignored.causes,
            ignored.next_check,
            {"ms": ms, **ignored.data},
        )
    return Finding("ping", "ok", pong, data={"ms": ms})
