"""Notify an environment's webhooks of an event: the one call every producer makes.

    from runbooks.notify import notify
    notify("staging", "approval.requested", {"summary": "ana asks to run deploy on staging",
           "operator": "ana", "command": "deploy", "reason": "hotfix"}, environ=os.environ)
    notify(inventory, "deploy.finished", payload, settings=env_app.settings)

`env_or_inventory` is an environment name (its inventory is loaded from `inventory_dir`, default
``./inventory``, with `environ` over ``.env``) or a loaded :class:`Inventory`. `event` is one of
:data:`celery_app.ops.notify.EVENTS` (an unknown one raises ConfigError: a programming error).
`payload` is a flat mapping of what to show: ``summary`` becomes the message's ``text``, every
other item a field (lists one per line); ``environment`` is added. Secrets the settings and the
inventory know, and secret patterns, are masked before anything leaves.

For each of the inventory's `notify:` targets that wants the event, one ``notify.deliver`` task
goes to the ``ops`` queue of the environment's broker (the Redis its vars name, else
`settings`', else this process's), carrying the *name* of the variable that holds the webhook
URL; an ops worker resolves and POSTs it with retries (:mod:`celery_app.ops.notify`). So the
call costs one broker write per target and never waits for a receiver. It never raises for a
delivery problem either: an environment without an inventory, or a broker that does not take
the message, is a warning on the ``runbooks.notify`` logger, and the count of queued deliveries
(0) says so. Returns that count;
an inventory without `notify:` costs nothing and returns 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery_app.settings import Settings
    from runbooks.engine.inventory import Inventory
    from runbooks.engine.redact import Redactor

log = logging.getLogger("runbooks.notify")


def notify(
    env_or_inventory: str | Inventory,
    event: str,
    payload: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    inventory_dir: Path | None = None,
    settings: Settings | None = None,
    redactor: Redactor | None = None,
) -> int:
    """Queue `event` for every webhook of the environment that wants it; see the module doc."""
    from celery_app.ops.notify import event_name
    from runbooks.engine.inventory import load_environment
    from runbooks.errors import RunbookError
    from runbooks.notify.targets import wanting
    from runbooks.service import environ_with_dotenv

    event_name(event)
    merged = environ_with_dotenv(os.environ if environ is None else environ)
    if isinstance(env_or_inventory, str):
        try:
            inventory = load_environment(env_or_inventory, merged, inventory_dir)
        except RunbookError as exc:  # no inventory (or a broken one): no target to tell
            log.warning("%s notification for %s not queued: %s", event, env_or_inventory, exc)
            return 0
    else:
        inventory = env_or_inventory
    targets = wanting(inventory.notify, event)
    if not targets:
        return 0
    try:
        return _send(inventory, event, payload, merged, settings, redactor, targets)
    except Exception as exc:  # a notification must never stop what it reports on
        from celery_app.infra.redaction import redact

        log.warning(
            "%s notification for %s not queued: %s",
            event,
            inventory.environment,
            redact(f"{type(exc).__name__}: {exc}", inventory.secrets),
        )
        return 0


def _send(
    inventory: Inventory,
    event: str,
    payload: Mapping[str, Any],
    environ: Mapping[str, str],
    settings: Settings | None,
    redactor: Redactor | None,
    targets: list[Any],
) -> int:
    from celery_app.celery import make_app
    from celery_app.ops.notify import message, send
    from runbooks.engine.redact import for_settings

    settings = broker_settings(inventory, environ, settings)
    redactor = redactor or for_settings(settings, inventory.secrets)
    body = message(event, {"environment": inventory.environment, **payload}, redactor)
    celery = make_app(settings)
    try:
        for target in targets:
            send(celery, target.variable, body)
    finally:
        celery.close()
    return len(targets)


def broker_settings(
    inventory: Inventory, environ: Mapping[str, str], settings: Settings | None
) -> Settings:
    """The settings whose broker the environment's ops workers consume: the Redis the
    inventory's vars name, else `settings`, else this process's."""
    from celery_app.settings import load_settings
    from runbooks.reach.redis import REDIS_VARIABLES, redis_environ

    if inventory.vars.get("redis_url") or inventory.vars.get("redis_host"):
        kept = {k: v for k, v in environ.items() if k not in REDIS_VARIABLES}
        return load_settings(
            {**kept, **redis_environ(inventory.environment, inventory.vars)},
            dotenv=Path(os.devnull),
        )
    return settings if settings is not None else load_settings(dict(environ))
