"""What the commands work on: this process's wired app, an environment's Redis, the history.

Each is built on first use, under :func:`operator_errors` (bad settings: one line, exit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from runbooks.cli.errors import operator_errors

if TYPE_CHECKING:
    from celery_app.bootstrap import Container
    from runbooks.engine.history import CommandRecord

T = TypeVar("T")


def container() -> Container:
    """This process's app (settings, SQL, Redis clients)."""
    from celery_app import bootstrap

    with operator_errors():
        return bootstrap.get()


def celery_module() -> ModuleType:
    """`celery_app.celery`, imported only once settings loaded here (bad ones: exit 2, one line)."""
    container()
    import celery_app.celery

    return celery_app.celery


def inventory_dir(inventory: str) -> Path | None:
    """--inventory as a folder (None: the default ./inventory)."""
    return Path(inventory) if inventory else None


def redis_app(env: str, inventory: str = "") -> Container:
    """This process's app or, with --env, the app on that environment's Redis."""
    if not env:
        return container()
    from runbooks.reach.redis import environment_app

    with operator_errors():
        return environment_app(env, directory=inventory_dir(inventory))


def health_app(env: str, inventory: str = "") -> Container:
    """redis_app(env, inventory), with the embedded default's private Redis started."""
    app = redis_app(env, inventory)
    if app.settings.embedded_redis:
        from celery_app.infra.embedded import ensure_embedded_redis

        with operator_errors():
            ensure_embedded_redis(app.settings.var_dir)
    return app


def recorded(
    app: Container, name: str, env: str, **arguments: Any
) -> AbstractContextManager[CommandRecord]:
    """Record the ops command run inside the block in the run history, redacted."""
    from runbooks.engine import history
    from runbooks.engine.redact import for_settings

    return history.recording(
        app.sessions,
        name,
        environment=env or "local",
        arguments=arguments,
        redactor=for_settings(app.settings),
    )


def run_recorded(
    app: Container,
    name: str,
    env: str,
    action: Callable[[], T],
    message: Callable[[T], str],
    **arguments: Any,
) -> tuple[T, str]:
    """Run `action` recorded as the ops command `name`; return its value and the message
    `message(value)` the record closes with."""
    with operator_errors(), recorded(app, name, env, **arguments) as record:
        value = action()
        record.message = message(value)
    return value, record.message
