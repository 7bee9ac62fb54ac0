"""Wire the app to the Redis an inventory environment names, for commands run with ``--env``.

An environment's vars name its Redis as ``redis_url`` or as ``redis_host`` / ``redis_port`` /
``redis_password`` (a ``${VAR}`` reference, as the inventory requires). That Redis then serves
every role, whatever ``REDIS_*`` this process has; SQL (where history is recorded) stays this
process's own. The operator must be inside the network: Redis is never exposed publicly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery_app import bootstrap
from celery_app.bootstrap import Container
from celery_app.settings import ROLES, load_settings
from runbooks.engine.inventory import load_environment
from runbooks.errors import NotFound
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
    return bootstrap.build(settings)
