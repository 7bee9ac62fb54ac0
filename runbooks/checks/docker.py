"""The platform page's Docker checks on this machine, or on each host of an environment.

Each read takes one host's target and returns plain values; a host where Docker cannot answer
(not installed, not running, no permission) or that cannot be reached is a fact about that
host, reported as ``{"error": why}`` beside the others' values. Every value is redacted.

    found = docker.containers(app, os.environ, Hosts("staging", limit="workers"))
    found.values   # {"web-1": [{"name": ..., "image": ...}], "web-2": {"error": "..."}}
    found.ok       # False: some host could not answer
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbooks.facts import docker

if TYPE_CHECKING:
    from celery_app.bootstrap import Container
    from runbooks.connectors.targets import Target


@dataclass(frozen=True)
class Hosts:
    """Which hosts: those of `environment` that `limit` chooses; no environment: this machine."""

    environment: str = ""
    limit: str | None = None
    inventory_dir: Path | None = None


@dataclass(frozen=True)
class HostValues:
    """What each host answered (or `{"error": why}`), and whether every host answered."""

    values: dict[str, Any]
    ok: bool


def on_hosts(
    app: Container,
    read: Callable[[Target], Any],
    environ: Mapping[str, str],
    where: Hosts,
) -> HostValues:
    """`read(target)` on each host `where` names (with `environ` over its .env for the
    inventory's references)."""
    from runbooks.connectors.targets import LocalTarget, open_target
    from runbooks.engine.inventory import Host, load_environment
    from runbooks.engine.redact import for_settings
    from runbooks.errors import HostUnreachable
    from runbooks.service import environ_with_dotenv

    hosts: list[Host | None] = []
    secrets: tuple[str, ...] = ()
    if where.environment:
        environ = environ_with_dotenv(environ)
        found = load_environment(where.environment, environ, where.inventory_dir)
        hosts, secrets = [*found.select(limit=where.limit)], found.secrets
    values: dict[str, Any] = {}
    ok = True
    for host in hosts or [None]:
        name = host.name if host else "localhost"
        try:
            target = open_target(host) if host else LocalTarget()
            try:
                values[name] = read(target)
            finally:
                target.close()
        except (docker.DockerUnavailable, HostUnreachable) as exc:  # a fact about the host
            values[name] = {"error": str(exc)}
            ok = False
    return HostValues(for_settings(app.settings, secrets).value(values), ok)


def containers(app: Container, environ: Mapping[str, str], where: Hosts) -> HostValues:
    """Every container on each host, running or not (`docker ps -a`)."""
    return on_hosts(app, lambda t: [c.as_dict() for c in docker.containers(t)], environ, where)


def logs(
    app: Container, service: str, tail: int, environ: Mapping[str, str], where: Hosts
) -> HostValues:
    """The last `tail` lines of `service`'s log on each host, secrets masked."""
    docker.check_service(service)  # refused before any host is reached
    return on_hosts(app, lambda t: docker.logs(t, service, tail), environ, where)


def networks(app: Container, environ: Mapping[str, str], where: Hosts) -> HostValues:
    """Each Docker network on each host, with the containers on it."""
    return on_hosts(app, lambda t: [n.as_dict() for n in docker.networks(t)], environ, where)
