"""Wire the app to the Redis an inventory environment names, for commands run with ``--env``.

An environment's vars name its Redis as ``redis_url`` or as ``redis_host`` / ``redis_port`` /
``redis_password`` (a ``${VAR}`` reference, as the inventory requires). That Redis then serves
every role, whatever ``REDIS_*`` this process has; SQL (where history is recorded) stays this
process's own.

Redis is never exposed publicly, so how this machine gets to it is the inventory's ``reach``:
``ssh`` (the default for an environment with SSH hosts) opens a tunnel through its first app
host for the command's lifetime (:mod:`runbooks.reach.tunnel`; the URLs stay as written),
``direct`` connects from here, after one TCP check that says so in one line when it cannot.
"""

from __future__ import annotations

import atexit
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery_app import bootstrap
from celery_app.bootstrap import Container
from celery_app.ops.redis_facts import Endpoint
from celery_app.settings import ROLES, Settings, load_settings
from runbooks.engine.inventory import Inventory, load_environment
from runbooks.errors import NotFound, NotReachable
from runbooks.reach.host_cli import pick_host
from runbooks.reach.tunnel import Tunnel
from runbooks.service import environ_with_dotenv

REDIS_VARIABLES = (
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "MAQSAFY_REDIS_SUPERUSER_URL",  # never this machine's superuser against another Redis
    *(f"REDIS_{role.upper()}_URL" for role in ROLES),
)


def redis_environ(environment: str, vars: Mapping[str, Any]) -> dict[str, str]:
    """The REDIS_* variables that point every role at the environment's Redis (and its
    ``redis_superuser_url``, for redis.acl --apply and audit.security, where the vars name one)."""
    found = _role_environ(environment, vars)
    if vars.get("redis_superuser_url"):
        found["MAQSAFY_REDIS_SUPERUSER_URL"] = str(vars["redis_superuser_url"])
    return found


def _role_environ(environment: str, vars: Mapping[str, Any]) -> dict[str, str]:
    if vars.get("redis_url"):
        return {"REDIS_URL": str(vars["redis_url"])}
    if not vars.get("redis_host"):
        raise NotFound(
            f"environment {environment!r} names no Redis: set redis_host (and redis_port, "
            "redis_password) or redis_url in its vars"
        )
    found = {"REDIS_HOST": str(vars["redis_host"]), "REDIS_PORT": str(vars.get("redis_port", 6379))}
    if vars.get("redis_password"):
        found["REDIS_PASSWORD"] = str(vars["redis_password"])
    return found


def environment_app(
    environment: str, environ: Mapping[str, str] | None = None, directory: Path | None = None
) -> Container:
    """Build the app with every Redis role on `environment`'s Redis."""
    merged = environ_with_dotenv(os.environ if environ is None else environ)
    inventory = load_environment(environment, merged, directory)
    kept = {k: v for k, v in merged.items() if k not in REDIS_VARIABLES}
    settings = load_settings(
        {**kept, **redis_environ(environment, inventory.vars)}, dotenv=Path(os.devnull)
    )
    reach(inventory, settings)
    return bootstrap.build(settings)


DIRECT_TIMEOUT = 5.0


def reach(inventory: Inventory, settings: Settings) -> None:
    """Make every Redis the settings name reachable from this process, as `inventory.reach`
    says, or raise NotReachable naming the hop that failed."""
    urls = [*settings.redis_urls.values(), settings.redis_superuser_url or ""]
    endpoints = {Endpoint.parse(u).instance: Endpoint.parse(u) for u in urls if u}
    host = pick_host(inventory, None)
    for endpoint in endpoints.values():
        if inventory.reach == "direct" or host.is_local:
            _check_direct(inventory, endpoint)
            continue
        if endpoint.scheme == "unix":
            raise NotReachable(
                f"{inventory.path}: reach: ssh cannot tunnel the unix socket {endpoint.path}; "
                "name Redis by host and port, or run on a host that has the socket (reach: direct)"
            )
        tunnel = Tunnel(host, (endpoint.host, endpoint.port))
        tunnel.open()
        atexit.register(tunnel.close)  # the tunnel lives as long as the command


def _check_direct(inventory: Inventory, endpoint: Endpoint) -> None:
    """One TCP connect from here; NotReachable suggesting `reach: ssh` when it fails."""
    if endpoint.scheme == "unix":
        return  # a socket on this machine: the commands' own diagnosis names its path
    try:
        socket.create_connection((endpoint.host, endpoint.port), DIRECT_TIMEOUT).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = "timed out"
        raise NotReachable(
            f"Redis {endpoint.address} of environment {inventory.environment!r} is not reachable "
            f"from here ({reason}; reach: direct): if only hosts inside its network reach it, "
            f"set `reach: ssh` in {inventory.path}"
        ) from None
